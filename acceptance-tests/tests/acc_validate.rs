//! Acceptance: bad input is refused before anything is created, with a message naming the
//! attribute at fault.

mod acc_support;

use acc_support::Acc;
use strata_acceptance_tests::one_line;

/// `tofu validate`, and when that passes, `tofu plan`: one of them must fail naming `attr`.
fn refused(acc: &mut Acc, body: &str, attr: &str) {
    acc.write(body);
    let d = acc.dir.clone();
    acc.init_in(&d);
    let v = acc.run(&d, &["validate", "-no-color"]);
    let (ok, text) = if v.status.success() {
        let p = acc.run(&d, &["plan", "-input=false", "-no-color"]);
        (
            p.status.success(),
            String::from_utf8_lossy(&p.stderr).into_owned() + &String::from_utf8_lossy(&p.stdout),
        )
    } else {
        (
            false,
            String::from_utf8_lossy(&v.stderr).into_owned() + &String::from_utf8_lossy(&v.stdout),
        )
    };
    assert!(!ok, "bad {attr} was accepted:\n{text}");
    assert!(
        text.contains(attr),
        "the error does not name {attr}:\n{text}"
    );
}

fn cluster(acc: &Acc, extra: &str) -> String {
    format!(
        "resource \"strata_cluster\" \"c\" {{\n  name = \"{}\"\n  instance_type = \"t3.medium\"\n  subnet_id = \"{}\"\n  {extra}\n}}\n",
        acc.name,
        acc.subnet(0)
    )
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn bad_replication_mode_is_refused() {
    let mut acc = Acc::new("bad1");
    let body = cluster(&acc, "replication_mode = \"sync\"");
    refused(&mut acc, &body, "replication_mode");
    acc.destroy_and_check();
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn mariadb_ack_count_two_is_refused() {
    let mut acc = Acc::new("bad2");
    let body = cluster(
        &acc,
        "engine = \"mariadb\"\n  replication_mode = \"semi_sync\"\n  semi_sync_wait_for_replica_count = 2",
    );
    refused(&mut acc, &body, "semi_sync_wait_for_replica_count");
    acc.destroy_and_check();
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn bad_node_ready_timeout_is_refused_at_validate() {
    let mut acc = Acc::new("bad3");
    let body = cluster(&acc, "");
    acc_support::write_config(&acc.dir, &acc.provider_hcl_waiting("soon"), &body);
    let d = acc.dir.clone();
    acc.init_in(&d);
    let v = acc.run(&d, &["validate", "-no-color"]);
    let text =
        String::from_utf8_lossy(&v.stderr).into_owned() + &String::from_utf8_lossy(&v.stdout);
    assert!(
        !v.status.success(),
        "node_ready_timeout = \"soon\" passed validate:\n{text}"
    );
    assert!(text.contains("node_ready_timeout"), "{text}");
    assert!(one_line(&text).contains("not a duration"), "{text}");
    acc.destroy_and_check();
}

/// Only x86_64 agent builds ship: a Graviton type without `ami_id` fails at plan time, naming
/// `instance_type` and what to do; with `ami_id` (agent baked in) it plans.
#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn graviton_without_an_agent_build_is_refused_at_plan() {
    let mut acc = Acc::new("arm");
    let body = format!(
        "resource \"strata_cluster\" \"c\" {{\n  name = \"{}\"\n  instance_type = \"r7g.large\"\n  subnet_id = \"{}\"\n}}\n",
        acc.name,
        acc.subnet(0)
    );
    acc.write(&body);
    let d = acc.dir.clone();
    acc.init_in(&d);
    let (code, out, err) = acc.plan_in(&d);
    let text = format!("{out}{err}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        code, 1,
        "a Graviton cluster without an agent build planned:\n{text}"
    );
    assert!(text.contains("instance_type"), "{text}");
    assert!(text.contains("aarch64"), "{text}");
    assert!(
        text.contains("x86_64") && text.contains("ami_id"),
        "no way out named: {text}"
    );

    acc.write(&body.replace(
        "instance_type = \"r7g.large\"",
        "instance_type = \"r7g.large\"\n  ami_id = \"ami-03cf127a\"",
    ));
    let (code, out, err) = acc.plan_in(&d);
    assert_eq!(code, 2, "with a baked ami_id it should plan:\n{out}\n{err}");
    acc.destroy_and_check();
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn bad_backup_policy_is_refused_naming_the_attribute() {
    let mut acc = Acc::new("badbk");
    let body = cluster(
        &acc,
        "backup_policy {\n    interval_hours = 24\n    keep = 0\n  }",
    );
    refused(&mut acc, &body, "keep");
    let body = cluster(
        &acc,
        "backup_policy {\n    interval_hours = 24\n    keep = 3\n    window_start = \"25:00\"\n  }",
    );
    refused(&mut acc, &body, "backup_policy.window_start");
    acc.destroy_and_check();
}
