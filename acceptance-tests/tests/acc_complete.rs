//! Acceptance: `examples/complete` as a user runs it, against LocalStack (nodes are records
//! only: `node_ready_timeout = "0s"`): init, apply, an empty plan, destroy, nothing left, and no
//! warning printed by any step. Part of the CLI matrix: scripts/test runs it under tofu and
//! under terraform.
//!
//! The provider reaches LocalStack through `strata-fault-proxy` at fault rate 0, which counts
//! the AWS calls: the apply must stay within [`MAX_AWS_CALLS_PER_APPLY`]. The example runs with
//! its own defaults, the way issue 16 counted its 105 calls (on the code of 2026-11-27, before
//! the Route 53 endpoints, the agent bucket and the credential check): 62 now.

mod acc_support;

use acc_support::Acc;
use strata_acceptance_tests::{AwsProxy, copy_tree, repo_root};

/// AWS calls one `apply` of examples/complete (with its defaults) may make, its plan walk
/// included: a regression bound (62 measured, 4 of them the plan walk's; 40 EC2, 8 Route 53,
/// 4 each IAM, S3 and SSM, 2 STS; README, Figures) with room for a few SDK retries, and for
/// polls that a loaded machine spreads beyond one shared batch (up to 6 calls more).
const MAX_AWS_CALLS_PER_APPLY: u64 = 70;

/// Fails naming the step when a CLI step printed a warning (tofu and terraform both print
/// `Warning:` at the start of a diagnostic, on stdout or stderr).
fn assert_no_warning(step: &str, out: &std::process::Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{step} failed:\n{text}");
    assert!(
        !text.contains("Warning:"),
        "{step} printed a warning:\n{text}"
    );
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu (or terraform) and LocalStack: run via scripts/test"]
fn complete_example_applies_plans_empty_and_destroys_without_warnings() {
    let mut acc = Acc::new("cplt");
    // The provider's calls go through the counting proxy; the test's own SDK checks do not.
    let proxy = AwsProxy::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_strata-fault-proxy")),
        &acc.endpoint,
        0,
        0.0,
        None,
    )
    .expect("start strata-fault-proxy");
    copy_tree(&repo_root().join("examples/complete"), &acc.dir).unwrap();
    // The example's own defaults (two read-only replicas, r7i.large, 50 GiB segments), as
    // issue 16 counted its 105 calls; only what LocalStack needs is set.
    let vars = serde_json::json!({
        "name": acc.name,
        "subnet_ids": acc.net.home_subnet_ids,
        "eu_subnet_id": acc.net.read_only_subnet_id,
        "aws_endpoint_url": proxy.url,
        "node_ready_timeout": "0s",
    });
    std::fs::write(
        acc.dir.join("test.auto.tfvars.json"),
        serde_json::to_string_pretty(&vars).unwrap(),
    )
    .unwrap();
    let d = acc.dir.clone();
    // get + providers lock against the mirror + init, with no warning (see init_in).
    acc.init_in(&d);
    assert_no_warning("validate", &acc.run(&d, &["validate", "-no-color"]));
    // The plan alone, counted: the share of an apply's calls that its plan walk makes.
    proxy.reset().expect("reset the proxy's counts");
    assert_no_warning("plan", &acc.run(&d, &["plan", "-input=false", "-no-color"]));
    let plan_calls = proxy.calls().expect("proxy stats");
    eprintln!("AWS CALLS per plan of examples/complete: {plan_calls}");
    // apply (init again is a no-op), counted, then a plan that must be empty.
    proxy.reset().expect("reset the proxy's counts");
    let out = acc.apply_only();
    let calls = proxy.calls().expect("proxy stats");
    assert!(out.contains("Apply complete!"), "{out}");
    assert!(!out.contains("Warning:"), "apply printed a warning:\n{out}");
    eprintln!("AWS CALLS per apply of examples/complete: {calls}");
    eprintln!(
        "AWS CALLS per apply of examples/complete, by service: {}",
        calls.by_service()
    );
    assert!(
        calls.total <= MAX_AWS_CALLS_PER_APPLY,
        "apply made {calls}; at most {MAX_AWS_CALLS_PER_APPLY} expected"
    );
    acc.assert_plan_empty_in(&d);

    let o: serde_json::Value =
        serde_json::from_str(&acc.run_ok(&d, &["output", "-json", "-no-color"])).unwrap();
    let replicas = o["replicas"]["value"].as_array().unwrap();
    assert_eq!(replicas.len(), acc.net.home_subnet_ids.len(), "{o}");
    assert_eq!(
        o["read_only_region"]["value"]["replica_node_ids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(acc.live_instances(&acc.ec2).len(), 1 + replicas.len());
    assert_eq!(acc.live_instances(&acc.ec2_eu).len(), 2);

    let out = acc.run(
        &d,
        &["destroy", "-auto-approve", "-input=false", "-no-color"],
    );
    assert_no_warning("destroy", &out);
    acc.forget();
    acc.destroy_and_check();
}
