//! Acceptance: the cluster's endpoints. Apply makes a private hosted zone with the writer, its
//! epoch TXT, the home reader and a region's reader; a failover done the way the agents do it
//! (role tags, the writer record moved, the old source stopped) leaves `plan` empty and shows
//! in the status attributes; a later change applies to the right nodes without moving the
//! writer back; a deleted writer record is drift that apply repairs; destroy removes the zone.

mod acc_support;

use acc_support::{Acc, tag};
use aws_sdk_ec2::types::Tag;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

fn config(acc: &Acc, tags: &str) -> String {
    format!(
        r#"
resource "strata_cluster" "c" {{
  name             = "{name}"
  instance_type    = "t3.medium"
  subnet_id        = "{subnet}"
  replication_mode = "semi_sync"
  {tags}
}}

resource "strata_replica" "r" {{
  cluster_id = strata_cluster.c.id
  subnet_id  = "{subnet1}"
}}

resource "strata_region" "eu" {{
  cluster_id    = strata_cluster.c.id
  region        = "eu-west-1"
  subnet_id     = "{eu}"
  replica_count = 1
  depends_on    = [strata_replica.r]
}}
"#,
        name = acc.name,
        subnet = acc.subnet(0),
        subnet1 = acc.subnet(1),
        eu = acc.eu_subnet(),
    )
}

