//! The storage autoscaling loop: every interval it reads the data filesystem's use and the
//! node's EBS segments, asks [`decide`](super::decide::decide), carries the answer out through
//! [`Ec2Volumes`] and [`BlockStorage`], logs it and publishes an [`AutoscaleStatus`]. A failed
//! tick is logged and retried next interval; the loop itself only stops on bad config.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;

use super::block::{BlockError, BlockStorage};
use super::decide::{Bounds, BoundsError, Decision, FsUsage, NothingReason, decide};
use super::ec2::{Ec2Error, Ec2Volumes, TAG_AT_MAXIMUM, VolumeInfo, tag_timestamp};

/// What the lead maps `NodeConfig` onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoscaleConfig {
    pub data_mount: PathBuf,
    /// The node's data segments as Terraform created them; the first one is the template
    /// for new segments (AZ, type, encryption, tags, instance).
    pub volume_ids: Vec<String>,
    pub bounds: Bounds,
    pub region: String,
    /// EC2 endpoint override (LocalStack); `None` uses the default.
    pub endpoint: Option<String>,
    pub cluster_id: String,
    pub interval: Duration,
}

/// Time for the loop, so tests and simulations need not wait.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

/// Wall-clock time and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// What the agent's status command shows about storage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AutoscaleStatus {
    /// Unix seconds of the last completed check.
    pub last_check_unix: Option<u64>,
    pub used_bytes: u64,
    pub fs_size_bytes: u64,
    pub used_percent: f64,
    pub segments: Vec<SegmentStatus>,
    pub total_gib: u64,
    pub max_size_gib: u64,
    /// The segments add up to `max_size_gib`: the autoscaler cannot add space any more.
    pub at_maximum: bool,
    /// The last decision, in words (also when it was "nothing").
    pub last_decision: String,
    pub last_action: Option<ActionRecord>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentStatus {
    pub volume_id: String,
    pub size_gib: u64,
    pub attached_as: Option<String>,
}

/// One action the autoscaler took (or tried).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionRecord {
    pub at: String,
    pub action: String,
    pub ok: bool,
}

/// Why the loop cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum AutoscaleError {
    #[error("invalid autoscaling bounds: {0}")]
    Bounds(#[from] BoundsError),
    #[error("no data volumes configured")]
    NoVolumes,
    #[error("zero check interval")]
    ZeroInterval,
}

/// A tick that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
    #[error(transparent)]
    Block(#[from] BlockError),
}

/// Work EC2 finished but the machine did not, retried before anything new is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    FsGrow {
        volume_id: String,
        attached_as: Option<String>,
    },
    JoinSegment {
        volume_id: String,
        attached_as: String,
    },
}

/// How often "at maximum" is repeated in the log while it lasts.
const AT_MAXIMUM_REPEAT: Duration = Duration::from_secs(3600);

/// The loop's state; [`Autoscaler::tick`] is one check-decide-act round.
pub struct Autoscaler<E, B, C> {
    cfg: AutoscaleConfig,
    ec2: E,
    storage: B,
    clock: C,
    volume_ids: Vec<String>,
    /// Volumes EBS refused to modify although its history said it would accept: treated as
    /// in cooldown from the refusal on, so the next tick adds a segment instead.
    refused_at: BTreeMap<String, SystemTime>,
    pending: Vec<Pending>,
    last_at_max_warning: Option<SystemTime>,
    started: bool,
    status: watch::Sender<AutoscaleStatus>,
}

impl<E: Ec2Volumes, B: BlockStorage, C: Clock> Autoscaler<E, B, C> {
    pub fn new(
        cfg: AutoscaleConfig,
        ec2: E,
        storage: B,
        clock: C,
        status: watch::Sender<AutoscaleStatus>,
    ) -> Result<Self, AutoscaleError> {
        cfg.bounds.validate()?;
        if cfg.volume_ids.is_empty() {
            return Err(AutoscaleError::NoVolumes);
        }
        if cfg.interval.is_zero() {
            return Err(AutoscaleError::ZeroInterval);
        }
        Ok(Self {
            volume_ids: cfg.volume_ids.clone(),
            cfg,
            ec2,
            storage,
            clock,
            refused_at: BTreeMap::new(),
            pending: Vec::new(),
            last_at_max_warning: None,
            started: false,
            status,
        })
    }

