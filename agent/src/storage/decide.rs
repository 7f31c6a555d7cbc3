//! The storage autoscaling decision: a pure function from what the node sees (filesystem use,
//! its EBS segments, the clock) and the user's bounds to one action. No I/O happens here, so
//! the loop, the tests and the simulation benchmark all run exactly this code.

use std::time::{Duration, SystemTime};

/// EBS accepts one modification per volume and then refuses the next for six hours.
pub const EBS_MODIFICATION_COOLDOWN: Duration = Duration::from_secs(6 * 60 * 60);

pub use strata_topology::tags::{EBS_MAX_VOLUME_GIB, EBS_MIN_VOLUME_GIB};

const GIB: u64 = 1024 * 1024 * 1024;

/// The limits the user set in HCL, plus the segment count the instance can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// Act when the filesystem is at least this full (1..=99).
    pub grow_at_percent: u8,
    /// Each step adds this share of the node's current total size (at least 1).
    pub grow_by_percent: u32,
    /// A step is never smaller than this, so small volumes do not grow in slivers.
    pub min_step_gib: u64,
    /// The ceiling for the sum of all of the node's data segments.
    pub max_size_gib: u64,
    /// How many segments (original volume included) the node may carry.
    pub max_segments: usize,
    /// The largest single volume EBS allows for the volume type.
    pub max_volume_gib: u64,
}

impl Bounds {
    /// Attachment slots are shared with network interfaces on Nitro instances; 16 data
    /// segments leaves room for those on every current instance type.
    pub const DEFAULT_MAX_SEGMENTS: usize = 16;

    /// Bounds with the default segment and per-volume limits.
    pub fn new(
        grow_at_percent: u8,
        grow_by_percent: u32,
        min_step_gib: u64,
        max_size_gib: u64,
    ) -> Result<Self, BoundsError> {
        let bounds = Self {
            grow_at_percent,
            grow_by_percent,
            min_step_gib,
            max_size_gib,
            max_segments: Self::DEFAULT_MAX_SEGMENTS,
            max_volume_gib: EBS_MAX_VOLUME_GIB,
        };
        bounds.validate()?;
        Ok(bounds)
    }

    /// Rejects bounds under which the decision could never grow anything sensibly.
    pub fn validate(&self) -> Result<(), BoundsError> {
        if !(1..=99).contains(&self.grow_at_percent) {
            return Err(BoundsError::GrowAtPercent(self.grow_at_percent));
        }
        if self.grow_by_percent == 0 {
            return Err(BoundsError::GrowByPercent);
        }
        if self.max_size_gib == 0 {
            return Err(BoundsError::MaxSize);
        }
        if self.max_segments == 0 {
            return Err(BoundsError::MaxSegments);
        }
        if self.max_volume_gib < EBS_MIN_VOLUME_GIB {
            return Err(BoundsError::MaxVolume(self.max_volume_gib));
        }
        Ok(())
    }
}

/// Why a set of bounds was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    #[error("grow_at_percent must be between 1 and 99, got {0}")]
    GrowAtPercent(u8),
    #[error("grow_by_percent must be at least 1")]
    GrowByPercent,
    #[error("max_size_gib must be at least 1")]
    MaxSize,
    #[error("max_segments must be at least 1")]
    MaxSegments,
    #[error("max_volume_gib must be at least {EBS_MIN_VOLUME_GIB}, got {0}")]
    MaxVolume(u64),
}

/// What statvfs says about the data filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub size_bytes: u64,
    pub used_bytes: u64,
}

impl FsUsage {
    /// Used share in percent, for logs and status (the decision itself compares integers).
    pub fn used_percent(&self) -> f64 {
        if self.size_bytes == 0 {
            return 100.0;
        }
        self.used_bytes as f64 * 100.0 / self.size_bytes as f64
    }

    pub fn free_bytes(&self) -> u64 {
        self.size_bytes.saturating_sub(self.used_bytes)
    }
}