fn upsert(name: &str, ty: RrType, value: &str) -> Change {
    Change::builder()
        .action(ChangeAction::Upsert)
        .resource_record_set(
            ResourceRecordSet::builder()
                .name(name)
                .r#type(ty)
                .ttl(5)
                .resource_records(ResourceRecord::builder().value(value).build().unwrap())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack (Route 53 on CPython 3.13): run via scripts/test"]
fn endpoints_follow_a_failover_and_plan_stays_empty() {
    let mut acc = Acc::new("dns");
    acc.write(&config(&acc, ""));
    let t0 = std::time::Instant::now();
    acc.apply();
    eprintln!(
        "endpoints: apply (cluster, replica, region) took {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // The cluster's status attributes were taken at its create, before the replica: a
    // refresh brings them up to date (and changes nothing else).
    let d = acc.dir.clone();
    acc.run_ok(
        &d,
        &["apply", "-refresh-only", "-auto-approve", "-no-color"],
    );
    let c = acc.resource("strata_cluster.c");
    let name = acc.name.clone();
    let base = format!("{name}.strata.internal");
    let (writer, reader, reader_eu) = (
        format!("writer.{base}"),
        format!("reader.{base}"),
        format!("reader-eu-west-1.{base}"),
    );
    assert_eq!(c["writer_endpoint"], format!("{writer}:3306").as_str());
    assert_eq!(c["reader_endpoint"], format!("{reader}:3306").as_str());
    assert_eq!(
        acc.attr_str("strata_region.eu", "reader_endpoint"),
        format!("{reader_eu}:3306")
    );
    let zone_id = c["dns_zone_id"].as_str().unwrap().to_string();
    let source_id = c["source_node_id"].as_str().unwrap().to_string();
    let source_ip = c["source_private_ip"].as_str().unwrap().to_string();
    assert_eq!(c["current_source_node_id"], source_id.as_str());
    assert_eq!(c["node_roles"][&source_id], "source");
    let replica_id = acc.attr_str("strata_replica.r", "id");
    let replica_ip = acc.attr_str("strata_replica.r", "private_ip");
    assert_eq!(c["node_roles"][&replica_id], "replica");
    assert!(c["last_failover"].is_null(), "{}", c["last_failover"]);
    let eu_ips = acc.attr("strata_region.eu", "replica_private_ips");
    let eu_ip = eu_ips[0].as_str().unwrap().to_string();

    // The zone: private, tagged, associated with the home VPC and the region's VPC.
    let hz = acc
        .block(acc.route53.get_hosted_zone().id(&zone_id).send())
        .unwrap();
    assert_eq!(
        hz.hosted_zone().unwrap().name(),
        format!("{base}.").as_str()
    );
    assert!(hz.hosted_zone().unwrap().config().unwrap().private_zone());
    let vpcs: Vec<String> = hz
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    assert!(
        vpcs.contains(&c["vpc_id"].as_str().unwrap().to_string()),
        "{vpcs:?}"
    );
    assert_eq!(vpcs.len(), 2, "home and eu VPCs: {vpcs:?}");
    let zone_tags = acc
        .block(
            acc.route53
                .list_tags_for_resource()
                .resource_type(aws_sdk_route53::types::TagResourceType::Hostedzone)
                .resource_id(&zone_id)
                .send(),
        )
        .unwrap();
    assert!(
        zone_tags
            .resource_tag_set()
            .unwrap()
            .tags()
            .iter()
            .any(|t| t.key() == Some("strata:cluster") && t.value() == Some(name.as_str()))
    );

    // The records: writer = source, epoch 0, home reader = the replica (not the source any
    // more), the region's reader = its replica.
    assert_eq!(acc.resolve(&zone_id, &writer), vec![source_ip.clone()]);
    assert_eq!(
        acc.records(&zone_id, &format!("_epoch.{writer}"), RrType::Txt),
        vec![format!("\"epoch=0 node={name}-source\"")]
    );
    assert_eq!(acc.resolve(&zone_id, &reader), vec![replica_ip.clone()]);
    assert_eq!(acc.resolve(&zone_id, &reader_eu), vec![eu_ip.clone()]);

    // Every node's config: the failover section, and replicas start from the writer's name.
    let (_, src_cfg) = acc.user_data(&source_id);
    let f = src_cfg.failover.expect("source has a failover section");
    assert_eq!(f.lease.key_prefix, format!("failover/{name}"));
    assert_eq!(f.dns.as_ref().unwrap().zone_id, zone_id);
    assert_eq!(f.dns.as_ref().unwrap().writer_name, writer);
    let (_, rep_cfg) = acc.user_data(&replica_id);
    assert_eq!(rep_cfg.source.as_ref().unwrap().host, writer);
    assert_eq!(rep_cfg.failover.unwrap().dns.unwrap().reader_name, reader);
    let eu_id = acc.attr("strata_region.eu", "replica_node_ids")[0]
        .as_str()
        .unwrap()
        .to_string();
    let (_, eu_cfg) = acc.user_data_in(&acc.ec2_eu, &eu_id);
    assert_eq!(eu_cfg.source.as_ref().unwrap().host, writer);
    let eu_f = eu_cfg.failover.unwrap();
    assert_eq!(eu_f.dns.unwrap().reader_name, reader_eu);
    assert_eq!(eu_f.lease.region, "us-east-1");

    // A failover, as the agents do it: the replica takes the lease (epoch 2) and tags itself,
    // the old source is fenced (tagged) and stopped, the writer record and its TXT move.
    let tag_it = |id: &str, tags: &[(&str, &str)]| {
        acc.block(
            acc.ec2
                .create_tags()
                .resources(id)
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                        .collect(),
                ))
                .send(),
        )
        .unwrap();
    };
    tag_it(
        &source_id,
        &[
            ("strata:current-role", "fenced"),
            ("strata:lease-epoch", "2"),
        ],
    );
    tag_it(
        &replica_id,
        &[
            ("strata:current-role", "source"),
            ("strata:lease-epoch", "2"),
            ("strata:node-state", "ready"),
            ("strata:last-failover-at", "2026-11-29T20:00:00Z"),
            (
                "strata:last-failover-reason",
                "source-lost: simulated by acc_endpoints",
            ),
            ("strata:last-failover-duration-ms", "4200"),
        ],
    );
    acc.block(acc.ec2.stop_instances().instance_ids(&source_id).send())
        .unwrap();
    let batch = ChangeBatch::builder()
        .changes(upsert(&writer, RrType::A, &replica_ip))
        .changes(upsert(
            &format!("_epoch.{writer}"),
            RrType::Txt,
            &format!("\"epoch=2 node={name}-replica\""),
        ))
        .build()
        .unwrap();
    acc.block(
        acc.route53
            .change_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .change_batch(batch)
            .send(),
    )
    .unwrap();

    let t1 = std::time::Instant::now();
    let (code, out, err) = acc.plan();
    assert_eq!(
        code, 0,
        "plan after a failover must propose nothing:\n{out}\n{err}"
    );
    eprintln!(
        "endpoints: plan after the failover took {:.1} s (empty)",
        t1.elapsed().as_secs_f64()
    );
    let d = acc.dir.clone();
    acc.run_ok(
        &d,
        &["apply", "-refresh-only", "-auto-approve", "-no-color"],
    );
    let c = acc.resource("strata_cluster.c");
    assert_eq!(
        c["source_node_id"],
        source_id.as_str(),
        "the launched source stays"
    );
    assert_eq!(c["current_source_node_id"], replica_id.as_str());
    assert_eq!(c["node_roles"][&source_id], "fenced");
    assert_eq!(c["node_roles"][&replica_id], "source");
    assert_eq!(c["node_health"][&source_id], "stopped");
    assert_eq!(c["node_health"][&replica_id], "ready");
    assert_eq!(c["last_failover"]["node_id"], replica_id.as_str());
    assert_eq!(c["last_failover"]["duration_ms"], "4200");
    assert_eq!(c["writer_endpoint"], format!("{writer}:3306").as_str());

    // A later change goes to the nodes it names, and nothing moves the writer back or drops
    // the agents' tags.
    acc.write(&config(&acc, "tags = { team = \"orders\" }"));
    acc.apply();
    let src = acc.instance(&acc.ec2, &source_id);
    assert_eq!(tag(src.tags(), "team"), Some("orders"));
    assert_eq!(tag(src.tags(), "strata:current-role"), Some("fenced"));
    let rep = acc.instance(&acc.ec2, &replica_id);
    assert_eq!(tag(rep.tags(), "strata:current-role"), Some("source"));
    assert_eq!(acc.resolve(&zone_id, &writer), vec![replica_ip.clone()]);

    // A deleted writer record is drift: the plan repairs it, pointing at the current source.
    let gone = ChangeBatch::builder()
        .changes(
            Change::builder()
                .action(ChangeAction::Delete)
                .resource_record_set(
                    ResourceRecordSet::builder()
                        .name(&writer)
                        .r#type(RrType::A)
                        .ttl(5)
                        .resource_records(
                            ResourceRecord::builder()
                                .value(&replica_ip)
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    acc.block(
        acc.route53
            .change_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .change_batch(gone)
            .send(),
    )
    .unwrap();
    let (code, out, _) = acc.plan();
    assert_eq!(
        code, 2,
        "a deleted writer record must show as a change:\n{out}"
    );
    assert!(out.contains("writer_endpoint"), "{out}");
    acc.apply();
    assert_eq!(acc.resolve(&zone_id, &writer), vec![replica_ip.clone()]);

    acc.destroy_and_check();
    let left = acc
        .block(
            acc.route53
                .list_hosted_zones_by_name()
                .dns_name(format!("{base}."))
                .send(),
        )
        .unwrap();
    assert!(
        !left
            .hosted_zones()
            .iter()
            .any(|z| z.name() == format!("{base}.")),
        "the zone is left after destroy: {:?}",
        left.hosted_zones()
    );
}
