//! `strata_provider::aws` against LocalStack at `$LOCALSTACK_ENDPOINT` (default
//! http://127.0.0.1:4566; start it with `scripts/localstack start`). Each test makes its own VPC
//! and subnets, drives create → read → update → delete, and checks AWS directly through the SDK.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use rand::Rng as _;
use strata_provider::aws::{
    self, AwsConfig, AwsError, Clients, ClusterSpec, Endpoints, RegionClients, RegionSpec,
    SegmentSpec, config::resolve_settings, node::NodeSpec,
};

/// `$LOCALSTACK_ENDPOINT`, else LocalStack's default port on loopback.
fn endpoint() -> String {
    std::env::var("LOCALSTACK_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:4566".to_string())
}
const TIMEOUT: Duration = Duration::from_secs(120);

fn local_config() -> AwsConfig {
    let e = Some(endpoint());
    AwsConfig {
        region: Some("us-east-1".into()),
        access_key: Some("test".into()),
        secret_key: Some("test".into()),
        endpoints: Endpoints {
            ec2: e.clone(),
            ebs: e.clone(),
            iam: e.clone(),
            ssm: e.clone(),
            sts: e.clone(),
            s3: e.clone(),
            route53: e,
        },
        // LocalStack 4.14's STS answers GetCallerIdentity with an internal error here.
        skip_credentials_validation: true,
        default_tags: BTreeMap::from([("env".to_string(), "strata-test".to_string())]),
        max_retries: Some(2),
        ..Default::default()
    }
}

async fn clients() -> Clients {
    let ep = endpoint();
    let hostport = ep.trim_start_matches("http://").trim_end_matches('/');
    if tokio::net::TcpStream::connect(hostport).await.is_err() {
        panic!(
            "LocalStack is not reachable at {ep}: start it with `scripts/localstack start` \
             (these tests run via scripts/test)"
        );
    }
    let cfg = local_config();
    // Only the explicit config: the developer's AWS_* variables must not leak into tests.
    let settings = resolve_settings(&cfg, |_| None).unwrap();
    Clients::connect_with(&cfg, settings).await.unwrap()
}

fn unique(prefix: &str) -> String {
    let s: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .filter(|c| c.is_ascii_lowercase())
        .take(6)
        .map(char::from)
        .collect();
    format!("{prefix}{s}")
}

struct Net {
    vpc_id: String,
    subnets: Vec<(String, String)>, // (id, az)
}

/// A VPC with one subnet per given AZ suffix; `second` picks the second octet.
async fn network(rc: &RegionClients, second: u8, azs: &[&str]) -> Net {
    let vpc = rc
        .ec2
        .create_vpc()
        .cidr_block(format!("10.{second}.0.0/16"))
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut subnets = Vec::new();
    for (i, az) in azs.iter().enumerate() {
        let az = format!("{}{az}", rc.region);
        let s = rc
            .ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.{second}.{i}.0/24"))
            .availability_zone(&az)
            .send()
            .await
            .unwrap();
        subnets.push((s.subnet().unwrap().subnet_id().unwrap().to_string(), az));
    }
    Net { vpc_id, subnets }
}

async fn drop_network(rc: &RegionClients, net: &Net) {
    for (s, _) in &net.subnets {
        let _ = rc.ec2.delete_subnet().subnet_id(s).send().await;
    }
    let _ = rc.ec2.delete_vpc().vpc_id(&net.vpc_id).send().await;
}

fn second_octet() -> u8 {
    rand::rng().random_range(20..250)
}

/// Live instances, volumes and groups tagged with the cluster, in `rc`'s region.
async fn tagged_leftovers(rc: &RegionClients, cluster: &str) -> Vec<String> {
    let f = || {
        Filter::builder()
            .name("tag:strata:cluster")
            .values(cluster)
            .build()
    };
    let mut left = Vec::new();
    let inst = rc
        .ec2
        .describe_instances()
        .filters(f())
        .send()
        .await
        .unwrap();
    for i in inst.reservations().iter().flat_map(|r| r.instances()) {
        let state = i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string());
        if state.as_deref() != Some("terminated") {
            left.push(format!("instance {:?} {state:?}", i.instance_id()));
        }
    }
    let vols = rc.ec2.describe_volumes().filters(f()).send().await.unwrap();
    for v in vols.volumes() {
        left.push(format!("volume {:?} {:?}", v.volume_id(), v.state()));
    }
    let sgs = rc
        .ec2
        .describe_security_groups()
        .filters(f())
        .send()
        .await
        .unwrap();
    for g in sgs.security_groups() {
        left.push(format!("security group {:?}", g.group_id()));
    }
    left
}

fn has_strata_tags(tags: &BTreeMap<String, String>, cluster: &str) {
    assert_eq!(
        tags.get("strata:cluster").map(String::as_str),
        Some(cluster),
        "{tags:?}"
    );
    assert!(tags.contains_key("strata:resource"), "{tags:?}");
    assert!(tags.contains_key("strata:creation-token"), "{tags:?}");
    assert_eq!(
        tags.get("env").map(String::as_str),
        Some("strata-test"),
        "default tags: {tags:?}"
    );
}

