//! Validated backups and restore on booted nodes (docs/backups.md): `tofu apply` of a cluster
//! with `backup_policy` launches its backup node beside the source; the backup node's agent
//! runs the first cycle by itself once it caught up (a fresh full backup, restored and checked
//! before it is tagged validated), and `strata-agent backup --now` on it runs the next (the
//! previous backup restored, caught up through replication, checked, and the new one taken
//! from it). Then bytes of that backup's stored chunk are flipped in S3 and the next
//! `backup --now` catches it: the backup is tagged failed and a fresh full one is validated in
//! its place. A restore_from naming a backup that does not exist fails at apply naming the
//! attribute, with nothing made. The first cluster is then destroyed (backup node included):
//! its validated backups stay in the backup bucket, the failed one goes, and a second cluster
//! applied with `restore_from` naming the fresh backup of the destroyed cluster comes up with
//! the source's tables at the backup's GTID (same `CHECKSUM TABLE`), then takes a write.

mod acc_support;

use acc_support::{Acc, write_config};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use strata_acceptance_tests::nodes::NodeHost;
use strata_acceptance_tests::one_line;
use strata_topology::backup::{
    Manifest, Validation, manifest_key, parse_backup_tags, parse_manifest, parse_manifest_key,
    render_location,
};

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every backup of `cluster` under `prefix` in `bucket` with its validation state, oldest first.
fn backups(acc: &Acc, bucket: &str, prefix: &str, cluster: &str) -> Vec<(String, Validation)> {
    let Ok(listed) = acc.block(
        acc.s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(format!("{prefix}/"))
            .send(),
    ) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| parse_manifest_key(prefix, o.key()?))
        .collect();
    ids.sort();
    ids.into_iter()
        .filter_map(|id| {
            let t = acc
                .block(
                    acc.s3
                        .get_object_tagging()
                        .bucket(bucket)
                        .key(manifest_key(prefix, &id))
                        .send(),
                )
                .ok()?;
            let tags = parse_backup_tags(t.tag_set().iter().map(|t| (t.key(), t.value()))).ok()?;
            assert_eq!(tags.cluster, cluster);
            Some((id, tags.validation))
        })
        .collect()
}

fn manifest(acc: &Acc, bucket: &str, prefix: &str, id: &str) -> Manifest {
    let body = acc
        .block(
            acc.s3
                .get_object()
                .bucket(bucket)
                .key(manifest_key(prefix, id))
                .send(),
        )
        .unwrap()
        .body;
    let body = acc.block(body.collect()).unwrap().into_bytes();
    parse_manifest(&body, prefix).unwrap()
}

fn object_keys(acc: &Acc, bucket: &str, prefix: &str) -> Vec<String> {
    let out = acc
        .block(
            acc.s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(format!("{prefix}/"))
                .send(),
        )
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

fn checksums(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (t, s) = l.split_once('\t')?;
            Some((t.to_string(), s.trim().parse().ok()?))
        })
        .collect()
}

