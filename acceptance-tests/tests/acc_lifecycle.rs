//! Acceptance: in-place updates (segment grow, instance type, region replica count) keep the
//! AWS objects' ids, and an object deleted outside Terraform is planned again and recreated.

mod acc_support;

use acc_support::Acc;
use strata_topology::backup::{
    BackupTags, Chunk, MANIFEST_VERSION, Manifest, Validation, chunk_key, default_key_prefix,
    manifest_key, parse_backup_id, parse_location, render_backup_tags, render_manifest,
};

fn cluster_hcl(acc: &Acc, instance_type: &str) -> String {
    format!(
        r#"
resource "strata_cluster" "c" {{
  name          = "{name}"
  instance_type = "{instance_type}"
  subnet_id     = "{subnet}"
}}
"#,
        name = acc.name,
        subnet = acc.subnet(0),
    )
}

fn segment_hcl(size: u32) -> String {
    format!(
        "resource \"strata_storage_segment\" \"data\" {{\n  node_id  = strata_cluster.c.source_node_id\n  size_gib = {size}\n}}\n"
    )
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn segment_grows_and_instance_type_changes_in_place() {
    let mut acc = Acc::new("grow");
    acc.write(&format!(
        "{}{}",
        cluster_hcl(&acc, "t3.medium"),
        segment_hcl(20)
    ));
    acc.apply();
    let vol_id = acc.attr_str("strata_storage_segment.data", "id");
    let source_id = acc.attr_str("strata_cluster.c", "source_node_id");
    assert_eq!(acc.volume(&vol_id).size(), Some(20));

    acc.write(&format!(
        "{}{}",
        cluster_hcl(&acc, "t3.medium"),
        segment_hcl(30)
    ));
    let (code, out, err) = acc.plan();
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("strata_storage_segment.data will be updated in-place"),
        "growing must be in place:\n{out}"
    );
    acc.apply();
    assert_eq!(acc.attr_str("strata_storage_segment.data", "id"), vol_id);
    assert_eq!(acc.volume(&vol_id).size(), Some(30), "volume not grown");
    assert_eq!(
        acc.attr("strata_storage_segment.data", "current_size_gib"),
        30
    );

    acc.write(&format!(
        "{}{}",
        cluster_hcl(&acc, "t3.large"),
        segment_hcl(30)
    ));
    let (code, out, err) = acc.plan();
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("strata_cluster.c will be updated in-place"),
        "instance type must change in place:\n{out}"
    );
    acc.apply();
    assert_eq!(
        acc.attr_str("strata_cluster.c", "source_node_id"),
        source_id
    );
    let inst = acc.instance(&acc.ec2, &source_id);
    assert_eq!(
        inst.instance_type().map(|t| t.as_str()),
        Some("t3.large"),
        "instance type not changed"
    );
    assert_eq!(
        inst.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("running"),
        "instance not started again after the type change"
    );
    // The segment is still attached to the same instance after stop/modify/start.
    let vol = acc.volume(&vol_id);
    assert_eq!(
        vol.attachments().first().and_then(|a| a.instance_id()),
        Some(source_id.as_str())
    );

    acc.destroy_and_check();
}

