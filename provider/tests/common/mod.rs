//! What the tests that drive the real `tofu` share.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The tofu CLI: `$TOFU` (scripts/test sets it), else what scripts/install-tofu prints (it
/// builds and caches OpenTofu on first use). Fails the test, saying why, when neither works.
pub fn tofu() -> PathBuf {
    if let Some(p) = std::env::var_os("TOFU").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/install-tofu"))
        .output()
        .expect("run scripts/install-tofu");
    assert!(
        out.status.success(),
        "these tests need the tofu CLI and scripts/install-tofu failed (or set TOFU): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
