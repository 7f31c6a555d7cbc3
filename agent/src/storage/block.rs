//! The node-local half of storage growth: reading how full the data filesystem is, and making
//! the partition, LVM and filesystem take up space EBS has added. Behind the [`BlockStorage`]
//! trait so the autoscaling loop can be tested without root or block devices. This module
//! never talks to AWS.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use super::decide::FsUsage;

/// What the autoscaler needs from the machine it runs on.
pub trait BlockStorage: Send + Sync {
    /// How full the data filesystem is, counting reserved blocks as not available.
    fn usage(&self) -> impl Future<Output = Result<FsUsage, BlockError>> + Send;

    /// Whether new segments can join the data (only when the data lives in an LVM LV).
    fn supports_segments(&self) -> bool;

    /// After EBS grew `volume_id`, makes the partition, PV, LV and filesystem use it.
    fn grow_after_volume_resize(
        &self,
        volume_id: &str,
        attached_as: Option<&str>,
    ) -> impl Future<Output = Result<(), BlockError>> + Send;

    /// Adds a freshly attached volume to the volume group and grows the LV and filesystem.
    fn add_segment(
        &self,
        volume_id: &str,
        attached_as: &str,
    ) -> impl Future<Output = Result<(), BlockError>> + Send;

    /// Makes the filesystem fill whatever the devices already offer: repairs a grow that was
    /// interrupted (agent restart between ModifyVolume and resize2fs). Safe to repeat.
    fn reconcile(&self) -> impl Future<Output = Result<(), BlockError>> + Send;
}

/// A failed local storage step.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not parse output of `{command}`: {detail}")]
    Parse { command: String, detail: String },
    #[error("no block device for volume {volume_id} appeared within {waited:?}")]
    DeviceNotFound { volume_id: String, waited: Duration },
    #[error("the data filesystem is not on LVM; new segments cannot be added")]
    SegmentsNeedLvm,
    #[error("unsupported filesystem type `{0}` (ext4 and xfs are supported)")]
    UnsupportedFilesystem(String),
    #[error("{0} is not a mount point")]
    NotMounted(PathBuf),
}

/// Filesystems the real implementation can grow online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn parse(s: &str) -> Result<Self, BlockError> {
        match s.trim() {
            "ext4" => Ok(Self::Ext4),
            "xfs" => Ok(Self::Xfs),
            other => Err(BlockError::UnsupportedFilesystem(other.to_owned())),
        }
    }
}

/// Where the data filesystem sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLayout {
    /// Straight on a whole disk, no partition table.
    Plain { device: PathBuf },
    /// On partition `number` of `disk`: `growpart` first.
    Partition { disk: PathBuf, number: u32 },
    /// On a logical volume: the only layout new segments can join.
    Lvm { vg: String, lv: String },
}

/// The real [`BlockStorage`]: runs growpart, pvresize, lvextend, resize2fs, xfs_growfs.
#[derive(Debug, Clone)]
pub struct LinuxBlockStorage {
    mount: PathBuf,
    source: PathBuf,
    fs: FsType,
    layout: DataLayout,
    /// How long to wait for a newly attached volume's device node to show up.
    device_wait: Duration,
}

impl LinuxBlockStorage {
    pub fn new(mount: PathBuf, source: PathBuf, fs: FsType, layout: DataLayout) -> Self {
        Self {
            mount,
            source,
            fs,
            layout,
            device_wait: Duration::from_secs(120),
        }
    }

    /// Finds what is mounted at `mount` and how it is laid out (LVM, partition or disk).
    pub async fn detect(mount: &Path) -> Result<Self, BlockError> {
        let out = run(
            "findmnt",
            &[
                "-n",
                "-o",
                "SOURCE,FSTYPE",
                "--mountpoint",
                &mount.to_string_lossy(),
            ],
        )
        .await
        .map_err(|_| BlockError::NotMounted(mount.to_owned()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let (Some(source), Some(fstype)) = (fields.next(), fields.next()) else {
            return Err(BlockError::NotMounted(mount.to_owned()));
        };
        let fs = FsType::parse(fstype)?;
        let source = PathBuf::from(source);
        let layout = detect_layout(&source).await?;
        Ok(Self::new(mount.to_owned(), source, fs, layout))
    }

    pub fn layout(&self) -> &DataLayout {
        &self.layout
    }

    pub fn with_device_wait(mut self, wait: Duration) -> Self {
        self.device_wait = wait;
        self
    }

    async fn grow_filesystem(&self) -> Result<(), BlockError> {
        match self.fs {
            FsType::Ext4 => {
                run("resize2fs", &[&self.source.to_string_lossy()]).await?;
            }
            FsType::Xfs => {
                run("xfs_growfs", &[&self.mount.to_string_lossy()]).await?;
            }
        }
        Ok(())
    }

    async fn extend_lv(&self, vg: &str, lv: &str) -> Result<(), BlockError> {
        let out = run(
            "vgs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "vg_free",
                vg,
            ],
        )
        .await?;
        let free: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| BlockError::Parse {
                command: "vgs".into(),
                detail: format!("{e}"),
            })?;
        if free == 0 {
            // lvextend refuses a zero-size extension; the filesystem may still lag the LV.
            return self.grow_filesystem().await;
        }
        // -r has lvextend call fsadm, which grows ext4 or xfs to the new LV size.
        run(
            "lvextend",
            &["-r", "-l", "+100%FREE", &format!("{vg}/{lv}")],
        )
        .await?;
        Ok(())
    }
}

