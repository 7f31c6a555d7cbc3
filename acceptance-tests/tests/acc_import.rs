//! Acceptance: every resource type imports by its id into a fresh state, and the plan after
//! the imports is empty.

mod acc_support;

use acc_support::{Acc, write_config};

fn config(acc: &Acc) -> String {
    format!(
        r#"
resource "strata_cluster" "c" {{
  name             = "{name}"
  instance_type    = "t3.medium"
  subnet_id        = "{a}"
  replication_mode = "semi_sync"
}}
resource "strata_storage_segment" "data" {{
  node_id  = strata_cluster.c.source_node_id
  size_gib = 20
}}
resource "strata_replica" "r" {{
  cluster_id = strata_cluster.c.id
  subnet_id  = "{b}"
}}
resource "strata_region" "eu" {{
  cluster_id    = strata_cluster.c.id
  region        = "eu-west-1"
  subnet_id     = "{eu}"
  replica_count = 2
}}
"#,
        name = acc.name,
        a = acc.subnet(0),
        b = acc.subnet(1),
        eu = acc.eu_subnet(),
    )
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn import_each_resource_type() {
    let mut acc = Acc::new("imp");
    let body = config(&acc);
    acc.write(&body);
    acc.apply();
    let volume = acc.attr_str("strata_storage_segment.data", "id");
    let replica = acc.attr_str("strata_replica.r", "id");
    let region = acc.attr_str("strata_region.eu", "id");
    assert_eq!(region, format!("{}/eu-west-1", acc.name));
    let before = acc.state_in(&acc.dir);

    // A second folder, same configuration, no state: it takes the objects over.
    let fresh = acc.scratch.path().join("imported");
    write_config(&fresh, &acc.provider_hcl(), &body);
    acc.init_in(&fresh);
    for (addr, id) in [
        ("strata_cluster.c", acc.name.clone()),
        ("strata_storage_segment.data", volume.clone()),
        ("strata_replica.r", replica.clone()),
        ("strata_region.eu", region.clone()),
    ] {
        let out = acc.run_ok(&fresh, &["import", "-input=false", "-no-color", addr, &id]);
        assert!(out.contains("Import successful"), "{addr}: {out}");
    }
    acc.assert_plan_empty_in(&fresh);
    let after = acc.state_in(&fresh);
    for (addr, attrs) in [
        (
            "strata_cluster.c",
            &[
                "id",
                "source_node_id",
                "security_group_id",
                "replication_parameter_name",
                "replication_mode",
            ][..],
        ),
        (
            "strata_storage_segment.data",
            &[
                "id",
                "node_id",
                "size_gib",
                "current_size_gib",
                "volume_type",
            ][..],
        ),
        (
            "strata_replica.r",
            &["id", "cluster_id", "subnet_id", "private_ip"][..],
        ),
        (
            "strata_region.eu",
            &[
                "id",
                "replica_count",
                "security_group_id",
                "replica_node_ids",
            ][..],
        ),
    ] {
        let a = acc_support::resource_in(&before, addr);
        let b = acc_support::resource_in(&after, addr);
        for k in attrs {
            assert_eq!(a[k], b[k], "{addr}.{k} differs after import");
        }
    }

    // The imported state owns everything now: destroy from there, then sweep.
    acc.destroy_in(&fresh);
    acc.forget();
    acc.destroy_and_check();
}
