//! `tofu test` (or `terraform test`, with `STRATA_TF_CLI=terraform`) for every published module,
//! against LocalStack, with Strata from the local filesystem mirror. The modules' own
//! `tests/*.tftest.hcl` hold the assertions; this runs them and fails with the CLI's full output,
//! and also when init or test prints a warning.

use strata_acceptance_tests::{
    Tofu, copy_tree, localstack_endpoint, localstack_lock, network, repo_root, require_localstack,
};

fn tofu_test(module: &str) {
    require_localstack().unwrap();
    let endpoint = localstack_endpoint();
    let net = {
        let _g = localstack_lock();
        network::ensure_blocking(&endpoint, network::DEFAULT_NETWORK_NAME).unwrap()
    };

    let scratch = tempfile::tempdir().unwrap();
    let tofu = Tofu::setup(scratch.path()).unwrap();
    // The whole modules/ tree: global-cluster sources ../replicated-cluster.
    let modules = scratch.path().join("modules");
    copy_tree(&repo_root().join("modules"), &modules).unwrap();
    let dir = modules.join(module);

    let vars = scratch.path().join("network.tfvars.json");
    std::fs::write(&vars, net.tfvars_json().to_string()).unwrap();

    let init = tofu.lock_and_init(&dir, &[]).unwrap();
    assert!(
        !init.contains("Warning:"),
        "init printed a warning:\n{init}"
    );
    let run = tofu
        .run(
            &dir,
            &[
                "test",
                "-no-color",
                &format!("-var-file={}", vars.display()),
                &format!("-var=localstack_endpoint={endpoint}"),
            ],
        )
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success() && out.contains("Success!") && out.contains(" 0 failed"),
        "{} test failed:\n{out}",
        tofu.cli.name()
    );
    assert!(!out.contains("skip"), "a run was skipped:\n{out}");
    assert!(
        !out.contains("Warning:"),
        "{} test printed a warning:\n{out}",
        tofu.cli.name()
    );
}

#[test]
#[ignore = "needs tofu + LocalStack: run via scripts/test"]
fn replicated_cluster_module_tofu_test() {
    tofu_test("replicated-cluster");
}

#[test]
#[ignore = "needs tofu + LocalStack: run via scripts/test"]
fn global_cluster_module_tofu_test() {
    tofu_test("global-cluster");
}
