//! Acceptance: what `strata_cluster`, `strata_storage_segment`, `strata_replica` and
//! `strata_region` create in LocalStack, checked through the AWS SDK, and that destroy leaves
//! nothing tagged with the cluster.

mod acc_support;

use acc_support::{Acc, tag};
use aws_sdk_ec2::types::{HttpTokensState, VolumeAttachmentState, VolumeType};
use sha2::{Digest, Sha256};
use strata_topology::Role;

fn cluster_hcl(acc: &Acc, extra: &str) -> String {
    format!(
        r#"
resource "strata_cluster" "c" {{
  name                = "{name}"
  instance_type       = "t3.medium"
  subnet_id           = "{subnet}"
  allowed_cidr_blocks = ["10.50.0.0/16"]
  replication_mode    = "semi_sync"
  {extra}
}}
"#,
        name = acc.name,
        subnet = acc.subnet(0),
    )
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn cluster_with_one_segment() {
    let mut acc = Acc::new("seg");
    let body = format!(
        "{}\nresource \"strata_storage_segment\" \"data\" {{\n  node_id  = strata_cluster.c.source_node_id\n  size_gib = 20\n}}\n",
        cluster_hcl(&acc, "")
    );
    acc.write(&body);
    acc.apply();

    let c = acc.resource("strata_cluster.c");
    let source_id = c["source_node_id"].as_str().unwrap().to_string();
    let sg_id = c["security_group_id"].as_str().unwrap().to_string();
    let param = c["replication_parameter_name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c["id"], acc.name.as_str());
    assert_eq!(param, format!("/strata/{}/replication", acc.name));
    assert_eq!(
        c["writer_endpoint"].as_str().unwrap(),
        format!("writer.{}.strata.internal:3306", acc.name)
    );

    // The source instance: tags, IMDSv2, encrypted root.
    let inst = acc.instance(&acc.ec2, &source_id);
    assert_eq!(tag(inst.tags(), "strata:cluster"), Some(acc.name.as_str()));
    assert_eq!(tag(inst.tags(), "strata:role"), Some("source"));
    assert!(
        tag(inst.tags(), "strata:resource").is_some_and(|r| r.contains("strata_cluster")),
        "strata:resource tag: {:?}",
        inst.tags()
    );
    assert_eq!(
        inst.metadata_options().and_then(|m| m.http_tokens()),
        Some(&HttpTokensState::Required),
        "IMDSv2 must be required: {:?}",
        inst.metadata_options()
    );
    assert_eq!(inst.subnet_id(), Some(acc.subnet(0)));
    assert!(
        inst.security_groups()
            .iter()
            .any(|g| g.group_id() == Some(sg_id.as_str()))
    );
    let root_dev = inst.root_device_name().unwrap_or("/dev/sda1").to_string();
    let root_vol = inst
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root_dev.as_str()))
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_id())
        .unwrap_or_else(|| {
            panic!(
                "no root volume at {root_dev}: {:?}",
                inst.block_device_mappings()
            )
        })
        .to_string();
    assert_eq!(
        acc.volume(&root_vol).encrypted(),
        Some(true),
        "root volume {root_vol} not encrypted"
    );

    // Security group: the engine port only, from itself and the allowed CIDR.
    let sg = acc.security_group(&acc.ec2, &sg_id);
    assert_eq!(tag(sg.tags(), "strata:cluster"), Some(acc.name.as_str()));
    let mut from_self = false;
    let mut cidrs = Vec::new();
    for p in sg.ip_permissions() {
        assert_eq!(p.ip_protocol(), Some("tcp"), "rule {p:?}");
        assert_eq!(
            (p.from_port(), p.to_port()),
            (Some(3306), Some(3306)),
            "rule {p:?}"
        );
        for g in p.user_id_group_pairs() {
            assert_eq!(g.group_id(), Some(sg_id.as_str()), "foreign group in {p:?}");
            from_self = true;
        }
        cidrs.extend(
            p.ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip().map(str::to_string)),
        );
        assert!(p.ipv6_ranges().is_empty(), "IPv6 rule {p:?}");
    }
    assert!(from_self, "no member rule: {:?}", sg.ip_permissions());
    assert_eq!(cidrs, vec!["10.50.0.0/16".to_string()], "client CIDRs");

    // The replication credential: a SecureString the provider generated ...
    let p = acc
        .block(
            acc.ssm
                .get_parameter()
                .name(&param)
                .with_decryption(true)
                .send(),
        )
        .unwrap();
    let p = p.parameter().unwrap();
    assert_eq!(
        p.r#type(),
        Some(&aws_sdk_ssm::types::ParameterType::SecureString)
    );
    let password = p.value().unwrap().to_string();
    assert!(password.len() >= 16, "weak generated password");
    // ... and it is nowhere in Terraform's state, not even as a sensitive value.
    assert!(c.get("replication_password").is_none(), "{c}");
    let raw_state = std::fs::read_to_string(acc.dir.join("terraform.tfstate")).unwrap();
    assert!(
        !raw_state.contains(&password),
        "the replication credential is in terraform.tfstate"
    );

    // The data volume.
    let s = acc.resource("strata_storage_segment.data");
    let vol_id = s["id"].as_str().unwrap().to_string();
    let vol = acc.volume(&vol_id);
    assert_eq!(vol.volume_type(), Some(&VolumeType::Gp3));
    assert_eq!(vol.encrypted(), Some(true));
    assert_eq!(vol.size(), Some(20));
    assert_eq!(s["current_size_gib"], 20);
    assert_eq!(s["max_size_gib"], 80);
    assert_eq!(tag(vol.tags(), "strata:cluster"), Some(acc.name.as_str()));
    assert!(
        tag(vol.tags(), "strata:resource").is_some(),
        "{:?}",
        vol.tags()
    );
    let att = vol.attachments().first().expect("segment is not attached");
    assert_eq!(att.instance_id(), Some(source_id.as_str()));
    assert_eq!(att.state(), Some(&VolumeAttachmentState::Attached));

    // Issue 4: the source's user-data carries its NodeConfig and no secret.
    let (script, cfg) = acc.user_data(&source_id);
    assert_eq!(cfg.role, Role::Source);
    assert_eq!(cfg.cluster_id, acc.name);
    assert_eq!(cfg.replication.credential.ssm_parameter, param);
    assert!(
        cfg.source.is_none(),
        "a source has no upstream: {:?}",
        cfg.source
    );
    assert!(
        cfg.semi_sync(),
        "cluster is semi_sync: {:?}",
        cfg.replication
    );
    assert!(
        !script.contains(&password),
        "the replication password is in the user-data"
    );

    // Issue 9: the admin account, its password in its own SecureString, never in state.
    let admin_param = c["admin_parameter_name"].as_str().unwrap().to_string();
    assert_eq!(admin_param, format!("/strata/{}/admin-password", acc.name));
    assert_eq!(c["admin_user"], "strata_admin");
    let admin = cfg
        .admin
        .as_ref()
        .expect("the NodeConfig names the admin account");
    assert_eq!(admin.user, "strata_admin");
    assert_eq!(admin.credential.ssm_parameter, admin_param);
    assert_eq!(admin.credential.ssm_region, acc_support::HOME);
    let ap = acc
        .block(
            acc.ssm
                .get_parameter()
                .name(&admin_param)
                .with_decryption(true)
                .send(),
        )
        .unwrap();
    let ap = ap.parameter().unwrap();
    assert_eq!(
        ap.r#type(),
        Some(&aws_sdk_ssm::types::ParameterType::SecureString)
    );
    let admin_password = ap.value().unwrap().to_string();
    assert!(admin_password.len() >= 16, "weak admin password");
    assert_ne!(admin_password, password);
    assert!(
        !raw_state.contains(&admin_password),
        "the admin password is in terraform.tfstate"
    );
    assert!(
        !script.contains(&admin_password),
        "admin password in user-data"
    );

    // Issue 9: the agent, in the cluster's own private, encrypted, tagged bucket, and the
    // object's SHA-256 is the one the node will check.
    assert!(
        cfg.install.engine_packages,
        "a stock image installs the engine"
    );
    let agent = cfg
        .install
        .agent
        .as_ref()
        .expect("a stock image fetches the agent from the cluster's bucket");
    assert_eq!(
        agent.bucket,
        strata_topology::agent_bucket_name(&acc.name, "000000000000", acc_support::HOME)
    );
    assert_eq!(agent.region, acc_support::HOME);
    assert!(
        agent.key.starts_with("agent/") && agent.key.contains("/x86_64/"),
        "{}",
        agent.key
    );
    let bucket = agent.bucket.clone();
    let pab = acc
        .block(acc.s3.get_public_access_block().bucket(&bucket).send())
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true)),
        "bucket {bucket} is not private: {pab:?}"
    );
    let enc = acc
        .block(acc.s3.get_bucket_encryption().bucket(&bucket).send())
        .unwrap();
    let algo = enc
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().clone());
    assert_eq!(
        algo,
        Some(aws_sdk_s3::types::ServerSideEncryption::Aes256),
        "bucket {bucket} has no default encryption"
    );
    let bt = acc
        .block(acc.s3.get_bucket_tagging().bucket(&bucket).send())
        .unwrap();
    let btag = |k: &str| {
        bt.tag_set()
            .iter()
            .find(|t| t.key() == k)
            .map(|t| t.value().to_string())
    };
    assert_eq!(btag("strata:cluster").as_deref(), Some(acc.name.as_str()));
    assert_eq!(
        btag("strata:resource"),
        Some(format!("strata_cluster.{}", acc.name))
    );
    let obj = acc
        .block(acc.s3.get_object().bucket(&bucket).key(&agent.key).send())
        .unwrap();
    let body = acc.block(obj.body.collect()).unwrap().into_bytes();
    assert!(body.len() > 1000, "agent object is {} bytes", body.len());
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        agent.sha256,
        "the object in S3 is not what the NodeConfig says"
    );
    assert!(
        body.starts_with(b"\x7fELF"),
        "the agent object is not an ELF binary"
    );

    acc.destroy_and_check();
    let e = acc
        .block(acc.s3.head_bucket().bucket(&bucket).send())
        .unwrap_err();
    assert!(
        e.as_service_error().is_some_and(|s| s.is_not_found()),
        "bucket {bucket} survives destroy: {e:?}"
    );
    for p in [&param, &admin_param] {
        assert!(
            acc.block(acc.ssm.get_parameter().name(p).send()).is_err(),
            "{p} survives destroy"
        );
    }
}