impl BlockStorage for LinuxBlockStorage {
    async fn usage(&self) -> Result<FsUsage, BlockError> {
        df_usage(&self.mount).await
    }

    fn supports_segments(&self) -> bool {
        matches!(self.layout, DataLayout::Lvm { .. })
    }

    async fn grow_after_volume_resize(
        &self,
        volume_id: &str,
        attached_as: Option<&str>,
    ) -> Result<(), BlockError> {
        match &self.layout {
            DataLayout::Plain { .. } => self.grow_filesystem().await,
            DataLayout::Partition { disk, number } => {
                growpart(disk, *number).await?;
                self.grow_filesystem().await
            }
            DataLayout::Lvm { vg, lv } => {
                let device = wait_for_device(volume_id, attached_as, Duration::ZERO).await?;
                let pv = pv_on_device(&device).await?;
                if let Some((disk, number)) = partition_of(&pv) {
                    growpart(&disk, number).await?;
                }
                run("pvresize", &[&pv.to_string_lossy()]).await?;
                self.extend_lv(vg, lv).await
            }
        }
    }

    async fn add_segment(&self, volume_id: &str, attached_as: &str) -> Result<(), BlockError> {
        let DataLayout::Lvm { vg, lv } = &self.layout else {
            return Err(BlockError::SegmentsNeedLvm);
        };
        let device = wait_for_device(volume_id, Some(attached_as), self.device_wait).await?;
        let dev = device.to_string_lossy().into_owned();
        // Re-running after a half-done attempt must not fail: pvcreate on an existing PV
        // and vgextend with a PV already in this VG both error, so check first.
        let pvs = run("pvs", &["--noheadings", "-o", "vg_name", &dev]).await;
        match pvs {
            Ok(out) => {
                let in_vg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if in_vg.is_empty() {
                    run("vgextend", &[vg, &dev]).await?;
                } else if in_vg != *vg {
                    return Err(BlockError::Command {
                        command: format!("pvs {dev}"),
                        status: "unexpected".into(),
                        stderr: format!("{dev} already belongs to volume group {in_vg}"),
                    });
                }
            }
            Err(_) => {
                run("pvcreate", &["-y", &dev]).await?;
                run("vgextend", &[vg, &dev]).await?;
            }
        }
        self.extend_lv(vg, lv).await
    }

    async fn reconcile(&self) -> Result<(), BlockError> {
        match &self.layout {
            DataLayout::Plain { .. } => self.grow_filesystem().await,
            DataLayout::Partition { disk, number } => {
                growpart(disk, *number).await?;
                self.grow_filesystem().await
            }
            DataLayout::Lvm { vg, lv } => {
                let out = run("pvs", &["--noheadings", "-o", "pv_name,vg_name"]).await?;
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let mut f = line.split_whitespace();
                    if let (Some(pv), Some(pv_vg)) = (f.next(), f.next())
                        && pv_vg == vg
                    {
                        run("pvresize", &[pv]).await?;
                    }
                }
                self.extend_lv(vg, lv).await
            }
        }
    }
}

/// Usage from `df`: size is used + available, so ext4's root reserve counts as full, as it
/// does for mysqld running unprivileged.
pub async fn df_usage(mount: &Path) -> Result<FsUsage, BlockError> {
    let out = run(
        "df",
        &[
            "--block-size=1",
            "--output=used,avail",
            &mount.to_string_lossy(),
        ],
    )
    .await?;
    parse_df(&String::from_utf8_lossy(&out.stdout))
}

fn parse_df(text: &str) -> Result<FsUsage, BlockError> {
    let bad = |detail: &str| BlockError::Parse {
        command: "df".into(),
        detail: format!("{detail}: {text:?}"),
    };
    let line = text.lines().nth(1).ok_or_else(|| bad("no data line"))?;
    let mut f = line.split_whitespace().map(str::parse::<u64>);
    match (f.next(), f.next()) {
        (Some(Ok(used)), Some(Ok(avail))) => Ok(FsUsage {
            size_bytes: used.saturating_add(avail),
            used_bytes: used,
        }),
        _ => Err(bad("expected two numbers")),
    }
}