/// One EBS segment of the node's data filesystem as the decision needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeState {
    pub volume_id: String,
    pub size_gib: u64,
    /// Start of the latest modification EBS knows of; the cooldown counts from there.
    pub last_modified: Option<SystemTime>,
    /// EBS is still in the `modifying` state: the new size is not usable yet.
    pub modification_in_progress: bool,
}

impl VolumeState {
    /// When EBS will accept the next modification of this volume (`None`: it would now).
    pub fn cooldown_until(&self, now: SystemTime) -> Option<SystemTime> {
        let until = self.last_modified? + EBS_MODIFICATION_COOLDOWN;
        (until > now).then_some(until)
    }
}

/// The one thing the autoscaler should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing {
        reason: NothingReason,
    },
    GrowVolume {
        volume_id: String,
        from_gib: u64,
        to_gib: u64,
    },
    AddSegment {
        size_gib: u64,
    },
    /// The filesystem needs room but the node's segments already add up to the maximum.
    AtMaximum {
        total_gib: u64,
        max_size_gib: u64,
        used_percent_x100: u64,
    },
}

/// Why no action was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NothingReason {
    /// The filesystem is below `grow_at_percent`.
    BelowThreshold,
    /// The node has no segments to reason about.
    NoVolumes,
    /// A modification is in flight; its space arrives without another action.
    ModificationInProgress { volume_id: String },
    /// Every volume is in its cooldown (or at the EBS size limit) and no further segment can
    /// be attached; the earliest time one volume can grow again.
    NoSegmentSlot { retry_at: Option<SystemTime> },
}

/// Decides the next storage action. Pure: same inputs, same answer.
///
/// - Acts when `used * 100 >= size * grow_at_percent` (the boundary itself acts).
/// - The step is `max(min_step_gib, ceil(total_gib * grow_by_percent / 100))`, where the
///   total is the sum of all segments, so the filesystem grows by that share of itself; the
///   last step is clipped so the total never exceeds `max_size_gib`.
/// - Grows the first volume (in the given order) that is out of cooldown and can take the
///   whole step within the EBS per-volume limit; otherwise adds a segment of the step's size.
/// - A volume whose modification is still `modifying` means space is on its way: nothing.
pub fn decide(fs: FsUsage, volumes: &[VolumeState], now: SystemTime, bounds: &Bounds) -> Decision {
    if volumes.is_empty() {
        return Decision::Nothing {
            reason: NothingReason::NoVolumes,
        };
    }
    let threshold_reached = u128::from(fs.used_bytes) * 100
        >= u128::from(fs.size_bytes) * u128::from(bounds.grow_at_percent);
    if !threshold_reached {
        return Decision::Nothing {
            reason: NothingReason::BelowThreshold,
        };
    }
    if let Some(busy) = volumes.iter().find(|v| v.modification_in_progress) {
        return Decision::Nothing {
            reason: NothingReason::ModificationInProgress {
                volume_id: busy.volume_id.clone(),
            },
        };
    }

    let total_gib: u64 = volumes.iter().map(|v| v.size_gib).sum();
    if total_gib >= bounds.max_size_gib {
        return Decision::AtMaximum {
            total_gib,
            max_size_gib: bounds.max_size_gib,
            used_percent_x100: used_percent_x100(fs),
        };
    }

    let proportional = div_ceil_u128(
        u128::from(total_gib) * u128::from(bounds.grow_by_percent),
        100,
    );
    let step = proportional
        .max(u128::from(bounds.min_step_gib))
        .max(u128::from(EBS_MIN_VOLUME_GIB))
        .min(u128::from(bounds.max_size_gib - total_gib));
    // The clip above keeps step <= max_size_gib, which is a u64.
    let step = u64::try_from(step).unwrap_or(u64::MAX);

    let growable = volumes.iter().find(|v| {
        v.cooldown_until(now).is_none() && v.size_gib.saturating_add(step) <= bounds.max_volume_gib
    });
    if let Some(v) = growable {
        return Decision::GrowVolume {
            volume_id: v.volume_id.clone(),
            from_gib: v.size_gib,
            to_gib: v.size_gib + step,
        };
    }

    if volumes.len() < bounds.max_segments {
        return Decision::AddSegment {
            size_gib: step.min(bounds.max_volume_gib),
        };
    }

    let retry_at = volumes
        .iter()
        .filter(|v| v.size_gib.saturating_add(step) <= bounds.max_volume_gib)
        .filter_map(|v| v.cooldown_until(now))
        .min();
    Decision::Nothing {
        reason: NothingReason::NoSegmentSlot { retry_at },
    }
}