#[test]
#[ignore = "needs root, systemd-nspawn, tofu and LocalStack on CPython 3.13: run via scripts/test"]
fn backup_node_validates_backups_and_a_new_cluster_restores_one() {
    let mut acc = Acc::new("bkb");
    let restored_name = format!("{}-r", acc.name);
    assert!(restored_name.len() <= 40);
    let nodes = NodeHost::start(&[&acc.name, &restored_name]).expect("start the node host");
    let cluster_hcl = format!(
        r#"
resource "strata_cluster" "main" {{
  name                = "{name}"
  instance_type       = "t3.micro"
  subnet_id           = "{s0}"
  allowed_cidr_blocks = ["10.0.0.0/8"]
  backup_policy {{
    interval_hours = 24
    keep           = 2
  }}
}}
"#,
        name = acc.name,
        s0 = acc.subnet(0),
    );
    write_config(&acc.dir, &acc.provider_hcl_waiting("15m"), &cluster_hcl);
    let t0 = Instant::now();
    acc.apply();
    eprintln!(
        "backup-boot: apply (source + backup node booted, ready) took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let cluster = acc.resource("strata_cluster.main");
    let s = |k: &str| {
        cluster[k]
            .as_str()
            .unwrap_or_else(|| panic!("strata_cluster.main.{k}: {cluster}"))
            .to_string()
    };
    let backup_node = s("backup_node_id");
    let source_ip = s("source_private_ip");
    let user = s("admin_user");
    let password = |acc: &Acc, param: &str| {
        acc.block(
            acc.ssm
                .get_parameter()
                .name(param)
                .with_decryption(true)
                .send(),
        )
        .expect("admin password parameter")
        .parameter
        .and_then(|p| p.value)
        .expect("admin password value")
    };
    let pw = password(&acc, &s("admin_parameter_name"));
    let sql = |host: &str, q: &str| nodes.sql(host, &user, &pw, q);
    // The backup node is no reader and no member: the reader record holds the source alone.
    let (_, cfg) = acc.user_data(&backup_node);
    assert_eq!(cfg.role, strata_topology::Role::Backup);
    let store = cfg.backup.as_ref().expect("backup config");
    let (bucket, prefix) = (store.bucket.clone(), store.key_prefix.clone());
    // Backups go to the account-and-region backup bucket, not the cluster's own, and state
    // says where.
    assert_eq!(s("backup_location"), render_location(&bucket, &prefix));
    assert!(bucket.ends_with("-backups"), "{bucket}");

    sql(
        &source_ip,
        "CREATE DATABASE shop; \
         CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, note VARCHAR(200)); \
         INSERT INTO shop.orders (note) SELECT CONCAT('order ', seq) FROM shop.seq_1_to_20000;",
    )
    .expect("rows on the source");

    // The first cycle runs by itself once the backup node caught up: a fresh full backup,
    // validated before it counts.
    let t1 = Instant::now();
    let first = wait_for(
        "the first scheduled backup, validated",
        Duration::from_secs(300),
        || {
            backups(&acc, &bucket, &prefix, &acc.name)
                .into_iter()
                .find(|(_, v)| v.is_validated())
                .map(|(id, _)| id)
        },
    );
    eprintln!(
        "backup-boot: first scheduled backup {first} validated {:.1} s after the rows",
        t1.elapsed().as_secs_f64()
    );

    // More writes, then an operator's cycle: restore, catch up, check, new backup from it.
    sql(
        &source_ip,
        "INSERT INTO shop.orders (note) SELECT CONCAT('later ', seq) FROM shop.seq_1_to_5000; \
         UPDATE shop.orders SET note = CONCAT(note, '!') WHERE id % 7 = 0;",
    )
    .unwrap();
    let t2 = Instant::now();
    let out = nodes
        .exec_ok(
            &backup_node,
            &["strata-agent", "backup", "--now", "--wait", "600"],
        )
        .expect("backup --now on the backup node");
    let answer: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let report = &answer["report"];
    eprintln!(
        "backup-boot: backup --now took {:.1} s: {}",
        t2.elapsed().as_secs_f64(),
        report["timings_ms"]
    );
    assert_eq!(report["kind"], "incremental-restore", "{answer}");
    assert_eq!(report["parent"], first.as_str(), "{answer}");
    let second = report["backup_id"].as_str().unwrap().to_string();
    let listed = backups(&acc, &bucket, &prefix, &acc.name);
    assert!(
        listed.contains(&(second.clone(), Validation::Validated)),
        "{listed:?}"
    );
    let m = manifest(&acc, &bucket, &prefix, &second);
    // The source is idle: its position and tables are the backup's.
    let src_gtid = sql(&source_ip, "SELECT @@GLOBAL.gtid_binlog_pos").unwrap();
    assert_eq!(src_gtid.trim(), m.gtid, "no write since the cycle");
    let src_sums = checksums(&sql(&source_ip, "CHECKSUM TABLE shop.orders EXTENDED").unwrap());
    assert_eq!(src_sums, m.table_checksums);

    // Corruption: flip bytes in the middle of one stored chunk of the newest validated backup,
    // as a bad copy would. The next cycle restores it first: the chunk's SHA-256 catches it,
    // the backup is tagged failed, and a fresh full backup is taken and validated instead.
    let victim = &m.chunks[m.chunks.len() / 2];
    let mut body = acc
        .block(
            acc.block(acc.s3.get_object().bucket(&bucket).key(&victim.key).send())
                .unwrap()
                .body
                .collect(),
        )
        .unwrap()
        .into_bytes()
        .to_vec();
    let mid = body.len() / 2;
    for b in &mut body[mid..mid + 16] {
        *b ^= 0xA5;
    }
    acc.block(
        acc.s3
            .put_object()
            .bucket(&bucket)
            .key(&victim.key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send(),
    )
    .unwrap();
    let t4 = Instant::now();
    let out = nodes
        .exec_ok(
            &backup_node,
            &["strata-agent", "backup", "--now", "--wait", "600"],
        )
        .expect("backup --now after the corruption");
    let answer: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let report = &answer["report"];
    eprintln!(
        "backup-boot: backup --now over a corrupted backup took {:.1} s: {}",
        t4.elapsed().as_secs_f64(),
        report["timings_ms"]
    );
    assert_eq!(report["kind"], "fresh-full", "{answer}");
    let failed = report["failed"].as_array().expect("failed list");
    assert_eq!(failed.len(), 1, "{answer}");
    assert_eq!(failed[0][0], second.as_str(), "{answer}");
    assert!(
        failed[0][1].as_str().unwrap_or_default().contains("sha256"),
        "{answer}"
    );
    let fresh = report["backup_id"].as_str().unwrap().to_string();
    let listed = backups(&acc, &bucket, &prefix, &acc.name);
    assert!(
        listed.contains(&(fresh.clone(), Validation::Validated)),
        "{listed:?}"
    );
    assert!(
        listed.iter().any(|(id, v)| *id == second
            && matches!(v, Validation::Failed { reason } if reason.contains("sha256"))),
        "the corrupted backup must be tagged failed: {listed:?}"
    );
    let m3 = manifest(&acc, &bucket, &prefix, &fresh);
    assert!(m3.parent.is_none(), "a fresh full backup: {m3:?}");
    assert_eq!(
        m3.table_checksums, src_sums,
        "the fresh backup holds the same data"
    );

    // A restore_from naming a backup that does not exist: refused at apply, naming the
    // attribute, before anything is made.
    let (src_name, s0) = (acc.name.clone(), acc.subnet(0).to_string());
    let restored_hcl = |backup_id: &str| {
        format!(
            r#"
resource "strata_cluster" "restored" {{
  name                = "{restored_name}"
  instance_type       = "t3.micro"
  subnet_id           = "{s0}"
  allowed_cidr_blocks = ["10.0.0.0/8"]
  restore_from {{
    cluster   = "{name}"
    backup_id = "{backup_id}"
  }}
}}
"#,
            name = src_name,
        )
    };
    write_config(
        &acc.dir,
        &acc.provider_hcl_waiting("15m"),
        &format!("{cluster_hcl}{}", restored_hcl("20200101T000000000Z")),
    );
    let d = acc.dir.clone();
    let bad = acc.run(&d, &["apply", "-auto-approve", "-input=false", "-no-color"]);
    let text = one_line(&format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    ));
    assert!(!bad.status.success(), "apply of a missing backup passed");
    assert!(
        text.contains("restore_from") && text.contains("not found"),
        "{text}"
    );
    assert!(
        acc.block(acc_support::live_instances(&acc.ec2, &restored_name))
            .unwrap()
            .is_empty(),
        "a refused restore left instances"
    );

    // The first cluster goes (backup node included); its validated backups stay, the failed
    // one goes, and nothing else of the cluster is left.
    write_config(&acc.dir, &acc.provider_hcl_waiting("15m"), "");
    let t5 = Instant::now();
    acc.apply();
    eprintln!(
        "backup-boot: destroy of the first cluster took {:.1} s",
        t5.elapsed().as_secs_f64()
    );
    assert!(
        acc.block(acc_support::live_instances(&acc.ec2, &acc.name))
            .unwrap()
            .is_empty(),
        "instances of the destroyed cluster left"
    );
    let kept = backups(&acc, &bucket, &prefix, &acc.name);
    assert!(
        kept.iter().all(|(_, v)| v.is_validated())
            && kept.iter().any(|(id, _)| *id == fresh)
            && !kept.iter().any(|(id, _)| *id == second),
        "destroy must keep the validated backups only: {kept:?}"
    );
    assert!(
        !object_keys(&acc, &bucket, &prefix)
            .iter()
            .any(|k| k.contains(&second)),
        "the failed backup's chunks must go with the cluster"
    );

    // The fresh backup of the destroyed cluster: the new cluster comes up with the data, then
    // takes writes.
    write_config(
        &acc.dir,
        &acc.provider_hcl_waiting("15m"),
        &restored_hcl(&fresh),
    );
    let t3 = Instant::now();
    acc.apply();
    eprintln!(
        "backup-boot: apply of the restored cluster (restore + ready) took {:.1} s",
        t3.elapsed().as_secs_f64()
    );
    let r = acc.resource("strata_cluster.restored");
    let r_ip = r["source_private_ip"].as_str().unwrap().to_string();
    let r_pw = password(&acc, r["admin_parameter_name"].as_str().unwrap());
    let rsql = |q: &str| nodes.sql(&r_ip, &user, &r_pw, q);
    let r_sums = checksums(&rsql("CHECKSUM TABLE shop.orders EXTENDED").unwrap());
    assert_eq!(
        r_sums, src_sums,
        "the restored tables differ from the source's"
    );
    rsql("INSERT INTO shop.orders (note) VALUES ('after the restore')")
        .expect("the restored cluster takes writes");
    assert_eq!(
        rsql("SELECT COUNT(*) FROM shop.orders").unwrap().trim(),
        "25001"
    );

    acc.destroy_and_check();
    // Tidy: the kept backups of the destroyed cluster are this test's.
    for k in object_keys(&acc, &bucket, &prefix) {
        acc.block(acc.s3.delete_object().bucket(&bucket).key(k).send())
            .unwrap();
    }
    for name in [acc.name.clone(), restored_name] {
        assert!(
            acc.block(acc_support::live_instances(&acc.ec2, &name))
                .unwrap()
                .is_empty(),
            "instances of {name} left"
        );
    }
    wait_for(
        "every node removed after destroy",
        Duration::from_secs(120),
        || nodes.status().ok()?.is_empty().then_some(()),
    );
}