/// The provider waits for the node's `strata:node-state` tag: the test plays the node (LocalStack
/// boots nothing) and tags the source `failed`, then, in a second apply, `ready`.
#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn apply_waits_for_the_node_to_report_ready() {
    let mut acc = Acc::new("rdy");
    let body = cluster_hcl(&acc, "");
    let write = |acc: &Acc| {
        acc_support::write_config(&acc.dir, &acc.provider_hcl_waiting("3m"), &body);
    };
    write(&acc);
    acc.init_in(&acc.dir.clone());

    // Plays the node: once the source instance exists, tags it with `state` (and a reason).
    let play_node = |acc: &Acc, state: &'static str| {
        let ec2 = acc.ec2.clone();
        let name = acc.name.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for _ in 0..240 {
                    let live = acc_support::live_instances(&ec2, &name).await.unwrap();
                    let fresh = live.iter().find(|i| {
                        tag(i.tags(), "strata:role") == Some("source")
                            && tag(i.tags(), "strata:node-state").is_none()
                    });
                    if let Some(i) = fresh {
                        let mut req = ec2.create_tags().resources(i.instance_id().unwrap()).tags(
                            aws_sdk_ec2::types::Tag::builder()
                                .key("strata:node-state")
                                .value(state)
                                .build(),
                        );
                        if state == "failed" {
                            req = req.tags(
                                aws_sdk_ec2::types::Tag::builder()
                                    .key("strata:node-error")
                                    .value("apt-get install mariadb-server failed: no network")
                                    .build(),
                            );
                        }
                        req.send().await.unwrap();
                        return i.instance_id().unwrap().to_string();
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                panic!("no source instance appeared");
            })
        })
    };

    // 1. The node reports failed: the apply fails with its reason and names the node; the
    // cluster stays in state, tainted.
    let player = play_node(&acc, "failed");
    let out = acc.run(
        &acc.dir.clone(),
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    let failed_id = player.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "apply succeeded with a failed node");
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("apt-get install mariadb-server failed: no network"),
        "{stderr}"
    );
    assert!(flat.contains(&failed_id), "the node is not named: {stderr}");
    let show = acc.run_ok(&acc.dir.clone(), &["state", "list"]);
    assert!(show.contains("strata_cluster.c"), "not in state: {show}");
    let (code, plan, _) = acc.plan();
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("tainted"), "{plan}");

    // 2. The replacement reports ready: the apply succeeds (and the failed node is gone).
    let player = play_node(&acc, "ready");
    acc.apply();
    let ready_id = player.join().unwrap();
    assert_ne!(ready_id, failed_id);
    assert_eq!(acc.attr_str("strata_cluster.c", "source_node_id"), ready_id);
    let live: Vec<String> = acc
        .live_instances(&acc.ec2)
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    assert_eq!(live, vec![ready_id]);

    write(&acc);
    acc.destroy_and_check();
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn cluster_with_two_replicas_in_two_azs() {
    let mut acc = Acc::new("rep");
    let body = format!(
        r#"{}
resource "strata_replica" "a" {{
  cluster_id = strata_cluster.c.id
  subnet_id  = "{}"
}}
resource "strata_replica" "b" {{
  cluster_id = strata_cluster.c.id
  subnet_id  = "{}"
}}
"#,
        cluster_hcl(&acc, ""),
        acc.subnet(0),
        acc.subnet(1)
    );
    acc.write(&body);
    acc.apply();

    let source_ip = acc.attr_str("strata_cluster.c", "source_private_ip");
    let mut azs = Vec::new();
    let mut server_ids = Vec::new();
    for r in ["strata_replica.a", "strata_replica.b"] {
        let st = acc.resource(r);
        let id = st["id"].as_str().unwrap().to_string();
        let inst = acc.instance(&acc.ec2, &id);
        let az = inst
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap()
            .to_string();
        assert_eq!(st["availability_zone"].as_str(), Some(az.as_str()));
        assert_eq!(st["private_ip"].as_str(), inst.private_ip_address());
        assert_eq!(tag(inst.tags(), "strata:cluster"), Some(acc.name.as_str()));
        assert_eq!(tag(inst.tags(), "strata:role"), Some("replica"));
        let (_, cfg) = acc.user_data(&id);
        assert_eq!(cfg.role, Role::Replica, "{r}");
        assert_eq!(cfg.cluster_id, acc.name);
        let src = cfg.source.as_ref().expect("a replica names its source");
        // With failover, the first hint of the source is the writer's name (a failover moves
        // it), not the source's IP.
        let _ = &source_ip;
        assert_eq!(
            src.host,
            format!("writer.{}.strata.internal", acc.name),
            "{r} replicates from the writer endpoint"
        );
        assert_eq!(src.port, 3306);
        azs.push(az);
        server_ids.push(cfg.server_id);
    }
    assert_ne!(azs[0], azs[1], "replicas in the same AZ: {azs:?}");
    assert_eq!(azs, acc.net.home_availability_zones);
    assert_ne!(server_ids[0], server_ids[1], "server ids collide");
    assert_eq!(acc.live_instances(&acc.ec2).len(), 3);

    acc.destroy_and_check();
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn cluster_with_a_read_only_region() {
    let mut acc = Acc::new("reg");
    let region_hcl = format!(
        r#"
resource "strata_region" "eu" {{
  cluster_id    = strata_cluster.c.id
  region        = "eu-west-1"
  subnet_id     = "{}"
  replica_count = 2
}}
"#,
        acc.eu_subnet()
    );
    acc.write(&format!("{}{region_hcl}", cluster_hcl(&acc, "")));
    acc.apply();

    let r = acc.resource("strata_region.eu");
    assert_eq!(
        r["id"].as_str(),
        Some(format!("{}/eu-west-1", acc.name).as_str())
    );
    let ids: Vec<String> = r["replica_node_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let live = acc.live_instances(&acc.ec2_eu);
    let mut live_ids: Vec<String> = live
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    live_ids.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(live_ids, sorted, "eu-west-1 instances vs state");
    for i in &live {
        assert_eq!(tag(i.tags(), "strata:cluster"), Some(acc.name.as_str()));
        assert!(tag(i.tags(), "strata:resource").is_some(), "{:?}", i.tags());
        assert_eq!(i.subnet_id(), Some(acc.eu_subnet()));
    }
    // Issue 4: each region replica's user-data is a region_replica NodeConfig that replicates
    // asynchronously from the home source, whatever the cluster's mode.
    let source_ip = acc.attr_str("strata_cluster.c", "source_private_ip");
    let mut server_ids = Vec::new();
    for id in &ids {
        let (_, cfg) = acc.user_data_in(&acc.ec2_eu, id);
        assert_eq!(cfg.role, Role::RegionReplica, "{id}");
        assert_eq!(cfg.cluster_id, acc.name);
        assert_eq!(cfg.region, "eu-west-1");
        let _ = &source_ip;
        assert_eq!(
            cfg.source.as_ref().map(|s| s.host.clone()),
            Some(format!("writer.{}.strata.internal", acc.name))
        );
        assert!(
            !cfg.semi_sync(),
            "{id}: a region replica must be asynchronous"
        );
        server_ids.push(cfg.server_id);
    }
    assert_ne!(server_ids[0], server_ids[1], "server ids collide");
    let eu_sg_id = r["security_group_id"].as_str().unwrap().to_string();
    let eu_sg = acc.security_group(&acc.ec2_eu, &eu_sg_id);
    assert_eq!(tag(eu_sg.tags(), "strata:cluster"), Some(acc.name.as_str()));

    let eu_cidr = acc.subnet_cidr(&acc.ec2_eu, acc.eu_subnet());
    let home_sg = acc.attr_str("strata_cluster.c", "security_group_id");
    let has_eu_rule = |acc: &Acc| {
        acc.security_group(&acc.ec2, &home_sg)
            .ip_permissions()
            .iter()
            .any(|p| {
                p.from_port() == Some(3306)
                    && p.ip_ranges()
                        .iter()
                        .any(|r| r.cidr_ip() == Some(eu_cidr.as_str()))
            })
    };
    assert!(has_eu_rule(&acc), "home group has no rule from {eu_cidr}");

    // Destroying only the region closes the home rule and removes its replicas.
    acc.write(&cluster_hcl(&acc, ""));
    acc.apply();
    assert!(
        !has_eu_rule(&acc),
        "home rule from {eu_cidr} survives the region's destroy"
    );
    assert!(
        acc.live_instances(&acc.ec2_eu).is_empty(),
        "eu replicas left"
    );
    let gone = acc
        .block(
            acc.ec2_eu
                .describe_security_groups()
                .group_ids(&eu_sg_id)
                .send(),
        )
        .map(|o| o.security_groups().is_empty())
        .unwrap_or(true);
    assert!(gone, "eu security group {eu_sg_id} left");

    acc.destroy_and_check();
}