fn ec2_tags(t: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    t.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// (source kind, cidr-or-group, from, to) of every ingress rule.
async fn ingress(rc: &RegionClients, group_id: &str) -> Vec<(String, i32, i32)> {
    let g = aws::network::describe_group(&rc.ec2, group_id)
        .await
        .unwrap();
    let mut v: Vec<_> = g
        .ingress
        .iter()
        .map(|r| {
            let s = match &r.source {
                aws::network::RuleSource::Cidr(c) => c.clone(),
                aws::network::RuleSource::Group(g) => g.clone(),
            };
            (s, r.from_port, r.to_port)
        })
        .collect();
    v.sort();
    v
}

fn cluster_spec(name: &str, subnet: &str) -> ClusterSpec {
    let mut s = ClusterSpec::new(
        name,
        aws::creation_token(&[name, "strata_cluster.x"]),
        subnet,
        "t3.micro",
    );
    s.allowed_cidrs = vec!["10.200.0.0/16".into()];
    s.node.tags = BTreeMap::from([("team".to_string(), "db".to_string())]);
    s.node.user_data = "#!/bin/sh\nexec strata-agent --config /etc/strata/node.json\n".into();
    s.node.timeout = TIMEOUT;
    s
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn cluster_create_read_update_delete() {
    let clients = clients().await;
    let rc = clients.home().await.unwrap();
    let net = network(&rc, second_octet(), &["a"]).await;
    let name = unique("c");
    let spec = cluster_spec(&name, &net.subnets[0].0);

    let created = aws::create_cluster(&clients, &spec).await.unwrap();
    let info = &created.info;
    assert_eq!(info.cluster_id, name);
    assert_eq!(info.vpc_id, net.vpc_id);
    assert_eq!(info.availability_zone, net.subnets[0].1);
    assert_eq!(info.parameter_name, format!("/strata/{name}/replication"));
    assert!(info.managed_profile);
    assert_eq!(info.allowed_cidrs, vec!["10.200.0.0/16".to_string()]);
    let ip = info.private_ip.clone().expect("private ip");
    assert_eq!(
        info.writer_endpoint.as_deref(),
        Some(format!("{ip}:3306").as_str())
    );
    assert_eq!(created.replication_password.expose().len(), 32);

    // Security group: the engine port from members and the allowed CIDR, nothing else.
    assert_eq!(ingress(&rc, &info.security_group_id).await, {
        let mut v = vec![
            ("10.200.0.0/16".to_string(), 3306, 3306),
            (info.security_group_id.clone(), 3306, 3306),
        ];
        v.sort();
        v
    });
    let sg = aws::network::describe_group(&rc.ec2, &info.security_group_id)
        .await
        .unwrap();
    has_strata_tags(&sg.tags, &name);

    // The instance: IMDSv2 required, encrypted gp3 root, user-data, tags on instance and volume.
    let src = &info.source;
    assert!(src.http_tokens_required, "HttpTokens must be required");
    has_strata_tags(&src.tags, &name);
    assert_eq!(
        src.tags.get("strata:role").map(String::as_str),
        Some("source")
    );
    assert_eq!(src.tags.get("team").map(String::as_str), Some("db"));
    let root = src.root_volume_id.clone().expect("root volume");
    let vols = rc
        .ec2
        .describe_volumes()
        .volume_ids(&root)
        .send()
        .await
        .unwrap();
    let v = &vols.volumes()[0];
    assert_eq!(v.encrypted(), Some(true), "root volume must be encrypted");
    assert_eq!(v.volume_type().map(|t| t.as_str()), Some("gp3"));
    has_strata_tags(&ec2_tags(v.tags()), &name);
    let ud = rc
        .ec2
        .describe_instance_attribute()
        .instance_id(&info.source_instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let ud = ud
        .user_data()
        .and_then(|u| u.value())
        .unwrap_or_default()
        .to_string();
    // EC2 holds the script gzip-compressed, base64 on the wire.
    assert_eq!(
        strata_topology::decode_user_data(&ud).unwrap(),
        spec.node.user_data
    );
    assert!(
        !spec
            .node
            .user_data
            .contains(created.replication_password.expose())
    );

    // The parameter: a SecureString holding the password, tagged.
    let p = rc
        .ssm
        .get_parameter()
        .name(&info.parameter_name)
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let p = p.parameter().unwrap();
    assert_eq!(
        p.r#type(),
        Some(&aws_sdk_ssm::types::ParameterType::SecureString)
    );
    assert_eq!(p.value(), Some(created.replication_password.expose()));
    assert_eq!(info.parameter_version, Some(p.version()));
    let pt = rc
        .ssm
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(&info.parameter_name)
        .send()
        .await
        .unwrap();
    let pt: BTreeMap<_, _> = pt
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    has_strata_tags(&pt, &name);
    // The admin password: its own SecureString, another value.
    let ap = rc
        .ssm
        .get_parameter()
        .name(&info.admin_parameter_name)
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let ap = ap.parameter().unwrap();
    assert_eq!(
        info.admin_parameter_name,
        format!("/strata/{name}/admin-password")
    );
    assert_eq!(
        ap.r#type(),
        Some(&aws_sdk_ssm::types::ParameterType::SecureString)
    );
    assert_ne!(ap.value(), Some(created.replication_password.expose()));
    assert!(ap.value().is_some_and(|v| v.len() == 32));

    // The role and profile: tagged, with the agent policy.
    let role = rc
        .iam
        .get_role()
        .role_name(&info.instance_profile)
        .send()
        .await
        .unwrap();
    let rt: BTreeMap<_, _> = role
        .role()
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    has_strata_tags(&rt, &name);
    let pol = rc
        .iam
        .get_role_policy()
        .role_name(&info.instance_profile)
        .policy_name("strata-node-agent")
        .send()
        .await
        .unwrap();
    let doc = pol.policy_document();
    let doc = if doc.starts_with('%') || doc.contains("%22") {
        percent_decode(doc)
    } else {
        doc.to_string()
    };
    for param in ["replication", "admin-password"] {
        assert!(
            doc.contains(&format!("parameter/strata/{name}/{param}")),
            "{doc}"
        );
    }
    // No agent upload in this spec (agent: None): no S3 grant either.
    assert!(!doc.contains("s3:GetObject"), "{doc}");
    assert!(doc.contains("strata:node-state"), "{doc}");
    let prof = rc
        .iam
        .get_instance_profile()
        .instance_profile_name(&info.instance_profile)
        .send()
        .await
        .unwrap();
    let prof = prof.instance_profile().unwrap();
    assert_eq!(prof.roles().len(), 1);
    assert!(
        src.instance_profile_arn
            .as_deref()
            .unwrap_or_default()
            .ends_with(&info.instance_profile)
    );

    // Find-or-create: a retry with the same token returns the same objects and secret.
    let again = aws::create_cluster(&clients, &spec).await.unwrap();
    assert_eq!(again.info.source_instance_id, info.source_instance_id);
    assert_eq!(again.info.security_group_id, info.security_group_id);
    assert_eq!(
        again.replication_password.expose(),
        created.replication_password.expose()
    );
    let live = rc
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:strata:cluster")
                .values(&name)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .count(),
        1
    );

    // Read.
    let read = aws::read_cluster(&clients, None, &name).await.unwrap();
    assert_eq!(&read, info);

    // Update: instance type in place, allowed CIDRs/groups as a rule diff, tags.
    let app = rc
        .ec2
        .create_security_group()
        .group_name(unique("app"))
        .description("app")
        .vpc_id(&net.vpc_id)
        .send()
        .await
        .unwrap();
    let app_sg = app.group_id().unwrap().to_string();
    let mut spec2 = spec.clone();
    spec2.node.instance_type = "t3.small".into();
    spec2.allowed_cidrs = vec!["10.201.0.0/16".into()];
    spec2.allowed_security_group_ids = vec![app_sg.clone()];
    spec2.node.tags = BTreeMap::from([("team".to_string(), "data".to_string())]);
    let upd = aws::update_cluster(&clients, &spec2).await.unwrap();
    assert_eq!(
        upd.source_instance_id, info.source_instance_id,
        "updated in place"
    );
    assert_eq!(upd.instance_type, "t3.small");
    assert_eq!(upd.source.state, "running");
    assert_eq!(upd.allowed_cidrs, vec!["10.201.0.0/16".to_string()]);
    assert_eq!(upd.allowed_security_group_ids, vec![app_sg.clone()]);
    assert_eq!(upd.tags.get("team").map(String::as_str), Some("data"));
    let mut want = vec![
        ("10.201.0.0/16".to_string(), 3306, 3306),
        (info.security_group_id.clone(), 3306, 3306),
        (app_sg.clone(), 3306, 3306),
    ];
    want.sort();
    assert_eq!(ingress(&rc, &info.security_group_id).await, want);

    // Delete: nothing tagged with the cluster remains.
    aws::delete_cluster(&clients, None, &name, TIMEOUT)
        .await
        .unwrap();
    let left = tagged_leftovers(&rc, &name).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    let e = rc
        .ssm
        .get_parameter()
        .name(&info.parameter_name)
        .send()
        .await
        .unwrap_err();
    assert!(AwsError::from_sdk(e, "ssm:GetParameter", "p").is_not_found());
    let e = rc
        .ssm
        .get_parameter()
        .name(&info.admin_parameter_name)
        .send()
        .await
        .unwrap_err();
    assert!(AwsError::from_sdk(e, "ssm:GetParameter", "admin").is_not_found());
    let e = rc
        .iam
        .get_instance_profile()
        .instance_profile_name(&info.instance_profile)
        .send()
        .await
        .unwrap_err();
    assert!(AwsError::from_sdk(e, "iam:GetInstanceProfile", "p").is_not_found());
    let e = rc
        .iam
        .get_role()
        .role_name(&info.instance_profile)
        .send()
        .await
        .unwrap_err();
    assert!(AwsError::from_sdk(e, "iam:GetRole", "r").is_not_found());
    let e = aws::read_cluster(&clients, None, &name).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    // Deleting again is fine.
    aws::delete_cluster(&clients, None, &name, TIMEOUT)
        .await
        .unwrap();

    let _ = rc
        .ec2
        .delete_security_group()
        .group_id(&app_sg)
        .send()
        .await;
    drop_network(&rc, &net).await;
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 3 <= b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn replica_spec(c: &aws::ClusterInfo, name: &str, res: &str, subnet: &str) -> NodeSpec {
    let mut s = NodeSpec::new(
        name,
        res,
        aws::creation_token(&[name, res]),
        subnet,
        "t3.micro",
    );
    s.security_group_ids = vec![c.security_group_id.clone()];
    s.instance_profile = Some(c.instance_profile.clone());
    s.user_data = format!(
        "#!/bin/sh\n# replica of {}\n",
        c.writer_endpoint.clone().unwrap_or_default()
    );
    s.timeout = TIMEOUT;
    s
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn cluster_with_two_replicas_timed_and_concurrent() {
    let clients = Arc::new(clients().await);
    let rc = clients.home().await.unwrap();
    let net = network(&rc, second_octet(), &["a", "b"]).await;
    let name = unique("r");

    let t0 = Instant::now();
    let c = aws::create_cluster(&clients, &cluster_spec(&name, &net.subnets[0].0))
        .await
        .unwrap()
        .info;
    let t_cluster = t0.elapsed();

    // Two replicas in different AZs, created concurrently; record each create's span.
    let t1 = Instant::now();
    let mut handles = Vec::new();
    for (i, (subnet, _)) in net.subnets.iter().enumerate() {
        let clients = clients.clone();
        let spec = replica_spec(&c, &name, &format!("strata_replica.r{i}"), subnet);
        handles.push(tokio::spawn(async move {
            let start = Instant::now();
            let r = aws::create_replica(&clients, &spec).await;
            (start, Instant::now(), r)
        }));
    }
    let mut spans = Vec::new();
    let mut replicas = Vec::new();
    for h in handles {
        let (s, e, r) = h.await.unwrap();
        spans.push((s, e));
        replicas.push(r.unwrap());
    }
    let t_replicas = t1.elapsed();
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    eprintln!(
        "FIGURES: create_cluster {:?}; 2 replicas concurrently {:?} (spans {:?}); total {:?}",
        t_cluster,
        t_replicas,
        spans
            .iter()
            .map(|(s, e)| e.duration_since(*s))
            .collect::<Vec<_>>(),
        t0.elapsed()
    );
    assert!(
        latest_start < earliest_end,
        "replica creates did not overlap: something serialises them"
    );

    for (r, (subnet, az)) in replicas.iter().zip(&net.subnets) {
        assert_eq!(r.subnet_id.as_deref(), Some(subnet.as_str()));
        assert_eq!(r.availability_zone.as_deref(), Some(az.as_str()));
        assert_eq!(r.security_group_ids, vec![c.security_group_id.clone()]);
        assert!(r.http_tokens_required);
        assert_eq!(r.instance_profile_arn, c.source.instance_profile_arn);
        has_strata_tags(&r.tags, &name);
        assert_eq!(
            r.tags.get("strata:role").map(String::as_str),
            Some("replica")
        );
    }
    // Retry with the same token finds the same instance.
    let again = aws::create_replica(
        &clients,
        &replica_spec(&c, &name, "strata_replica.r0", &net.subnets[0].0),
    )
    .await
    .unwrap();
    assert_eq!(again.instance_id, replicas[0].instance_id);

    // Update tags and type in place; read; delete; read is not-found.
    let mut s = replica_spec(&c, &name, "strata_replica.r1", &net.subnets[1].0);
    s.instance_type = "t3.small".into();
    s.tags = BTreeMap::from([("tier".to_string(), "read".to_string())]);
    let u = aws::update_replica(&clients, &replicas[1].instance_id, &s)
        .await
        .unwrap();
    assert_eq!(u.instance_type, "t3.small");
    assert_eq!(u.tags.get("tier").map(String::as_str), Some("read"));
    let r = aws::read_replica(&clients, None, &replicas[1].instance_id)
        .await
        .unwrap();
    assert_eq!(r, u);
    for r in &replicas {
        aws::delete_replica(&clients, None, &r.instance_id, TIMEOUT)
            .await
            .unwrap();
        assert!(
            aws::read_replica(&clients, None, &r.instance_id)
                .await
                .unwrap_err()
                .is_not_found()
        );
    }
    aws::delete_cluster(&clients, None, &name, TIMEOUT)
        .await
        .unwrap();
    let left = tagged_leftovers(&rc, &name).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    drop_network(&rc, &net).await;
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn region_in_eu_west_1_opens_and_closes_the_home_rule() {
    let clients = clients().await;
    let home = clients.home().await.unwrap();
    let eu = clients.region(Some("eu-west-1")).await.unwrap();
    let hnet = network(&home, second_octet(), &["a"]).await;
    let eunet = network(&eu, second_octet(), &["a"]).await;
    let name = unique("g");
    let c = aws::create_cluster(&clients, &cluster_spec(&name, &hnet.subnets[0].0))
        .await
        .unwrap()
        .info;

    let eu_cidr = aws::network::subnet_info(&eu.ec2, &eunet.subnets[0].0)
        .await
        .unwrap()
        .cidr_block;
    let mut spec = RegionSpec {
        cluster: name.clone(),
        resource: "strata_region.eu".into(),
        creation_token: aws::creation_token(&[&name, "strata_region.eu"]),
        region: "eu-west-1".into(),
        subnet_id: eunet.subnets[0].0.clone(),
        replica_count: 2,
        instance_type: "t3.micro".into(),
        ami: None,
        instance_profile: Some(c.instance_profile.clone()),
        port: c.port,
        home_region: None,
        home_security_group_id: c.security_group_id.clone(),
        home_source_cidr: c.subnet_cidr.clone(),
        allowed_cidrs: vec![],
        user_data: vec!["#!/bin/sh\n# region replica\n".into()],
        tags: BTreeMap::new(),
        root_volume_size_gib: 20,
        timeout: TIMEOUT,
    };
    let r = aws::create_region(&clients, &spec).await.unwrap();
    assert_eq!(r.region, "eu-west-1");
    assert_eq!(r.replicas.len(), 2);
    assert!(r.home_rule_present);
    for (i, n) in r.replicas.iter().enumerate() {
        assert_eq!(n.region, "eu-west-1");
        assert_eq!(n.tags.get("strata:index"), Some(&i.to_string()));
        assert_eq!(
            n.tags.get("strata:role").map(String::as_str),
            Some("region-replica")
        );
        has_strata_tags(&n.tags, &name);
        assert!(n.http_tokens_required);
        assert_eq!(n.security_group_ids, vec![r.security_group_id.clone()]);
    }
    // The instances really are in eu-west-1 (and not in the home region).
    let in_eu = eu
        .ec2
        .describe_instances()
        .instance_ids(&r.replicas[0].instance_id)
        .send()
        .await
        .unwrap();
    assert_eq!(in_eu.reservations().len(), 1);
    // Region group: members and the home source subnet only.
    let mut want = vec![
        (r.security_group_id.clone(), 3306, 3306),
        (c.subnet_cidr.clone(), 3306, 3306),
    ];
    want.sort();
    assert_eq!(ingress(&eu, &r.security_group_id).await, want);
    // Home group gained exactly the region subnet's CIDR.
    let home_rules = ingress(&home, &c.security_group_id).await;
    assert!(
        home_rules.contains(&(eu_cidr.clone(), 3306, 3306)),
        "{home_rules:?}"
    );
    // A cluster update keeps the region's rule.
    let mut cs = cluster_spec(&name, &hnet.subnets[0].0);
    cs.allowed_cidrs = vec![];
    let upd = aws::update_cluster(&clients, &cs).await.unwrap();
    assert!(upd.allowed_cidrs.is_empty());
    assert!(
        ingress(&home, &c.security_group_id)
            .await
            .contains(&(eu_cidr.clone(), 3306, 3306))
    );

    // Import: the spec is rebuilt from AWS.
    let (found, finfo) =
        aws::region::discover_region(&clients, None, &name, "eu-west-1", "strata_region.eu")
            .await
            .unwrap();
    assert_eq!(finfo, r);
    assert_eq!(found.subnet_id, spec.subnet_id);
    assert_eq!(found.replica_count, 2);
    assert_eq!(found.instance_type, "t3.micro");
    assert_eq!(found.creation_token, spec.creation_token);
    assert_eq!(found.home_security_group_id, c.security_group_id);
    assert!(found.allowed_cidrs.is_empty());

    // Retry of create finds the same replicas.
    let again = aws::create_region(&clients, &spec).await.unwrap();
    assert_eq!(again.replica_instance_ids(), r.replica_instance_ids());

    // Count up, then down: highest index goes first, index 0 stays.
    spec.replica_count = 3;
    let up = aws::set_region_replica_count(&clients, &spec)
        .await
        .unwrap();
    assert_eq!(up.replicas.len(), 3);
    assert_eq!(
        &up.replicas[..2],
        &r.replicas[..],
        "existing replicas untouched"
    );
    spec.replica_count = 1;
    let down = aws::set_region_replica_count(&clients, &spec)
        .await
        .unwrap();
    assert_eq!(
        down.replica_instance_ids(),
        vec![r.replicas[0].instance_id.clone()]
    );

    // update_region: instance type in place, allowed CIDRs on the region's group.
    spec.instance_type = "t3.small".into();
    spec.allowed_cidrs = vec!["192.168.0.0/16".into()];
    let u = aws::update_region(&clients, &spec).await.unwrap();
    assert_eq!(u.replica_instance_ids(), down.replica_instance_ids());
    assert_eq!(u.replicas[0].instance_type, "t3.small");
    assert_eq!(u.replicas[0].state, "running");
    assert!(ingress(&eu, &r.security_group_id).await.contains(&(
        "192.168.0.0/16".to_string(),
        3306,
        3306
    )));

    aws::delete_region(&clients, &spec).await.unwrap();
    assert!(
        !ingress(&home, &c.security_group_id)
            .await
            .iter()
            .any(|r| r.0 == eu_cidr),
        "home rule closed"
    );
    let left = tagged_leftovers(&eu, &name).await;
    assert!(left.is_empty(), "left in eu-west-1: {left:?}");
    assert!(
        aws::read_region(&clients, &spec)
            .await
            .unwrap_err()
            .is_not_found()
    );

    aws::delete_cluster(&clients, None, &name, TIMEOUT)
        .await
        .unwrap();
    assert!(tagged_leftovers(&home, &name).await.is_empty());
    drop_network(&home, &hnet).await;
    drop_network(&eu, &eunet).await;
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn segment_create_grow_move_delete() {
    let clients = clients().await;
    let rc = clients.home().await.unwrap();
    let net = network(&rc, second_octet(), &["a"]).await;
    let name = unique("s");
    let c = aws::create_cluster(&clients, &cluster_spec(&name, &net.subnets[0].0))
        .await
        .unwrap()
        .info;
    let other = aws::create_replica(
        &clients,
        &replica_spec(&c, &name, "strata_replica.b", &net.subnets[0].0),
    )
    .await
    .unwrap();

    let mut spec = SegmentSpec::new(
        &name,
        "strata_storage_segment.data",
        aws::creation_token(&[&name, "seg"]),
        &c.source_instance_id,
        10,
    );
    spec.iops = Some(3000);
    spec.throughput = Some(125);
    spec.timeout = TIMEOUT;
    let s = aws::create_segment(&clients, &spec).await.unwrap();
    assert_eq!(s.size_gib, 10);
    assert_eq!(s.volume_type, "gp3");
    assert!(s.encrypted);
    assert_eq!(s.availability_zone, c.availability_zone);
    assert_eq!(
        s.attached_instance_id.as_deref(),
        Some(c.source_instance_id.as_str())
    );
    assert_eq!(s.state, "in-use");
    assert_eq!(s.device_name.as_deref(), Some("/dev/sdf"));
    has_strata_tags(&s.tags, &name);
    assert_eq!(
        s.tags.get("strata:role").map(String::as_str),
        Some("segment")
    );

    let again = aws::create_segment(&clients, &spec).await.unwrap();
    assert_eq!(again.volume_id, s.volume_id, "find-or-create by token");

    let g = aws::grow_segment(&clients, None, &s.volume_id, 20, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(g.size_gib, 20);
    let read = aws::read_segment(&clients, None, &s.volume_id)
        .await
        .unwrap();
    assert_eq!(read.size_gib, 20);
    let e = aws::grow_segment(&clients, None, &s.volume_id, 10, TIMEOUT)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot shrink"), "{e}");
    // update_segment with a smaller configured size leaves an agent-grown volume alone.
    let u = aws::update_segment(&clients, &s.volume_id, &spec)
        .await
        .unwrap();
    assert_eq!(u.size_gib, 20);

    let m = aws::move_segment(&clients, None, &s.volume_id, &other.instance_id, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        m.attached_instance_id.as_deref(),
        Some(other.instance_id.as_str())
    );
    assert_eq!(m.volume_id, s.volume_id, "moved, not recreated");
    assert_eq!(m.state, "in-use");

    aws::delete_segment(&clients, None, &s.volume_id, TIMEOUT)
        .await
        .unwrap();
    assert!(
        aws::read_segment(&clients, None, &s.volume_id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    aws::delete_segment(&clients, None, &s.volume_id, TIMEOUT)
        .await
        .unwrap();

    aws::delete_replica(&clients, None, &other.instance_id, TIMEOUT)
        .await
        .unwrap();
    aws::delete_cluster(&clients, None, &name, TIMEOUT)
        .await
        .unwrap();
    let left = tagged_leftovers(&rc, &name).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    drop_network(&rc, &net).await;
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn errors_name_the_object_and_say_what_to_do() {
    let clients = clients().await;
    let name = unique("e");
    let spec = cluster_spec(&name, "subnet-00000000deadbeef");
    let e = aws::create_cluster(&clients, &spec).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("check subnet_id"), "{e}");
    let e = aws::read_replica(&clients, None, "i-0123456789abcdef0")
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = aws::create_cluster(&clients, &cluster_spec("Bad_Name", "subnet-1"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("lowercase"), "{e}");

    // Credential validation against an endpoint nobody answers on: a clear error, no hang.
    let mut cfg = local_config();
    cfg.skip_credentials_validation = false;
    cfg.endpoints.sts = Some("http://127.0.0.1:9".into());
    cfg.max_retries = Some(0);
    let settings = resolve_settings(&cfg, |_| None).unwrap();
    let e = Clients::connect_with(&cfg, settings).await.unwrap_err();
    assert!(matches!(e, AwsError::Credentials { .. }), "{e:?}");
    assert!(e.to_string().contains("skip_credentials_validation"), "{e}");
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn one_client_set_per_region_shared_under_concurrency() {
    let clients = Arc::new(clients().await);
    let mut hs = Vec::new();
    for i in 0..16 {
        let c = clients.clone();
        hs.push(tokio::spawn(async move {
            c.region(Some(if i % 2 == 0 { "eu-west-1" } else { "us-west-2" }))
                .await
                .unwrap()
        }));
    }
    let mut eu = Vec::new();
    let mut us = Vec::new();
    for (i, h) in hs.into_iter().enumerate() {
        let r = h.await.unwrap();
        if i % 2 == 0 { eu.push(r) } else { us.push(r) }
    }
    assert!(
        eu.iter()
            .all(|r| Arc::ptr_eq(r, &eu[0]) && r.region == "eu-west-1")
    );
    assert!(
        us.iter()
            .all(|r| Arc::ptr_eq(r, &us[0]) && r.region == "us-west-2")
    );
    assert!(!Arc::ptr_eq(&eu[0], &us[0]));
    let home = clients.region(None).await.unwrap();
    assert!(Arc::ptr_eq(
        &home,
        &clients.region(Some("us-east-1")).await.unwrap()
    ));
    // The eu clients really talk to eu-west-1.
    let azs = eu[0]
        .ec2
        .describe_availability_zones()
        .send()
        .await
        .unwrap();
    assert!(
        azs.availability_zones()
            .iter()
            .all(|z| z.zone_name().unwrap_or_default().starts_with("eu-west-1"))
    );
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn failed_create_cleans_up_and_out_of_band_deletion_reads_as_gone() {
    let clients = clients().await;
    let rc = clients.home().await.unwrap();
    let net = network(&rc, second_octet(), &["a"]).await;

    // The source instance cannot start (no such image): the group, profile and parameter this
    // create made must be gone again.
    let name = unique("f");
    let mut spec = cluster_spec(&name, &net.subnets[0].0);
    spec.node.ami = Some("ami-00000000000000000".into());
    let e = aws::create_cluster(&clients, &spec).await.unwrap_err();
    assert!(e.to_string().contains("check ami"), "{e}");
    assert!(e.leftovers().is_empty(), "{e}");
    let left = tagged_leftovers(&rc, &name).await;
    assert!(
        left.is_empty(),
        "left behind after a failed create: {left:?}"
    );
    assert!(
        rc.ssm
            .get_parameter()
            .name(aws::replication_parameter_name(&name))
            .send()
            .await
            .is_err()
    );
    let profile = aws::cluster::managed_profile_name(&name, "us-east-1");
    assert!(
        rc.iam
            .get_instance_profile()
            .instance_profile_name(&profile)
            .send()
            .await
            .is_err()
    );
    assert!(rc.iam.get_role().role_name(&profile).send().await.is_err());

    // Out-of-band termination of the source: the AWS layer reads the cluster as having lost its
    // launched node (the resource then decides: gone, or a failed-over cluster's lost node).
    let name = unique("o");
    let c = aws::create_cluster(&clients, &cluster_spec(&name, &net.subnets[0].0))
        .await
        .unwrap()
        .info;
    rc.ec2
        .terminate_instances()
        .instance_ids(&c.source_instance_id)
        .send()
        .await
        .unwrap();
    let lost = aws::read_cluster(&clients, None, &name).await.unwrap();
    assert!(
        lost.launch_node_lost && lost.source_instance_id.is_empty(),
        "{lost:?}"
    );
    // A create with the same token after that makes a new source, not the terminated one.
    let again = aws::create_cluster(&clients, &cluster_spec(&name, &net.subnets[0].0))
        .await
        .unwrap()
        .info;
    assert_ne!(again.source_instance_id, c.source_instance_id);
    assert_eq!(again.security_group_id, c.security_group_id);
    aws::delete_cluster(&clients, None, &name, TIMEOUT)
        .await
        .unwrap();
    assert!(tagged_leftovers(&rc, &name).await.is_empty());
    drop_network(&rc, &net).await;
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn default_ami_exists_for_both_architectures() {
    let clients = clients().await;
    for region in ["us-east-1", "eu-west-1"] {
        let rc = clients.region(Some(region)).await.unwrap();
        for t in ["t3.micro", "r7g.large"] {
            let ami = aws::default_ami(&rc, t).await.unwrap();
            let out = rc
                .ec2
                .describe_images()
                .image_ids(&ami)
                .send()
                .await
                .unwrap();
            assert_eq!(out.images().len(), 1, "{region} {t}: {ami} must exist");
            eprintln!("default AMI {region} {t}: {ami}");
        }
    }
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn ten_replicas_do_not_cost_ten_times_one() {
    let clients = Arc::new(clients().await);
    let rc = clients.home().await.unwrap();
    let net = network(&rc, second_octet(), &["a"]).await;
    let name = unique("t");
    let c = aws::create_cluster(&clients, &cluster_spec(&name, &net.subnets[0].0))
        .await
        .unwrap()
        .info;

    let t = Instant::now();
    let one = aws::create_replica(
        &clients,
        &replica_spec(&c, &name, "strata_replica.one", &net.subnets[0].0),
    )
    .await
    .unwrap();
    let t_one = t.elapsed();

    let t = Instant::now();
    let mut hs = Vec::new();
    for i in 0..10 {
        let clients = clients.clone();
        let s = replica_spec(
            &c,
            &name,
            &format!("strata_replica.n{i}"),
            &net.subnets[0].0,
        );
        hs.push(tokio::spawn(async move {
            let start = Instant::now();
            let r = aws::create_replica(&clients, &s).await.unwrap();
            (start, Instant::now(), r)
        }));
    }
    let mut res = Vec::new();
    for h in hs {
        res.push(h.await.unwrap());
    }
    let t_ten = t.elapsed();
    let latest_start = res.iter().map(|r| r.0).max().unwrap();
    let earliest_end = res.iter().map(|r| r.1).min().unwrap();
    eprintln!(
        "FIGURES: 1 replica {t_one:?}; 10 replicas concurrently {t_ten:?} ({:.1}x one)",
        t_ten.as_secs_f64() / t_one.as_secs_f64()
    );
    assert!(
        latest_start < earliest_end,
        "the ten creates did not all overlap"
    );
    let ids: std::collections::BTreeSet<_> = res.iter().map(|r| r.2.instance_id.clone()).collect();
    assert_eq!(ids.len(), 10);

    futures::future::try_join_all(
        res.iter()
            .map(|r| r.2.instance_id.clone())
            .chain([one.instance_id.clone()])
            .map(|id| {
                let clients = clients.clone();
                async move { aws::delete_replica(&clients, None, &id, TIMEOUT).await }
            }),
    )
    .await
    .unwrap();
    aws::delete_cluster(&clients, None, &name, TIMEOUT)
        .await
        .unwrap();
    assert!(tagged_leftovers(&rc, &name).await.is_empty());
    drop_network(&rc, &net).await;
}

/// All four public-access blocks on, and SSE-S3 (AES256) as the default encryption.
async fn assert_bucket_private_and_encrypted(rc: &RegionClients, bucket: &str) {
    let pab = rc
        .s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
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
        "bucket {bucket}: {pab:?}"
    );
    let enc = rc
        .s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let algo = enc
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().clone());
    assert_eq!(
        algo,
        Some(aws_sdk_s3::types::ServerSideEncryption::Aes256),
        "bucket {bucket}"
    );
}

/// The agent bucket: made private, encrypted and tagged; found again by name and tags; a bucket
/// of that name with other tags is refused (never adopted) and left alone on delete.
#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn agent_bucket_is_found_by_its_tags_and_never_adopted() {
    use strata_provider::aws::artifact::{self, AgentBuild};
    let clients = clients().await;
    let rc = clients.home().await.unwrap();
    let cluster = unique("b");
    let resource = format!("strata_cluster.{cluster}");
    let account = clients.account_id().await.unwrap();
    let bucket = strata_topology::agent_bucket_name(&cluster, &account, &rc.region);
    let tags = aws::build_tags(
        &BTreeMap::new(),
        &BTreeMap::new(),
        &aws::ObjectTags {
            cluster: &cluster,
            resource: &resource,
            role: Some("agent-artifacts"),
            creation_token: "tok",
            name: None,
        },
    );
    assert!(
        artifact::ensure_bucket(&rc, &bucket, &cluster, &resource, &tags)
            .await
            .unwrap(),
        "first call creates"
    );
    // A new bucket is private and encrypted by S3's defaults (the create puts neither).
    assert_bucket_private_and_encrypted(&rc, &bucket).await;
    // Someone opens it up; the next ensure finds it and closes it again.
    rc.s3
        .put_public_access_block()
        .bucket(&bucket)
        .public_access_block_configuration(
            aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                .block_public_acls(false)
                .ignore_public_acls(false)
                .block_public_policy(false)
                .restrict_public_buckets(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    rc.s3
        .put_bucket_encryption()
        .bucket(&bucket)
        .server_side_encryption_configuration(
            aws_sdk_s3::types::ServerSideEncryptionConfiguration::builder()
                .rules(
                    aws_sdk_s3::types::ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            aws_sdk_s3::types::ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        !artifact::ensure_bucket(&rc, &bucket, &cluster, &resource, &tags)
            .await
            .unwrap(),
        "second call finds it"
    );
    assert_bucket_private_and_encrypted(&rc, &bucket).await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata-agent");
    std::fs::write(&path, b"\x7fELF not really an agent").unwrap();
    let build = AgentBuild {
        arch: strata_topology::Arch::X86_64,
        path,
        sha256: "0".repeat(64),
        size: 24,
    };
    let key = strata_topology::agent_object_key("0.0.0", build.arch, &build.sha256);
    assert!(
        artifact::ensure_object(&rc, &bucket, &key, &build, &tags, false)
            .await
            .unwrap()
    );
    assert!(
        !artifact::ensure_object(&rc, &bucket, &key, &build, &tags, false)
            .await
            .unwrap(),
        "content-addressed: an existing key is not uploaded again"
    );
    let got = rc
        .s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"\x7fELF not really an agent"
    );

    // Another resource's name on the same bucket: refused, and not deleted by it.
    let e = artifact::ensure_bucket(&rc, &bucket, &cluster, "strata_cluster.other", &tags)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not tagged"), "{e}");
    artifact::delete_bucket(&rc, &bucket, "someone-else", "strata_cluster.someone-else")
        .await
        .unwrap();
    assert!(artifact::bucket_exists(&rc, &bucket).await.unwrap());

    // Versioning turned on outside Strata: an overwritten key keeps its old version and a
    // deleted key leaves a delete marker. The delete still empties and removes the bucket.
    rc.s3
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for body in ["one", "two"] {
        rc.s3
            .put_object()
            .bucket(&bucket)
            .key("lease.json")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    rc.s3
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    artifact::delete_bucket(&rc, &bucket, &cluster, &resource)
        .await
        .unwrap();
    assert!(!artifact::bucket_exists(&rc, &bucket).await.unwrap());
    // Deleting again is fine.
    artifact::delete_bucket(&rc, &bucket, &cluster, &resource)
        .await
        .unwrap();
}

/// The roll lock under contention: four drivers find the same stale lock (its holder died
/// with a killed apply) at once; exactly one takes it over, the others wait and give up
/// naming the winner; the winner's release frees it for the next.
#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn roll_lock_stale_takeover_has_one_winner() {
    use strata_topology::failover::LeaseRef;
    use strata_topology::roll::{RollLock, parse_roll_lock, render_roll_lock, roll_lock_key};
    let c = clients().await;
    let rc = c.home().await.unwrap();
    let bucket = unique("strata-rolllock-");
    rc.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let lr = LeaseRef {
        bucket: bucket.clone(),
        key_prefix: "failover/lockt".into(),
        region: "us-east-1".into(),
    };
    let key = roll_lock_key(&lr.key_prefix);
    let stale = RollLock {
        version: 1,
        holder: "strata_cluster.killed".into(),
        acquired_at_ms: 1,
        expires_at_ms: 2,
    };
    rc.s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(render_roll_lock(&stale).into_bytes().into())
        .send()
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for i in 0..4 {
        let (s3, lr) = (rc.s3.clone(), lr.clone());
        tasks.push(tokio::spawn(async move {
            let me = format!("driver-{i}");
            let r = aws::roll::acquire_roll_lock(
                &s3,
                &lr,
                &me,
                Duration::from_secs(600),
                Duration::from_secs(3),
            )
            .await;
            (me, r)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (me, r) = t.await.unwrap();
        match r {
            Ok(()) => winners.push(me),
            Err(e) => assert!(e.to_string().contains("held by"), "{me}: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "drivers holding the lock: {winners:?}");
    let held = rc
        .s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let held = parse_roll_lock(&held).unwrap();
    assert_eq!(held.holder, winners[0]);

    // Released by its holder, the next driver takes it at once.
    aws::roll::release_roll_lock(&rc.s3, &lr, &winners[0])
        .await
        .unwrap();
    aws::roll::acquire_roll_lock(
        &rc.s3,
        &lr,
        "driver-next",
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    aws::roll::release_roll_lock(&rc.s3, &lr, "driver-next")
        .await
        .unwrap();
    rc.s3.delete_bucket().bucket(&bucket).send().await.unwrap();
}
