//! The committed registry docs match what `strata-docs` generates from the schema and the
//! examples, and the check really notices a stale page.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("provider/ has a parent")
        .to_path_buf()
}

fn check(root: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata-docs"))
        .args(["--check", "--root"])
        .arg(root)
        // The test-only resource joins the provider with this set; the docs must not change.
        .env("STRATA_TEST_RESOURCES", "1")
        .output()
        .expect("run strata-docs")
}

#[test]
fn committed_docs_are_fresh() {
    let out = check(&repo_root());
    assert!(
        out.status.success(),
        "docs are stale: run scripts/gen-docs\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn check_names_edited_missing_and_extra_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let root = repo_root();
    for dir in ["docs", "examples"] {
        copy_tree(&root.join(dir), &tmp.path().join(dir));
    }
    assert!(check(tmp.path()).status.success(), "a fresh copy passes");

    let cluster = tmp.path().join("docs/resources/cluster.md");
    let text = std::fs::read_to_string(&cluster).unwrap();
    std::fs::write(&cluster, text.replace("Read-Only", "Computed")).unwrap();
    std::fs::remove_file(tmp.path().join("docs/resources/region.md")).unwrap();
    std::fs::write(tmp.path().join("docs/resources/test_widget.md"), "old").unwrap();

    let out = check(tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("docs are stale: run scripts/gen-docs"),
        "{stderr}"
    );
    assert!(
        stderr.contains("docs/resources/cluster.md (differs)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("docs/resources/region.md (missing)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("docs/resources/test_widget.md (no such resource)"),
        "{stderr}"
    );
    assert!(!stderr.contains("replica.md"), "{stderr}");

    // Regenerating repairs the copy.
    let status = Command::new(env!("CARGO_BIN_EXE_strata-docs"))
        .arg("--root")
        .arg(tmp.path())
        .env("STRATA_TEST_RESOURCES", "1")
        .status()
        .unwrap();
    assert!(status.success());
    assert!(check(tmp.path()).status.success());
    assert!(!tmp.path().join("docs/resources/test_widget.md").exists());
}

#[test]
fn committed_docs_leave_out_the_test_widget() {
    let root = repo_root();
    assert!(!root.join("docs/resources/test_widget.md").exists());
    for page in std::fs::read_dir(root.join("docs/resources")).unwrap() {
        let text = std::fs::read_to_string(page.unwrap().path()).unwrap();
        assert!(!text.contains("strata_test_widget"));
    }
    let index = std::fs::read_to_string(root.join("docs/index.md")).unwrap();
    assert!(!index.contains("strata_test_widget"));
}
