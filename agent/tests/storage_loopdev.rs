//! The real `LinuxBlockStorage` on loop devices: a filesystem on a loop device is mounted, its
//! backing file grown (as EBS grows a volume), and the storage code must grow the filesystem
//! online; with LVM, a new loop device must join the volume group and extend the LV.
//!
//! Needs root, loop devices and (for LVM) the device-mapper. Where the machine forbids a step,
//! the test fails with `NOT RUN:` and the reason: it never passes without running.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_agent::storage::{BlockStorage, DataLayout, FsType, LinuxBlockStorage};

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A test that cannot exercise anything here fails: it must never pass without running.
/// scripts/test leaves out the tests this machine cannot run (and says so) unless
/// `STRATA_LOOPDEV_TESTS` asks for them.
fn not_run(test: &str, why: &str) {
    panic!("NOT RUN: {test}: {why}. This machine cannot run it; scripts/test skips it by name");
}

/// Loop devices, mounts and their backing files, undone in reverse order on drop.
struct Rig {
    dir: Option<tempfile::TempDir>,
    loops: Vec<String>,
    mounts: Vec<PathBuf>,
    vg: Option<String>,
}

impl Rig {
    fn new() -> Self {
        Self {
            dir: Some(tempfile::tempdir().unwrap()),
            loops: Vec::new(),
            mounts: Vec::new(),
            vg: None,
        }
    }
    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }
    fn loop_device(&mut self, name: &str, size: &str) -> Result<(String, PathBuf), String> {
        let file = self.dir().join(name);
        sh("truncate", &["-s", size, &file.to_string_lossy()])?;
        let dev = sh("losetup", &["-f", "--show", &file.to_string_lossy()])?;
        self.loops.push(dev.clone());
        Ok((dev, file))
    }
    fn mount(&mut self, dev: &str) -> Result<PathBuf, String> {
        let m = self.dir().join(format!("mnt{}", self.mounts.len()));
        std::fs::create_dir_all(&m).map_err(|e| e.to_string())?;
        sh("mount", &[dev, &m.to_string_lossy()])?;
        self.mounts.push(m.clone());
        Ok(m)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = sh("umount", &[&m.to_string_lossy()]);
        }
        if let Some(vg) = &self.vg {
            let _ = sh("vgchange", &["-an", vg]);
            let _ = sh("vgremove", &["-f", vg]);
        }
        for l in self.loops.iter().rev() {
            let _ = sh("pvremove", &["-ff", "-y", l]);
            let _ = sh("losetup", &["-d", l]);
        }
    }
}

fn is_root() -> bool {
    sh("id", &["-u"]).is_ok_and(|u| u == "0")
}

fn fill(mount: &Path, mib: u32) {
    sh(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={}", mount.join("data").display()),
            "bs=1M",
            &format!("count={mib}"),
            "status=none",
        ],
    )
    .unwrap();
    sh("sync", &[]).unwrap();
}

/// Plain layout: filesystem on the whole device, grown after the device grew.
async fn plain_grow(test: &str, fs: FsType) {
    if !is_root() {
        return not_run(test, "needs root");
    }
    let (mkfs, min_size) = match fs {
        FsType::Xfs => ("mkfs.xfs", "320M"),
        FsType::Ext4 => ("mkfs.ext4", "320M"),
    };
    let mut rig = Rig::new();
    let (dev, file) = match rig.loop_device("disk.img", min_size) {
        Ok(x) => x,
        Err(e) => return not_run(test, &format!("loop devices unavailable: {e}")),
    };
    if let Err(e) = sh(mkfs, &["-q", &dev]) {
        return not_run(test, &format!("{mkfs} unavailable: {e}"));
    }
    let mount = match rig.mount(&dev) {
        Ok(m) => m,
        Err(e) => return not_run(test, &format!("mount forbidden: {e}")),
    };
    fill(&mount, 100);

    let storage = LinuxBlockStorage::detect(&mount).await.unwrap();
    assert_eq!(
        storage.layout(),
        &DataLayout::Plain {
            device: PathBuf::from(&dev)
        }
    );
    assert!(!storage.supports_segments());
    let before = storage.usage().await.unwrap();
    assert!(before.used_bytes >= 100 << 20, "{before:?}");
    assert!(before.size_bytes < 320 << 20, "{before:?}");

    // What EBS does to the device: it becomes larger underneath the mounted filesystem.
    sh("truncate", &["-s", "640M", &file.to_string_lossy()]).unwrap();
    sh("losetup", &["-c", &dev]).unwrap();
    match storage
        .grow_after_volume_resize("vol-loop", Some(&dev))
        .await
    {
        Ok(()) => {}
        Err(e) if e.to_string().contains("Permission denied") => {
            return not_run(
                test,
                &format!("the kernel/sandbox refuses online resize here: {e}"),
            );
        }
        Err(e) => panic!("grow failed: {e}"),
    }
    let after = storage.usage().await.unwrap();
    assert!(
        after.size_bytes > before.size_bytes + (250 << 20),
        "filesystem did not grow: {before:?} -> {after:?}"
    );
    // The data is untouched; the new allocation groups' metadata adds a few MiB of use.
    assert!(
        after.used_bytes >= before.used_bytes && after.used_bytes < before.used_bytes + (32 << 20),
        "{before:?} -> {after:?}"
    );
    // Growing again with nothing new is harmless.
    storage.reconcile().await.unwrap();
    eprintln!(
        "RAN: {test}: {} -> {} bytes online",
        before.size_bytes, after.size_bytes
    );
}

