//! Acceptance: bad input is refused before anything is created, with a message naming the
//! attribute at fault.

mod acc_support;

use acc_support::Acc;

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