async fn growpart(disk: &Path, number: u32) -> Result<(), BlockError> {
    let disk_s = disk.to_string_lossy().into_owned();
    let n = number.to_string();
    let command = format!("growpart {disk_s} {n}");
    let out = Command::new("growpart")
        .args([&disk_s, &n])
        .output()
        .await
        .map_err(|source| BlockError::Spawn {
            command: command.clone(),
            source,
        })?;
    // growpart exits 1 with NOCHANGE when the partition already fills the disk: not an error.
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() || stdout.contains("NOCHANGE") {
        return Ok(());
    }
    Err(BlockError::Command {
        command,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

async fn detect_layout(source: &Path) -> Result<DataLayout, BlockError> {
    let src = source.to_string_lossy().into_owned();
    if let Ok(out) = run("lvs", &["--noheadings", "-o", "vg_name,lv_name", &src]).await {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut f = text.split_whitespace();
        if let (Some(vg), Some(lv)) = (f.next(), f.next()) {
            return Ok(DataLayout::Lvm {
                vg: vg.to_owned(),
                lv: lv.to_owned(),
            });
        }
    }
    let canonical = tokio::fs::canonicalize(source)
        .await
        .unwrap_or_else(|_| source.to_owned());
    if let Some((disk, number)) = partition_of(&canonical) {
        return Ok(DataLayout::Partition { disk, number });
    }
    Ok(DataLayout::Plain { device: canonical })
}

/// `/dev/nvme1n1p2` -> (`/dev/nvme1n1`, 2); `/dev/xvdf1` -> (`/dev/xvdf`, 1), read from sysfs
/// so names are never guessed.
fn partition_of(device: &Path) -> Option<(PathBuf, u32)> {
    let name = device.file_name()?.to_str()?;
    let sys = PathBuf::from("/sys/class/block").join(name);
    let number: u32 = std::fs::read_to_string(sys.join("partition"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let parent = std::fs::canonicalize(&sys).ok()?.parent()?.to_owned();
    let disk_name = parent.file_name()?.to_str()?.to_owned();
    Some((PathBuf::from("/dev").join(disk_name), number))
}

/// The PV for a volume: the disk itself or, if it is partitioned, the partition in the VG.
async fn pv_on_device(device: &Path) -> Result<PathBuf, BlockError> {
    let out = run("pvs", &["--noheadings", "-o", "pv_name"]).await?;
    let disk = device.to_string_lossy().into_owned();
    for pv in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let canonical = tokio::fs::canonicalize(pv)
            .await
            .unwrap_or_else(|_| PathBuf::from(pv));
        let c = canonical.to_string_lossy();
        if c == disk || partition_of(&canonical).is_some_and(|(d, _)| d == device) {
            return Ok(canonical);
        }
    }
    Ok(device.to_owned())
}

/// Candidate device paths for an EBS volume: on Nitro, the NVMe serial is the volume id
/// without its dash; on Xen, `/dev/sdX` shows up as `/dev/xvdX`.
pub fn device_candidates(volume_id: &str, attached_as: Option<&str>) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(format!(
        "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{}",
        volume_id.replace('-', "")
    ))];
    if let Some(name) = attached_as {
        out.push(PathBuf::from(name));
        if let Some(rest) = name.strip_prefix("/dev/sd") {
            out.push(PathBuf::from(format!("/dev/xvd{rest}")));
        }
    }
    out
}

async fn wait_for_device(
    volume_id: &str,
    attached_as: Option<&str>,
    wait: Duration,
) -> Result<PathBuf, BlockError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        for c in device_candidates(volume_id, attached_as) {
            if let Ok(p) = tokio::fs::canonicalize(&c).await {
                return Ok(p);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BlockError::DeviceNotFound {
                volume_id: volume_id.to_owned(),
                waited: wait,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn run(program: &str, args: &[&str]) -> Result<Output, BlockError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    tracing::debug!(%command, "running");
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|source| BlockError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(BlockError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_output_is_parsed() {
        let u = parse_df("      Used      Avail\n  1000  3000\n").unwrap();
        assert_eq!(
            u,
            FsUsage {
                size_bytes: 4000,
                used_bytes: 1000
            }
        );
        assert!(parse_df("Used Avail\n").is_err());
        assert!(parse_df("Used Avail\nx 3\n").is_err());
    }

    #[test]
    fn device_candidates_cover_nitro_and_xen() {
        let c = device_candidates("vol-0abc", Some("/dev/sdf"));
        assert_eq!(
            c,
            vec![
                PathBuf::from("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc"),
                PathBuf::from("/dev/sdf"),
                PathBuf::from("/dev/xvdf"),
            ]
        );
    }

    #[test]
    fn fs_types() {
        assert_eq!(FsType::parse("xfs\n").unwrap(), FsType::Xfs);
        assert!(matches!(
            FsType::parse("btrfs"),
            Err(BlockError::UnsupportedFilesystem(_))
        ));
    }

    #[tokio::test]
    async fn df_reads_a_real_mount() {
        let u = df_usage(Path::new("/")).await.unwrap();
        assert!(u.size_bytes > 0 && u.used_bytes <= u.size_bytes);
    }
}
