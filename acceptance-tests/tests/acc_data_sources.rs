//! Acceptance: `data "strata_cluster"` and `data "strata_nodes"` read a cluster that another
//! state (another working directory) applied, and show what that state's resources show; a
//! name no cluster has is an error on `name`. Runs under tofu and, in the CLI matrix, terraform.

mod acc_support;

use acc_support::{Acc, write_config};
use serde_json::Value;

fn producer(acc: &Acc) -> String {
    format!(
        r#"
resource "strata_cluster" "c" {{
  name                = "{name}"
  instance_type       = "t3.medium"
  subnet_id           = "{a}"
  allowed_cidr_blocks = ["10.0.0.0/8"]
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

fn consumer(name: &str) -> String {
    format!(
        r#"
data "strata_cluster" "c" {{
  name = "{name}"
}}
data "strata_nodes" "n" {{
  cluster_id = data.strata_cluster.c.id
}}
output "writer_endpoint" {{
  value = data.strata_cluster.c.writer_endpoint
}}
"#
    )
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn data_sources_read_a_cluster_applied_in_another_state() {
    let mut acc = Acc::new("ds");
    acc.write(&producer(&acc));
    acc.apply();
    let cluster = acc.resource("strata_cluster.c");
    let replica = acc.resource("strata_replica.r");
    let region = acc.resource("strata_region.eu");
    let segment = acc.resource("strata_storage_segment.data");

    // Another working directory with its own (empty) state, as an app stack would be.
    let app = acc.scratch.path().join("app");
    write_config(&app, &acc.provider_hcl(), &consumer(&acc.name));
    acc.init_in(&app);
    let out = acc.run_ok(
        &app,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    assert!(out.contains("0 added, 0 changed, 0 destroyed"), "{out}");
    acc.assert_plan_empty_in(&app);
    // Data sources are in the state `show -json` prints, sensitive values included.
    let state = acc.state_in(&app);
    let ds = &acc_support::resource_in(&state, "data.strata_cluster.c");
    let nodes = &acc_support::resource_in(&state, "data.strata_nodes.n");
    let out = acc.run_ok(&app, &["output", "-raw", "-no-color", "writer_endpoint"]);
    assert_eq!(out, cluster["writer_endpoint"].as_str().unwrap());

    // Everything the resource shows, the data source shows the same (tags and timeouts are
    // configuration, not the cluster's).
    for k in [
        "id",
        "name",
        "engine",
        "engine_version",
        "instance_type",
        "subnet_id",
        "source_node_id",
        "source_private_ip",
        "writer_endpoint",
        "port",
        "security_group_id",
        "vpc_id",
        "availability_zone",
        "replication_mode",
        "replication_parameter_name",
        "admin_user",
        "admin_parameter_name",
        "instance_profile_name",
        "allowed_cidr_blocks",
    ] {
        assert_eq!(
            ds[k], cluster[k],
            "data.strata_cluster.{k} differs from the resource"
        );
    }
    assert!(
        ds["writer_endpoint"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{ds}"
    );
    assert_eq!(ds["replica_node_ids"], serde_json::json!([replica["id"]]));
    let az = replica["availability_zone"].as_str().unwrap();
    assert_eq!(ds["replicas_per_az"], serde_json::json!({ az: 1 }));
    assert_eq!(ds["regions"], serde_json::json!(["eu-west-1"]));
    assert_eq!(
        ds["region_replica_counts"],
        serde_json::json!({"eu-west-1": 2})
    );

    // strata_nodes: source, the replica, the two eu-west-1 replicas, with roles and segments.
    let list = nodes["nodes"].as_array().unwrap();
    let ids: Vec<&Value> = list.iter().map(|n| &n["node_id"]).collect();
    let mut want = vec![&cluster["source_node_id"], &replica["id"]];
    want.extend(region["replica_node_ids"].as_array().unwrap());
    assert_eq!(ids, want, "{nodes}");
    assert_eq!(nodes["node_ids"].as_array().unwrap().len(), 4);
    let roles: Vec<&str> = list.iter().map(|n| n["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["source", "replica", "region-replica", "region-replica"]
    );
    assert_eq!(list[0]["private_ip"], cluster["source_private_ip"]);
    assert_eq!(list[0]["availability_zone"], cluster["availability_zone"]);
    assert_eq!(list[0]["region"], "us-east-1");
    assert_eq!(list[0]["segment_ids"], serde_json::json!([segment["id"]]));
    assert_eq!(
        list[0]["segment_sizes_gib"],
        serde_json::json!([segment["current_size_gib"]])
    );
    assert_eq!(list[1]["private_ip"], replica["private_ip"]);
    assert_eq!(list[1]["segment_ids"], serde_json::json!([]));
    assert_eq!(list[2]["region"], "eu-west-1");
    assert_eq!(
        list[2]["private_ip"],
        region["replica_private_ips"].as_array().unwrap()[0]
    );
    assert_eq!(nodes["total_storage_gib"], segment["current_size_gib"]);

    // A name no cluster has: an error that names the argument and the cluster.
    let missing = acc.scratch.path().join("missing");
    write_config(
        &missing,
        &acc.provider_hcl(),
        "data \"strata_cluster\" \"x\" {\n  name = \"no-such-cluster\"\n}\n",
    );
    acc.init_in(&missing);
    let (code, out, err) = acc.plan_in(&missing);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("No Strata cluster named \"no-such-cluster\"") && err.contains("name"),
        "{err}"
    );

    // The consumer owns nothing: destroying it leaves the cluster, then the producer goes.
    acc.destroy_in(&app);
    assert_eq!(
        acc.live_instances(&acc.ec2).len(),
        2,
        "the consumer's destroy touched the cluster"
    );
    acc.destroy_and_check();
}