fn region_hcl(acc: &Acc, count: u32) -> String {
    format!(
        r#"
resource "strata_region" "eu" {{
  cluster_id    = strata_cluster.c.id
  region        = "eu-west-1"
  subnet_id     = "{}"
  replica_count = {count}
}}
"#,
        acc.eu_subnet()
    )
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn region_replica_count_up_then_down() {
    let mut acc = Acc::new("count");
    let mut sg = None;
    let mut kept: Vec<String> = Vec::new();
    for count in [2u32, 3, 1] {
        acc.write(&format!(
            "{}{}",
            cluster_hcl(&acc, "t3.medium"),
            region_hcl(&acc, count)
        ));
        if sg.is_some() {
            let (code, out, err) = acc.plan();
            assert_eq!(code, 2, "{out}{err}");
            assert!(
                out.contains("strata_region.eu will be updated in-place"),
                "replica_count must change in place:\n{out}"
            );
        }
        acc.apply();
        let r = acc.resource("strata_region.eu");
        assert_eq!(
            r["id"].as_str(),
            Some(format!("{}/eu-west-1", acc.name).as_str())
        );
        let group = r["security_group_id"].as_str().unwrap().to_string();
        if let Some(prev) = &sg {
            assert_eq!(&group, prev, "region security group replaced");
        }
        sg = Some(group);
        let ids: Vec<String> = r["replica_node_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), count as usize, "state replica_node_ids");
        let live = acc.live_instances(&acc.ec2_eu);
        assert_eq!(
            live.len(),
            count as usize,
            "eu-west-1 instances at count {count}"
        );
        // Replicas that stay are kept, not replaced.
        let still: Vec<&String> = kept.iter().filter(|k| ids.contains(k)).collect();
        assert_eq!(
            still.len(),
            kept.len().min(count as usize),
            "existing replicas were replaced: before {kept:?}, now {ids:?}"
        );
        kept = ids;
    }
    acc.destroy_and_check();
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn replica_deleted_out_of_band_is_planned_again() {
    let mut acc = Acc::new("oob");
    acc.write(&format!(
        "{}\nresource \"strata_replica\" \"r\" {{\n  cluster_id = strata_cluster.c.id\n  subnet_id  = \"{}\"\n}}\n",
        cluster_hcl(&acc, "t3.medium"),
        acc.subnet(1)
    ));
    acc.apply();
    let old = acc.attr_str("strata_replica.r", "id");
    acc.block(acc.ec2.terminate_instances().instance_ids(&old).send())
        .unwrap();

    let (code, out, err) = acc.plan();
    assert_eq!(code, 2, "plan after out-of-band delete:\n{out}{err}");
    assert!(
        out.contains("strata_replica.r will be created"),
        "the terminated replica must be planned for creation:\n{out}"
    );
    assert!(
        out.contains("Plan: 1 to add, 0 to change, 0 to destroy"),
        "only the replica should change:\n{out}"
    );
    acc.apply();
    let new = acc.attr_str("strata_replica.r", "id");
    assert_ne!(new, old);
    let live = acc.live_instances(&acc.ec2);
    assert!(live.iter().any(|i| i.instance_id() == Some(new.as_str())));
    assert_eq!(live.len(), 2, "source + the new replica");

    acc.destroy_and_check();
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn segment_moves_to_another_node_in_the_same_az_in_place() {
    let mut acc = Acc::new("move");
    let head = format!(
        "{}\nresource \"strata_replica\" \"r\" {{\n  cluster_id = strata_cluster.c.id\n  subnet_id  = \"{}\"\n}}\n",
        cluster_hcl(&acc, "t3.medium"),
        acc.subnet(0),
    );
    let body = |node: &str| {
        format!(
            "{head}resource \"strata_storage_segment\" \"data\" {{\n  node_id  = {node}\n  size_gib = 20\n}}\n"
        )
    };
    acc.write(&body("strata_cluster.c.source_node_id"));
    acc.apply();
    let vol_id = acc.attr_str("strata_storage_segment.data", "id");
    let replica_id = acc.attr_str("strata_replica.r", "node_id");

    acc.write(&body("strata_replica.r.node_id"));
    let (code, out, err) = acc.plan();
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("strata_storage_segment.data will be updated in-place"),
        "a move within the AZ must be in place:\n{out}"
    );
    acc.apply();
    assert_eq!(
        acc.attr_str("strata_storage_segment.data", "id"),
        vol_id,
        "moved, not recreated"
    );
    let vol = acc.volume(&vol_id);
    let attached: Vec<_> = vol
        .attachments()
        .iter()
        .filter_map(|a| a.instance_id())
        .collect();
    assert_eq!(attached, vec![replica_id.as_str()]);
    acc.destroy_and_check();
}

/// State written by the first provider release (cluster schema version 0) carried the
/// replication credential as a sensitive attribute. The real tofu hands it to
/// UpgradeResourceState, which drops it: the plan stays empty and the rewritten state has no
/// credential.
#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn cluster_state_from_schema_v0_upgrades_without_a_diff() {
    let mut acc = Acc::new("upg");
    acc.write(&cluster_hcl(&acc, "t3.medium"));
    acc.apply();

    let path = acc.dir.join("terraform.tfstate");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let inst = state
        .pointer_mut("/resources/0/instances/0")
        .expect("one cluster instance in state");
    assert_eq!(inst["schema_version"], 1);
    inst["schema_version"] = 0.into();
    inst["attributes"]["replication_password"] = "written-by-schema-v0".into();
    inst["sensitive_attributes"] = serde_json::json!([[
        {"type": "get_attr", "value": "replication_password"}
    ]]);
    state["serial"] = (state["serial"].as_u64().unwrap() + 1).into();
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();

    let (code, out, err) = acc.plan();
    assert_eq!(code, 0, "v0 state plans a change:\n{out}{err}");
    let d = acc.dir.clone();
    acc.run_ok(
        &d,
        &[
            "apply",
            "-refresh-only",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ],
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("written-by-schema-v0"),
        "the old credential survived the upgrade:\n{text}"
    );
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(state["resources"][0]["instances"][0]["schema_version"], 1);
    acc.destroy_and_check();
}

/// A stored backup as the agent leaves one: a chunk and a manifest tagged with its state (the
/// body is not read by destroy, only the manifest's tags).
fn plant_backup(acc: &Acc, bucket: &str, prefix: &str, id: &str, validation: Validation) {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{Tag, Tagging};
    let tags = render_backup_tags(&BackupTags {
        cluster: acc.name.clone(),
        gtid: "0-1-5".into(),
        time_ms: parse_backup_id(id).unwrap(),
        validation,
    });
    let chunk = b"planted".to_vec();
    // A well-formed manifest, so an apply's restore_from check can read it.
    let manifest = render_manifest(&Manifest {
        version: MANIFEST_VERSION,
        cluster: acc.name.clone(),
        backup_id: id.to_string(),
        engine: strata_topology::Engine::Mariadb,
        engine_version: "10.11".into(),
        gtid: "0-1-5".into(),
        time: "2026-11-30T01:00:00Z".into(),
        method: "mariadb-backup/mbstream".into(),
        taken_from: "planted".into(),
        parent: None,
        chunks: vec![Chunk {
            key: chunk_key(prefix, id, 0),
            size: chunk.len() as u64,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&chunk)),
        }],
        table_checksums: Default::default(),
    });
    for (key, body) in [
        (chunk_key(prefix, id, 0), chunk),
        (manifest_key(prefix, id), manifest.into_bytes()),
    ] {
        acc.block(
            acc.s3
                .put_object()
                .bucket(bucket)
                .key(&key)
                .body(ByteStream::from(body))
                .send(),
        )
        .unwrap();
    }
    let tagging = Tagging::builder()
        .set_tag_set(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                .collect(),
        ))
        .build()
        .unwrap();
    acc.block(
        acc.s3
            .put_object_tagging()
            .bucket(bucket)
            .key(manifest_key(prefix, id))
            .tagging(tagging)
            .send(),
    )
    .unwrap();
}