#[tokio::test]
#[ignore = "needs loop devices and root"]
async fn xfs_on_loop_device_grows_online() {
    plain_grow("xfs_on_loop_device_grows_online", FsType::Xfs).await;
}

#[tokio::test]
#[ignore = "needs loop devices and root"]
async fn ext4_on_loop_device_grows_online() {
    plain_grow("ext4_on_loop_device_grows_online", FsType::Ext4).await;
}

#[tokio::test]
#[ignore = "needs loop devices and root"]
async fn lvm_on_loop_devices_adds_a_segment() {
    let test = "lvm_on_loop_devices_adds_a_segment";
    if !is_root() {
        return not_run(test, "needs root");
    }
    if !Path::new("/dev/mapper/control").exists() {
        return not_run(
            test,
            "no device-mapper (/dev/mapper/control missing): LVM logical volumes cannot be activated here",
        );
    }
    if let Err(e) = sh("lvm", &["version"]) {
        return not_run(test, &format!("LVM tools missing: {e}"));
    }
    let mut rig = Rig::new();
    let (pv1, _) = match rig.loop_device("pv1.img", "300M") {
        Ok(x) => x,
        Err(e) => return not_run(test, &format!("loop devices unavailable: {e}")),
    };
    let vg = format!("stratatest{}", std::process::id());
    sh("pvcreate", &["-y", &pv1]).unwrap();
    sh("vgcreate", &[&vg, &pv1]).unwrap();
    rig.vg = Some(vg.clone());
    if let Err(e) = sh("lvcreate", &["-y", "-l", "100%FREE", "-n", "data", &vg]) {
        return not_run(test, &format!("lvcreate failed: {e}"));
    }
    let lv = format!("/dev/{vg}/data");
    sh("mkfs.xfs", &["-q", &lv]).unwrap();
    let mount = rig.mount(&lv).unwrap();
    fill(&mount, 100);

    let storage = LinuxBlockStorage::detect(&mount).await.unwrap();
    assert_eq!(
        storage.layout(),
        &DataLayout::Lvm {
            vg: vg.clone(),
            lv: "data".into()
        }
    );
    assert!(storage.supports_segments());
    let before = storage.usage().await.unwrap();

    let (pv2, _) = rig.loop_device("pv2.img", "300M").unwrap();
    storage.add_segment("vol-loop2", &pv2).await.unwrap();
    let after = storage.usage().await.unwrap();
    assert!(
        after.size_bytes > before.size_bytes + (250 << 20),
        "LV/filesystem did not grow: {before:?} -> {after:?}"
    );
    let pvs = sh(
        "pvs",
        &[
            "--noheadings",
            "-o",
            "pv_name",
            "-S",
            &format!("vg_name={vg}"),
        ],
    )
    .unwrap();
    assert!(pvs.contains(&pv2), "{pvs}");
    eprintln!(
        "RAN: {test}: {} -> {} bytes with a second PV",
        before.size_bytes, after.size_bytes
    );
}