/// Bytes to whole GiB, rounding up (a partial GiB still needs a whole one from EBS).
pub fn bytes_to_gib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(GIB)
}

fn used_percent_x100(fs: FsUsage) -> u64 {
    if fs.size_bytes == 0 {
        return 10_000;
    }
    let v = u128::from(fs.used_bytes) * 10_000 / u128::from(fs.size_bytes);
    u64::try_from(v).unwrap_or(u64::MAX)
}

fn div_ceil_u128(a: u128, b: u128) -> u128 {
    a.div_ceil(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = GIB;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn now() -> SystemTime {
        t(1_000_000)
    }

    fn vol(id: &str, size_gib: u64) -> VolumeState {
        VolumeState {
            volume_id: id.to_owned(),
            size_gib,
            last_modified: None,
            modification_in_progress: false,
        }
    }

    fn modified_ago(mut v: VolumeState, ago: Duration) -> VolumeState {
        v.last_modified = Some(now() - ago);
        v
    }

    fn bounds(at: u8, by: u32, min_step: u64, max: u64) -> Bounds {
        Bounds::new(at, by, min_step, max).unwrap()
    }

    fn fs(size_gib: u64, used_bytes: u64) -> FsUsage {
        FsUsage {
            size_bytes: size_gib * G,
            used_bytes,
        }
    }

    fn grow(id: &str, from: u64, to: u64) -> Decision {
        Decision::GrowVolume {
            volume_id: id.to_owned(),
            from_gib: from,
            to_gib: to,
        }
    }

    fn nothing(reason: NothingReason) -> Decision {
        Decision::Nothing { reason }
    }

    #[test]
    fn decision_table() {
        let six_h = EBS_MODIFICATION_COOLDOWN;
        let b = bounds(80, 20, 5, 1000);
        struct Case {
            name: &'static str,
            fs: FsUsage,
            vols: Vec<VolumeState>,
            bounds: Bounds,
            want: Decision,
        }
        let cases = vec![
            Case {
                name: "one byte under the threshold does nothing",
                fs: fs(100, 80 * G - 1),
                vols: vec![vol("v1", 100)],
                bounds: b.clone(),
                want: nothing(NothingReason::BelowThreshold),
            },
            Case {
                name: "exactly at the threshold grows",
                fs: fs(100, 80 * G),
                vols: vec![vol("v1", 100)],
                bounds: b.clone(),
                want: grow("v1", 100, 120),
            },
            Case {
                name: "threshold compares the filesystem, not the volume size",
                fs: FsUsage {
                    size_bytes: 95 * G,
                    used_bytes: 76 * G,
                },
                vols: vec![vol("v1", 100)],
                bounds: b.clone(),
                want: grow("v1", 100, 120),
            },
            Case {
                name: "min step wins over a small percentage",
                fs: fs(20, 17 * G),
                vols: vec![vol("v1", 20)],
                bounds: b.clone(),
                want: grow("v1", 20, 25),
            },
            Case {
                name: "percentage step rounds up to a whole GiB",
                fs: fs(101, 90 * G),
                vols: vec![vol("v1", 101)],
                bounds: bounds(80, 10, 1, 1000),
                // 101 * 10% = 10.1 -> 11
                want: grow("v1", 101, 112),
            },
            Case {
                name: "exact percentage is not rounded further",
                fs: fs(100, 90 * G),
                vols: vec![vol("v1", 100)],
                bounds: bounds(80, 10, 1, 1000),
                want: grow("v1", 100, 110),
            },
            Case {
                name: "a zero min step still grows by at least 1 GiB",
                fs: fs(3, 3 * G),
                vols: vec![vol("v1", 3)],
                bounds: bounds(80, 1, 0, 1000),
                want: grow("v1", 3, 4),
            },
            Case {
                name: "the last step is clipped to the maximum",
                fs: fs(990, 950 * G),
                vols: vec![vol("v1", 990)],
                bounds: b.clone(),
                want: grow("v1", 990, 1000),
            },
            Case {
                name: "at the maximum and full: at maximum",
                fs: fs(1000, 900 * G),
                vols: vec![vol("v1", 1000)],
                bounds: b.clone(),
                want: Decision::AtMaximum {
                    total_gib: 1000,
                    max_size_gib: 1000,
                    used_percent_x100: 9000,
                },
            },
            Case {
                name: "at the maximum but below the threshold: nothing",
                fs: fs(1000, 100 * G),
                vols: vec![vol("v1", 1000)],
                bounds: b.clone(),
                want: nothing(NothingReason::BelowThreshold),
            },
            Case {
                name: "above a lowered maximum never shrinks: at maximum",
                fs: fs(1200, 1100 * G),
                vols: vec![vol("v1", 1200)],
                bounds: b.clone(),
                want: Decision::AtMaximum {
                    total_gib: 1200,
                    max_size_gib: 1000,
                    used_percent_x100: 9166,
                },
            },
            Case {
                name: "in cooldown: add a segment instead of waiting",
                fs: fs(120, 100 * G),
                vols: vec![modified_ago(vol("v1", 120), Duration::from_secs(3600))],
                bounds: b.clone(),
                want: Decision::AddSegment { size_gib: 24 },
            },
            Case {
                name: "one second before the cooldown ends: still a segment",
                fs: fs(120, 100 * G),
                vols: vec![modified_ago(vol("v1", 120), six_h - Duration::from_secs(1))],
                bounds: b.clone(),
                want: Decision::AddSegment { size_gib: 24 },
            },
            Case {
                name: "exactly six hours later: grow again",
                fs: fs(120, 100 * G),
                vols: vec![modified_ago(vol("v1", 120), six_h)],
                bounds: b.clone(),
                want: grow("v1", 120, 144),
            },
            Case {
                name: "cooldown and a clipped step: the segment is clipped too",
                fs: fs(990, 950 * G),
                vols: vec![modified_ago(vol("v1", 990), Duration::from_secs(60))],
                bounds: b.clone(),
                want: Decision::AddSegment { size_gib: 10 },
            },
            Case {
                name: "modification still modifying: nothing, space is coming",
                fs: fs(100, 95 * G),
                vols: vec![VolumeState {
                    modification_in_progress: true,
                    ..modified_ago(vol("v1", 120), Duration::from_secs(60))
                }],
                bounds: b.clone(),
                want: nothing(NothingReason::ModificationInProgress {
                    volume_id: "v1".into(),
                }),
            },
            Case {
                name: "multiple segments: step from the total, first free volume grows",
                fs: fs(150, 130 * G),
                vols: vec![
                    modified_ago(vol("v1", 100), Duration::from_secs(60)),
                    vol("v2", 50),
                ],
                bounds: b.clone(),
                want: grow("v2", 50, 80),
            },
            Case {
                name: "multiple segments: maximum counts all of them",
                fs: fs(1000, 990 * G),
                vols: vec![vol("v1", 600), vol("v2", 400)],
                bounds: b.clone(),
                want: Decision::AtMaximum {
                    total_gib: 1000,
                    max_size_gib: 1000,
                    used_percent_x100: 9900,
                },
            },
            Case {
                name: "multiple segments: clip counts all of them",
                fs: fs(980, 900 * G),
                vols: vec![vol("v1", 600), vol("v2", 380)],
                bounds: b.clone(),
                want: grow("v1", 600, 620),
            },
            Case {
                name: "all in cooldown and no slot left: nothing, with the retry time",
                fs: fs(150, 140 * G),
                vols: vec![
                    modified_ago(vol("v1", 100), Duration::from_secs(3600)),
                    modified_ago(vol("v2", 50), Duration::from_secs(7200)),
                ],
                bounds: Bounds {
                    max_segments: 2,
                    ..b.clone()
                },
                want: nothing(NothingReason::NoSegmentSlot {
                    retry_at: Some(now() - Duration::from_secs(7200) + six_h),
                }),
            },
            Case {
                name: "volume at the EBS size limit: add a segment",
                fs: fs(16384, 16000 * G),
                vols: vec![vol("v1", 16384)],
                bounds: bounds(80, 10, 100, 40000),
                want: Decision::AddSegment { size_gib: 1639 },
            },
            Case {
                name: "step that would cross the EBS limit: add a segment",
                fs: fs(16000, 15000 * G),
                vols: vec![vol("v1", 16000)],
                bounds: bounds(80, 10, 100, 40000),
                want: Decision::AddSegment { size_gib: 1600 },
            },
            Case {
                name: "a new segment is never larger than EBS allows",
                fs: fs(16384 * 2, 32000 * G),
                vols: vec![vol("v1", 16384), vol("v2", 16384)],
                bounds: bounds(80, 100, 1, 100_000),
                want: Decision::AddSegment { size_gib: 16384 },
            },
            Case {
                name: "no volumes: nothing",
                fs: fs(100, 100 * G),
                vols: vec![],
                bounds: b.clone(),
                want: nothing(NothingReason::NoVolumes),
            },
            Case {
                name: "empty filesystem size counts as full",
                fs: FsUsage {
                    size_bytes: 0,
                    used_bytes: 0,
                },
                vols: vec![vol("v1", 10)],
                bounds: b.clone(),
                want: grow("v1", 10, 15),
            },
        ];
        let mut failures = Vec::new();
        for c in &cases {
            let got = decide(c.fs, &c.vols, now(), &c.bounds);
            if got != c.want {
                failures.push(format!("{}: got {got:?}, want {:?}", c.name, c.want));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn never_shrinks_never_exceeds_max() {
        // Sweep a grid of states; every grow must go up and stay within both limits.
        let b = bounds(70, 15, 3, 500);
        for total in [1u64, 7, 20, 99, 250, 480, 499, 500, 600] {
            for used_pct in [69u64, 70, 85, 100] {
                for cooled in [false, true] {
                    let mut v = vol("v1", total);
                    if cooled {
                        v = modified_ago(v, Duration::from_secs(10));
                    }
                    let d = decide(
                        // Round up so the percentage is really reached.
                        fs(total, (total * G * used_pct).div_ceil(100)),
                        &[v],
                        now(),
                        &b,
                    );
                    match d {
                        Decision::GrowVolume {
                            from_gib, to_gib, ..
                        } => {
                            assert!(to_gib > from_gib, "{total} {used_pct}: {d:?}");
                            assert!(to_gib <= 500, "{total} {used_pct}: {d:?}");
                        }
                        Decision::AddSegment { size_gib } => {
                            assert!(size_gib >= 1 && total + size_gib <= 500, "{d:?}");
                        }
                        Decision::AtMaximum { .. } => assert!(total >= 500, "{d:?}"),
                        Decision::Nothing { .. } => assert!(used_pct < 70, "{d:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn bounds_are_validated() {
        assert_eq!(
            Bounds::new(0, 10, 1, 10),
            Err(BoundsError::GrowAtPercent(0))
        );
        assert_eq!(
            Bounds::new(100, 10, 1, 10),
            Err(BoundsError::GrowAtPercent(100))
        );
        assert_eq!(Bounds::new(80, 0, 1, 10), Err(BoundsError::GrowByPercent));
        assert_eq!(Bounds::new(80, 10, 1, 0), Err(BoundsError::MaxSize));
        assert!(Bounds::new(99, 1, 0, 1).is_ok());
    }

    #[test]
    fn gib_rounding_is_up() {
        assert_eq!(bytes_to_gib_ceil(0), 0);
        assert_eq!(bytes_to_gib_ceil(1), 1);
        assert_eq!(bytes_to_gib_ceil(G), 1);
        assert_eq!(bytes_to_gib_ceil(G + 1), 2);
    }
}