fn keys_under(acc: &Acc, bucket: &str, prefix: &str) -> Vec<String> {
    let out = acc
        .block(
            acc.s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(format!("{prefix}/"))
                .send(),
        )
        .unwrap();
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

fn backup_cluster_hcl(acc: &Acc, delete_backups: Option<bool>, restore: Option<&str>) -> String {
    let opt_out = delete_backups
        .map(|b| format!("    delete_backups_on_destroy = {b}\n"))
        .unwrap_or_default();
    let restore = restore
        .map(|id| {
            format!(
                "  restore_from {{\n    cluster   = \"{}\"\n    backup_id = \"{id}\"\n  }}\n",
                acc.name
            )
        })
        .unwrap_or_default();
    format!(
        r#"
resource "strata_cluster" "c" {{
  name          = "{name}"
  instance_type = "t3.micro"
  subnet_id     = "{subnet}"
  backup_policy {{
    interval_hours = 24
    keep           = 2
{opt_out}  }}
{restore}}}
"#,
        name = acc.name,
        subnet = acc.subnet(0),
    )
}

/// docs/backups.md "Where backups live": destroy keeps a cluster's validated backups (and
/// deletes its pending and failed ones) in the account-and-region backup bucket; a new cluster
/// of the same name, made from one of them (`restore_from` naming its own, destroyed, name),
/// writes under a new generation and its destroy leaves the old backups alone;
/// `delete_backups_on_destroy`, changed in place, makes destroy delete them.
#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn destroy_keeps_validated_backups_unless_told_and_a_new_cluster_of_the_name_leaves_them_alone() {
    let mut acc = Acc::new("bkeep");
    acc.write(&backup_cluster_hcl(&acc, None, None));
    acc.apply();
    let loc1 = acc.attr_str("strata_cluster.c", "backup_location");
    let (bucket, prefix1) = parse_location(&loc1).expect("backup_location");
    assert!(bucket.ends_with("-backups"), "{loc1}");
    assert!(
        prefix1.starts_with(&format!("{}/", default_key_prefix(&acc.name))),
        "{loc1}"
    );
    // The backup node's config says the same place.
    let backup_node = acc.attr_str("strata_cluster.c", "backup_node_id");
    let cfg = acc.user_data(&backup_node).1.backup.expect("backup config");
    assert_eq!(
        (cfg.bucket.as_str(), cfg.key_prefix.as_str()),
        (bucket.as_str(), prefix1.as_str())
    );
    let (v1, p1) = ("20261130T010000000Z", "20261130T020000000Z");
    plant_backup(&acc, &bucket, &prefix1, v1, Validation::Validated);
    plant_backup(&acc, &bucket, &prefix1, p1, Validation::Pending);

    // Destroy (the default): the validated backup stays, the pending one goes.
    acc.write("");
    acc.apply();
    assert_eq!(
        keys_under(&acc, &bucket, &prefix1),
        vec![chunk_key(&prefix1, v1, 0), manifest_key(&prefix1, v1)],
        "destroy must keep the validated backup, and only it"
    );

    // A new cluster of the same name, from the destroyed one's kept backup: a new generation,
    // its own backups only; its source's config names the old generation's backup.
    acc.write(&backup_cluster_hcl(&acc, None, Some(v1)));
    acc.apply();
    let source = acc.attr_str("strata_cluster.c", "source_node_id");
    let restore = acc
        .user_data(&source)
        .1
        .restore
        .expect("restore in the source's config");
    assert_eq!(
        (
            restore.bucket.as_str(),
            restore.key_prefix.as_str(),
            restore.backup_id.as_str()
        ),
        (bucket.as_str(), prefix1.as_str(), v1)
    );
    let loc2 = acc.attr_str("strata_cluster.c", "backup_location");
    let (bucket2, prefix2) = parse_location(&loc2).unwrap();
    assert_eq!(bucket2, bucket);
    assert_ne!(
        prefix2, prefix1,
        "a new cluster of the name must not reuse the old backups' place"
    );
    let v2 = "20261130T030000000Z";
    plant_backup(&acc, &bucket, &prefix2, v2, Validation::Validated);
    // The opt-out changes in place (apply asserts the plan is empty afterwards).
    acc.write(&backup_cluster_hcl(&acc, Some(true), Some(v1)));
    let (code, out, err) = acc.plan();
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("updated in-place"), "{out}");
    acc.apply();
    acc.destroy_and_check();
    assert!(
        keys_under(&acc, &bucket, &prefix2).is_empty(),
        "delete_backups_on_destroy = true must delete the cluster's backups"
    );
    assert_eq!(
        keys_under(&acc, &bucket, &prefix1).len(),
        2,
        "the new cluster's destroy must leave the old cluster's backups alone"
    );
    // Tidy: the kept backup is this test's.
    for k in keys_under(&acc, &bucket, &prefix1) {
        acc.block(acc.s3.delete_object().bucket(&bucket).key(k).send())
            .unwrap();
    }
}