    /// The segments the loop currently counts (configured ones, then added ones).
    pub fn volume_ids(&self) -> &[String] {
        &self.volume_ids
    }

    /// Picks up segments added before a restart and lets the filesystem fill its devices.
    async fn start(&mut self) {
        match self.ec2.find_autoscaled(&self.cfg.volume_ids).await {
            Ok(found) => {
                for v in found {
                    if !self.volume_ids.contains(&v.volume_id) {
                        tracing::info!(volume_id = %v.volume_id, size_gib = v.size_gib, "found segment added earlier");
                        self.volume_ids.push(v.volume_id);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for segments added earlier"),
        }
        if let Err(e) = self.storage.reconcile().await {
            tracing::warn!(error = %e, "could not extend the filesystem over its devices at start");
        }
        self.started = true;
    }

    /// One round: finish pending work, look, decide, act. Returns the decision made.
    pub async fn tick(&mut self) -> Result<Decision, TickError> {
        if !self.started {
            self.start().await;
        }
        let result = self.tick_inner().await;
        let now = self.clock.now();
        self.status.send_modify(|s| {
            s.last_check_unix = Some(unix(now));
            match &result {
                Ok(_) => s.last_error = None,
                Err(e) => s.last_error = Some(e.to_string()),
            }
        });
        if let Err(e) = &result {
            tracing::error!(error = %e, "storage autoscaling check failed");
        }
        result
    }

    async fn tick_inner(&mut self) -> Result<Decision, TickError> {
        self.finish_pending().await?;

        let usage = self.storage.usage().await?;
        let mut infos = self.ec2.describe(&self.volume_ids).await?;
        infos.sort_by_key(|v| self.volume_ids.iter().position(|id| *id == v.volume_id));
        let now = self.clock.now();
        let states: Vec<_> = infos
            .iter()
            .map(|v| {
                let mut s = v.to_state();
                if let Some(t) = self.refused_at.get(&v.volume_id) {
                    s.last_modified = Some(s.last_modified.map_or(*t, |m| m.max(*t)));
                }
                s
            })
            .collect();
        let mut bounds = self.cfg.bounds.clone();
        if !self.storage.supports_segments() {
            bounds.max_segments = bounds.max_segments.min(states.len().max(1));
        }
        let decision = decide(usage, &states, now, &bounds);
        let total_gib: u64 = infos.iter().map(|v| v.size_gib).sum();
        let at_maximum = total_gib >= bounds.max_size_gib;
        self.publish(&usage, &infos, total_gib, at_maximum, &decision);
        self.sync_at_maximum_tag(&infos, at_maximum).await;

        match &decision {
            Decision::Nothing { reason } => {
                tracing::debug!(
                    ?reason,
                    used_percent = usage.used_percent(),
                    "storage: nothing to do"
                );
                if let NothingReason::NoSegmentSlot { retry_at } = reason {
                    tracing::warn!(
                        retry_at = retry_at.map(tag_timestamp),
                        used_percent = usage.used_percent(),
                        "storage needs room but every volume is in its EBS cooldown and no segment can be added"
                    );
                }
            }
            Decision::AtMaximum {
                total_gib,
                max_size_gib,
                ..
            } => {
                let due = self
                    .last_at_max_warning
                    .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= AT_MAXIMUM_REPEAT);
                if due {
                    tracing::warn!(
                        total_gib,
                        max_size_gib,
                        used_percent = usage.used_percent(),
                        free_bytes = usage.free_bytes(),
                        "STORAGE AT MAXIMUM: the data filesystem is filling and its segments already add up to max_size_gib; raise max_size_gib or free space"
                    );
                    self.last_at_max_warning = Some(now);
                }
            }
            Decision::GrowVolume {
                volume_id,
                from_gib,
                to_gib,
            } => {
                let attached_as = infos
                    .iter()
                    .find(|v| &v.volume_id == volume_id)
                    .and_then(|v| v.attached_as.clone());
                self.grow(volume_id, *from_gib, *to_gib, attached_as, &usage)
                    .await?;
            }
            Decision::AddSegment { size_gib } => {
                let template = infos
                    .first()
                    .cloned()
                    .ok_or_else(|| Ec2Error::Incomplete("no volume to use as a template".into()))?;
                self.add_segment(&template, *size_gib, &usage).await?;
            }
        }
        Ok(decision)
    }

    async fn grow(
        &mut self,
        volume_id: &str,
        from_gib: u64,
        to_gib: u64,
        attached_as: Option<String>,
        usage: &FsUsage,
    ) -> Result<(), TickError> {
        let action = format!("grow {volume_id} {from_gib}->{to_gib} GiB");
        tracing::info!(
            volume_id,
            from_gib,
            to_gib,
            used_percent = usage.used_percent(),
            "storage: growing volume"
        );
        match self.ec2.grow_volume(volume_id, from_gib, to_gib).await {
            Ok(()) => {}
            Err(Ec2Error::ModificationRefused { message, .. }) => {
                tracing::warn!(volume_id, %message, "EBS refused the modification; treating the volume as in cooldown");
                self.refused_at
                    .insert(volume_id.to_owned(), self.clock.now());
                self.record(format!("{action}: refused by EBS ({message})"), false);
                return Ok(());
            }
            Err(e) => {
                self.record(format!("{action}: {e}"), false);
                return Err(e.into());
            }
        }
        self.pending.push(Pending::FsGrow {
            volume_id: volume_id.to_owned(),
            attached_as,
        });
        self.finish_pending().await?;
        self.record(action, true);
        Ok(())
    }

    async fn add_segment(
        &mut self,
        template: &VolumeInfo,
        size_gib: u64,
        usage: &FsUsage,
    ) -> Result<(), TickError> {
        tracing::info!(size_gib, template = %template.volume_id, used_percent = usage.used_percent(), "storage: adding a segment");
        let seg = match self.ec2.add_segment(template, size_gib).await {
            Ok(s) => s,
            Err(e) => {
                self.record(format!("add segment of {size_gib} GiB: {e}"), false);
                return Err(e.into());
            }
        };
        self.volume_ids.push(seg.volume_id.clone());
        self.pending.push(Pending::JoinSegment {
            volume_id: seg.volume_id.clone(),
            attached_as: seg.attached_as.clone(),
        });
        self.finish_pending().await?;
        self.record(
            format!(
                "add segment {} of {} GiB at {}",
                seg.volume_id, seg.size_gib, seg.attached_as
            ),
            true,
        );
        Ok(())
    }

    async fn finish_pending(&mut self) -> Result<(), TickError> {
        while let Some(p) = self.pending.first().cloned() {
            let res = match &p {
                Pending::FsGrow {
                    volume_id,
                    attached_as,
                } => {
                    self.storage
                        .grow_after_volume_resize(volume_id, attached_as.as_deref())
                        .await
                }
                Pending::JoinSegment {
                    volume_id,
                    attached_as,
                } => self.storage.add_segment(volume_id, attached_as).await,
            };
            if let Err(e) = res {
                self.record(format!("{p:?}: {e}"), false);
                return Err(e.into());
            }
            tracing::info!(step = ?p, "storage: filesystem extended");
            self.pending.remove(0);
        }
        Ok(())
    }

    async fn sync_at_maximum_tag(&self, infos: &[VolumeInfo], at_maximum: bool) {
        let tagged = infos.iter().any(|v| {
            v.tags
                .get(TAG_AT_MAXIMUM)
                .is_some_and(|t| t.starts_with("true"))
        });
        if tagged == at_maximum {
            return;
        }
        let ids: Vec<String> = infos.iter().map(|v| v.volume_id.clone()).collect();
        if let Err(e) = self.ec2.mark_at_maximum(&ids, at_maximum).await {
            tracing::warn!(error = %e, at_maximum, "could not tag the volumes");
        } else if at_maximum {
            tracing::warn!(
                max_size_gib = self.cfg.bounds.max_size_gib,
                "storage segments reached max_size_gib; tagged {TAG_AT_MAXIMUM}"
            );
        }
    }

    fn publish(
        &self,
        usage: &FsUsage,
        infos: &[VolumeInfo],
        total_gib: u64,
        at_maximum: bool,
        decision: &Decision,
    ) {
        let max = self.cfg.bounds.max_size_gib;
        self.status.send_modify(|s| {
            s.used_bytes = usage.used_bytes;
            s.fs_size_bytes = usage.size_bytes;
            s.used_percent = usage.used_percent();
            s.segments = infos
                .iter()
                .map(|v| SegmentStatus {
                    volume_id: v.volume_id.clone(),
                    size_gib: v.size_gib,
                    attached_as: v.attached_as.clone(),
                })
                .collect();
            s.total_gib = total_gib;
            s.max_size_gib = max;
            s.at_maximum = at_maximum;
            s.last_decision = describe_decision(decision);
        });
    }

    fn record(&self, action: String, ok: bool) {
        let at = tag_timestamp(self.clock.now());
        if !ok {
            tracing::warn!(%action, "storage action failed");
        }
        self.status.send_modify(|s| {
            s.last_action = Some(ActionRecord { at, action, ok });
        });
    }

    /// Runs forever: a tick every `interval`. Cancel by dropping or aborting the task.
    pub async fn run(mut self) {
        tracing::info!(
            mount = %self.cfg.data_mount.display(),
            volumes = ?self.cfg.volume_ids,
            max_size_gib = self.cfg.bounds.max_size_gib,
            grow_at_percent = self.cfg.bounds.grow_at_percent,
            "storage autoscaler started"
        );
        loop {
            // Errors are in the status and the log already; the next tick retries.
            let _ = self.tick().await;
            self.clock.sleep(self.cfg.interval).await;
        }
    }
}

/// The entry point the agent's `run` wires in: validates `cfg`, then loops forever,
/// publishing into `status`.
pub async fn run_autoscaler<E: Ec2Volumes, B: BlockStorage, C: Clock>(
    cfg: AutoscaleConfig,
    ec2: E,
    storage: B,
    clock: C,
    status: watch::Sender<AutoscaleStatus>,
) -> Result<(), AutoscaleError> {
    Autoscaler::new(cfg, ec2, storage, clock, status)?
        .run()
        .await;
    Ok(())
}

/// A human sentence for a decision (status and logs).
pub fn describe_decision(d: &Decision) -> String {
    match d {
        Decision::Nothing { reason } => match reason {
            NothingReason::BelowThreshold => "nothing: below grow_at_percent".into(),
            NothingReason::NoVolumes => "nothing: no volumes".into(),
            NothingReason::ModificationInProgress { volume_id } => {
                format!("nothing: modification of {volume_id} in progress")
            }
            NothingReason::NoSegmentSlot { retry_at } => format!(
                "nothing possible: volumes in EBS cooldown and no segment slot left (retry at {})",
                retry_at
                    .map(tag_timestamp)
                    .unwrap_or_else(|| "unknown".into())
            ),
        },
        Decision::GrowVolume {
            volume_id,
            from_gib,
            to_gib,
        } => format!("grow {volume_id} {from_gib}->{to_gib} GiB"),
        Decision::AddSegment { size_gib } => format!("add a {size_gib} GiB segment"),
        Decision::AtMaximum {
            total_gib,
            max_size_gib,
            used_percent_x100,
        } => format!(
            "AT MAXIMUM: {total_gib} of {max_size_gib} GiB, {}.{:02}% used",
            used_percent_x100 / 100,
            used_percent_x100 % 100
        ),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::storage::decide::EBS_MODIFICATION_COOLDOWN;
    use crate::storage::ec2::{ModificationInfo, ModificationState, NewSegment};

    const G: u64 = 1024 * 1024 * 1024;

    #[derive(Clone)]
    struct FakeClock(Arc<Mutex<SystemTime>>);
    impl Clock for FakeClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
        async fn sleep(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }
    impl FakeClock {
        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    #[derive(Default)]
    struct World {
        vols: Vec<VolumeInfo>,
        fs_size_gib: u64,
        used_bytes: u64,
        refuse_modify: bool,
        fail_fs: bool,
        calls: Vec<String>,
    }

    #[derive(Clone)]
    struct FakeEc2(Arc<Mutex<World>>, FakeClock);
    #[derive(Clone)]
    struct FakeBlock(Arc<Mutex<World>>, bool);

    fn vol(id: &str, size: u64) -> VolumeInfo {
        VolumeInfo {
            volume_id: id.into(),
            size_gib: size,
            availability_zone: "us-east-1a".into(),
            volume_type: Some("gp3".into()),
            encrypted: true,
            kms_key_id: None,
            iops: None,
            throughput: None,
            state: Some("in-use".into()),
            attached_instance: Some("i-1".into()),
            attached_as: Some("/dev/sdf".into()),
            tags: BTreeMap::new(),
            last_modification: None,
        }
    }

    impl Ec2Volumes for FakeEc2 {
        async fn describe(&self, ids: &[String]) -> Result<Vec<VolumeInfo>, Ec2Error> {
            let w = self.0.lock().unwrap();
            Ok(w.vols
                .iter()
                .filter(|v| ids.contains(&v.volume_id))
                .rev()
                .cloned()
                .collect())
        }
        async fn find_autoscaled(&self, _: &[String]) -> Result<Vec<VolumeInfo>, Ec2Error> {
            Ok(vec![])
        }
        async fn grow_volume(&self, id: &str, from: u64, to: u64) -> Result<(), Ec2Error> {
            let now = self.1.now();
            let mut w = self.0.lock().unwrap();
            w.calls.push(format!("grow {id} {from}->{to}"));
            if w.refuse_modify {
                return Err(Ec2Error::ModificationRefused {
                    volume_id: id.into(),
                    message: "rate".into(),
                });
            }
            let v = w.vols.iter_mut().find(|v| v.volume_id == id).unwrap();
            v.size_gib = to;
            v.last_modification = Some(ModificationInfo {
                state: ModificationState::Optimizing,
                start_time: Some(now),
                target_size_gib: Some(to),
            });
            Ok(())
        }
        async fn add_segment(&self, t: &VolumeInfo, size: u64) -> Result<NewSegment, Ec2Error> {
            let mut w = self.0.lock().unwrap();
            let id = format!("vol-new{}", w.vols.len());
            w.calls.push(format!("add {size} from {}", t.volume_id));
            let mut v = vol(&id, size);
            v.attached_as = Some("/dev/sdg".into());
            w.vols.push(v);
            Ok(NewSegment {
                volume_id: id,
                attached_as: "/dev/sdg".into(),
                size_gib: size,
            })
        }
        async fn mark_at_maximum(&self, ids: &[String], at: bool) -> Result<(), Ec2Error> {
            let mut w = self.0.lock().unwrap();
            w.calls.push(format!("at-maximum {at}"));
            for v in w.vols.iter_mut().filter(|v| ids.contains(&v.volume_id)) {
                v.tags.insert(TAG_AT_MAXIMUM.into(), at.to_string());
            }
            Ok(())
        }
    }

    impl BlockStorage for FakeBlock {
        async fn usage(&self) -> Result<FsUsage, BlockError> {
            let w = self.0.lock().unwrap();
            Ok(FsUsage {
                size_bytes: w.fs_size_gib * G,
                used_bytes: w.used_bytes,
            })
        }
        fn supports_segments(&self) -> bool {
            self.1
        }
        async fn grow_after_volume_resize(
            &self,
            id: &str,
            _: Option<&str>,
        ) -> Result<(), BlockError> {
            let mut w = self.0.lock().unwrap();
            w.calls.push(format!("fs-grow {id}"));
            if w.fail_fs {
                return Err(BlockError::SegmentsNeedLvm);
            }
            w.fs_size_gib = w.vols.iter().map(|v| v.size_gib).sum();
            Ok(())
        }
        async fn add_segment(&self, id: &str, dev: &str) -> Result<(), BlockError> {
            let mut w = self.0.lock().unwrap();
            w.calls.push(format!("fs-join {id} {dev}"));
            w.fs_size_gib = w.vols.iter().map(|v| v.size_gib).sum();
            Ok(())
        }
        async fn reconcile(&self) -> Result<(), BlockError> {
            Ok(())
        }
    }

    struct Rig {
        world: Arc<Mutex<World>>,
        clock: FakeClock,
        scaler: Autoscaler<FakeEc2, FakeBlock, FakeClock>,
        status: watch::Receiver<AutoscaleStatus>,
    }

    fn rig(size: u64, used_gib: u64, max: u64, lvm: bool) -> Rig {
        let world = Arc::new(Mutex::new(World {
            vols: vec![vol("vol-1", size)],
            fs_size_gib: size,
            used_bytes: used_gib * G,
            ..Default::default()
        }));
        let clock = FakeClock(Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )));
        let cfg = AutoscaleConfig {
            data_mount: "/var/lib/mysql".into(),
            volume_ids: vec!["vol-1".into()],
            bounds: Bounds::new(80, 20, 5, max).unwrap(),
            region: "us-east-1".into(),
            endpoint: None,
            cluster_id: "c1".into(),
            interval: Duration::from_secs(60),
        };
        let (tx, rx) = watch::channel(AutoscaleStatus::default());
        let scaler = Autoscaler::new(
            cfg,
            FakeEc2(world.clone(), clock.clone()),
            FakeBlock(world.clone(), lvm),
            clock.clone(),
            tx,
        )
        .unwrap();
        Rig {
            world,
            clock,
            scaler,
            status: rx,
        }
    }

    fn calls(r: &Rig) -> Vec<String> {
        std::mem::take(&mut r.world.lock().unwrap().calls)
    }

    #[tokio::test]
    async fn grows_then_adds_a_segment_during_cooldown_then_grows_again() {
        let mut r = rig(20, 10, 1000, true);
        let d = r.scaler.tick().await.unwrap();
        assert_eq!(
            d,
            Decision::Nothing {
                reason: NothingReason::BelowThreshold
            }
        );
        assert!(calls(&r).is_empty());

        r.world.lock().unwrap().used_bytes = 17 * G;
        let d = r.scaler.tick().await.unwrap();
        assert!(
            matches!(d, Decision::GrowVolume { to_gib: 25, .. }),
            "{d:?}"
        );
        assert_eq!(calls(&r), ["grow vol-1 20->25", "fs-grow vol-1"]);
        let s = r.status.borrow().clone();
        assert_eq!(
            s.last_action.as_ref().map(|a| (a.ok, a.action.as_str())),
            Some((true, "grow vol-1 20->25 GiB"))
        );

        r.world.lock().unwrap().used_bytes = 24 * G;
        r.clock.advance(Duration::from_secs(600));
        let d = r.scaler.tick().await.unwrap();
        assert_eq!(d, Decision::AddSegment { size_gib: 5 });
        assert_eq!(calls(&r), ["add 5 from vol-1", "fs-join vol-new1 /dev/sdg"]);
        assert_eq!(r.scaler.volume_ids(), ["vol-1", "vol-new1"]);
        assert_eq!(r.world.lock().unwrap().fs_size_gib, 30);

        // Six hours after the first grow the original volume is the one that grows.
        r.world.lock().unwrap().used_bytes = 29 * G;
        r.clock.advance(EBS_MODIFICATION_COOLDOWN);
        let d = r.scaler.tick().await.unwrap();
        assert!(
            matches!(&d, Decision::GrowVolume { volume_id, from_gib: 25, to_gib: 31 } if volume_id == "vol-1"),
            "{d:?}"
        );
        let s = r.status.borrow().clone();
        assert_eq!(s.segments.len(), 2);
        assert_eq!(s.total_gib, 30);
        assert!(!s.at_maximum);
    }

    #[tokio::test]
    async fn at_maximum_is_loud_in_status_and_tag() {
        let mut r = rig(100, 95, 100, true);
        let d = r.scaler.tick().await.unwrap();
        assert!(matches!(
            d,
            Decision::AtMaximum {
                total_gib: 100,
                max_size_gib: 100,
                ..
            }
        ));
        assert_eq!(calls(&r), ["at-maximum true"]);
        let s = r.status.borrow().clone();
        assert!(s.at_maximum);
        assert!(
            s.last_decision.starts_with("AT MAXIMUM"),
            "{}",
            s.last_decision
        );
        // Tagged once, not on every tick.
        r.scaler.tick().await.unwrap();
        assert!(calls(&r).is_empty());
    }

    #[tokio::test]
    async fn last_step_is_clipped_then_at_maximum() {
        let mut r = rig(96, 90, 100, true);
        let d = r.scaler.tick().await.unwrap();
        assert!(
            matches!(d, Decision::GrowVolume { to_gib: 100, .. }),
            "{d:?}"
        );
        assert_eq!(calls(&r), ["grow vol-1 96->100", "fs-grow vol-1"]);
        let d = r.scaler.tick().await.unwrap();
        assert!(matches!(d, Decision::AtMaximum { .. }), "{d:?}");
        assert_eq!(calls(&r), ["at-maximum true"]);
        assert!(r.status.borrow().at_maximum);
    }

    #[tokio::test]
    async fn refused_modification_counts_as_cooldown() {
        let mut r = rig(20, 19, 1000, true);
        r.world.lock().unwrap().refuse_modify = true;
        let d = r.scaler.tick().await.unwrap();
        assert!(matches!(d, Decision::GrowVolume { .. }));
        assert_eq!(
            r.status.borrow().last_action.as_ref().map(|a| a.ok),
            Some(false)
        );
        let d = r.scaler.tick().await.unwrap();
        assert_eq!(d, Decision::AddSegment { size_gib: 5 });
    }

    #[tokio::test]
    async fn failed_filesystem_step_is_retried_without_a_second_modification() {
        let mut r = rig(20, 19, 1000, true);
        r.world.lock().unwrap().fail_fs = true;
        assert!(r.scaler.tick().await.is_err());
        assert_eq!(calls(&r), ["grow vol-1 20->25", "fs-grow vol-1"]);
        assert!(r.status.borrow().last_error.is_some());
        r.world.lock().unwrap().fail_fs = false;
        r.world.lock().unwrap().used_bytes = 10 * G;
        let d = r.scaler.tick().await.unwrap();
        assert_eq!(calls(&r), ["fs-grow vol-1"]);
        assert_eq!(
            d,
            Decision::Nothing {
                reason: NothingReason::BelowThreshold
            }
        );
        assert_eq!(r.world.lock().unwrap().fs_size_gib, 25);
        assert!(r.status.borrow().last_error.is_none());
    }

    #[tokio::test]
    async fn without_lvm_a_cooldown_waits_and_says_why() {
        let mut r = rig(20, 17, 1000, false);
        r.scaler.tick().await.unwrap();
        calls(&r);
        r.world.lock().unwrap().used_bytes = 24 * G;
        let d = r.scaler.tick().await.unwrap();
        assert!(
            matches!(
                d,
                Decision::Nothing {
                    reason: NothingReason::NoSegmentSlot { retry_at: Some(_) }
                }
            ),
            "{d:?}"
        );
        assert!(calls(&r).is_empty());
    }

    #[test]
    fn bad_config_is_refused() {
        let (tx, _rx) = watch::channel(AutoscaleStatus::default());
        let world = Arc::new(Mutex::new(World::default()));
        let clock = FakeClock(Arc::new(Mutex::new(SystemTime::UNIX_EPOCH)));
        let mut cfg = AutoscaleConfig {
            data_mount: "/d".into(),
            volume_ids: vec![],
            bounds: Bounds::new(80, 20, 5, 100).unwrap(),
            region: "r".into(),
            endpoint: None,
            cluster_id: "c".into(),
            interval: Duration::from_secs(1),
        };
        let mk = |cfg: AutoscaleConfig| {
            Autoscaler::new(
                cfg,
                FakeEc2(world.clone(), clock.clone()),
                FakeBlock(world.clone(), true),
                clock.clone(),
                tx.clone(),
            )
            .err()
            .map(|e| e.to_string())
        };
        assert_eq!(
            mk(cfg.clone()).as_deref(),
            Some("no data volumes configured")
        );
        cfg.volume_ids = vec!["v".into()];
        cfg.bounds.grow_at_percent = 0;
        assert!(mk(cfg.clone()).unwrap().contains("grow_at_percent"));
    }
}
