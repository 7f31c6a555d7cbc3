//! The node-state tags against LocalStack's EC2: the tagging function on an instance made
//! with RunInstances, then `strata-agent run` itself on a real mariadbd tagging `ready` after
//! its first bootstrap and `failed` (with the reason) for a config no retry fixes.
//! Needs LocalStack at $LOCALSTACK_ENDPOINT (default http://127.0.0.1:4566) and mariadbd.

// The std Mutex guard serializes whole tests; holding it across awaits is the point.
#![allow(clippy::await_holding_lock)]

mod common;

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{Filter, InstanceType};
use common::*;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_agent::node_state::{MAX_TAG_VALUE, tag_node_state};
use strata_topology::{NodeState, ReplicationMode, Role, TAG_NODE_ERROR, TAG_NODE_STATE};

const AMI: &str = "ami-03cf127a";

fn endpoint() -> String {
    std::env::var("LOCALSTACK_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

fn client() -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

async fn require_localstack() {
    let addr = endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let up =
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await;
    assert!(
        matches!(up, Ok(Ok(_))),
        "LocalStack is not reachable at {}: start it with `scripts/localstack start`",
        endpoint()
    );
}

async fn new_instance(ec2: &aws_sdk_ec2::Client) -> String {
    let run = ec2
        .run_instances()
        .image_id(AMI)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances");
    run.instances()[0].instance_id().unwrap().to_string()
}

async fn tags(ec2: &aws_sdk_ec2::Client, instance: &str) -> BTreeMap<String, String> {
    let out = ec2
        .describe_tags()
        .filters(
            Filter::builder()
                .name("resource-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .expect("DescribeTags");
    out.tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn node_state_tags_on_an_instance() {
    require_localstack().await;
    let ec2 = client();
    let id = new_instance(&ec2).await;

    let long = format!("engine mismatch: {}", "é".repeat(300));
    tag_node_state(&ec2, &id, NodeState::Failed, Some(&long))
        .await
        .unwrap();
    let t = tags(&ec2, &id).await;
    assert_eq!(t.get(TAG_NODE_STATE).map(String::as_str), Some("failed"));
    let err = t.get(TAG_NODE_ERROR).expect("error tag");
    assert!(err.len() <= MAX_TAG_VALUE, "{}", err.len());
    assert!(err.starts_with("engine mismatch: éé"), "{err}");

    // Ready after a failure clears the stale reason.
    tag_node_state(&ec2, &id, NodeState::Ready, None)
        .await
        .unwrap();
    let t = tags(&ec2, &id).await;
    assert_eq!(t.get(TAG_NODE_STATE).map(String::as_str), Some("ready"));
    assert_eq!(t.get(TAG_NODE_ERROR), None, "{t:?}");

    // An EC2 endpoint that does not answer is an error to log, not a panic. (LocalStack
    // tags an instance id that does not exist without complaint, unlike AWS.)
    let nowhere = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build(),
    );
    let failed = tag_node_state(&nowhere, &id, NodeState::Ready, None).await;
    assert!(failed.is_err(), "{failed:?}");

    let _ = ec2.terminate_instances().instance_ids(&id).send().await;
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_agent(node: &Node, config: &std::path::Path, instance: &str) -> Running {
    run_agent_every(node, config, instance, 2)
}

fn run_agent_every(
    node: &Node,
    config: &std::path::Path,
    instance: &str,
    interval: u64,
) -> Running {
    let child = Command::new(agent_bin())
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(node.socket())
        .arg("--credential-file")
        .arg(node.password_path())
        .arg("--interval")
        .arg(interval.to_string())
        .arg("--instance-id")
        .arg(instance)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(node.dir.path().join(format!(
                "agent-{}.log",
                config.file_stem().unwrap().to_string_lossy()
            )))
            .unwrap(),
        )
        .spawn()
        .expect("spawn strata-agent run");
    Running(child)
}

async fn wait_state(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    want: &str,
    log: &std::path::Path,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = tags(ec2, id).await;
        if t.get(TAG_NODE_STATE).map(String::as_str) == Some(want) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "no {want} tag: {t:?}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LocalStack and mariadbd: run via scripts/test"]
async fn run_tags_ready_after_bootstrap_and_failed_for_a_permanent_error() {
    let _serial = serial();
    require_localstack().await;
    let ec2 = client();
    let mut src = Node::new(|d, p| {
        node_config(
            d,
            "src",
            Role::Source,
            1,
            p,
            None,
            ReplicationMode::Async,
            1000,
        )
    });
    src.start();

    let ok_id = new_instance(&ec2).await;
    {
        let _agent = run_agent(&src, &src.config_path(), &ok_id);
        let log = src.dir.path().join("agent-node.log");
        let t = wait_state(&ec2, &ok_id, "ready", &log).await;
        assert_eq!(t.get(TAG_NODE_ERROR), None);
    }

    // The same server under a config naming another server_id: the running server was not
    // started with it and there is no --restart-command. No retry fixes that.
    let bad_id = new_instance(&ec2).await;
    let mut bad = src.cfg.clone();
    bad.server_id = 99;
    bad.local.server_config_path = Some(src.dir.path().join("other.cnf").display().to_string());
    let bad_path = src.dir.path().join("bad.json");
    std::fs::write(&bad_path, bad.to_json()).unwrap();
    let agent = run_agent(&src, &bad_path, &bad_id);
    let log = src.dir.path().join("agent-bad.log");
    let t = wait_state(&ec2, &bad_id, "failed", &log).await;
    let reason = t.get(TAG_NODE_ERROR).expect("error tag");
    assert!(reason.contains("server_id"), "{reason}");
    // It keeps running after tagging failed (status and a fixed config need no reboot).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut agent = agent;
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent exited after a permanent error"
    );
    for id in [ok_id, bad_id] {
        let _ = ec2.terminate_instances().instance_ids(id).send().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LocalStack and mariadbd: run via scripts/test"]
async fn replica_booted_before_its_source_retries_soon_and_stays_a_replica() {
    let _serial = serial();
    require_localstack().await;
    let ec2 = client();
    let mut src = Node::new(|d, p| {
        node_config(
            d,
            "src",
            Role::Source,
            1,
            p,
            None,
            ReplicationMode::Async,
            1000,
        )
    });
    let sp = src.port();
    let mut r = Node::new(|d, p| {
        node_config(
            d,
            "r1",
            Role::Replica,
            2,
            p,
            Some(sp),
            ReplicationMode::Async,
            1000,
        )
    });
    r.start();
    let id = new_instance(&ec2).await;
    // A whole interval is 60 s; transient errors retry after 2, 4, 8 ... seconds.
    let _agent = run_agent_every(&r, &r.config_path(), &id, 60);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let t = tags(&ec2, &id).await;
    assert_eq!(
        t.get(TAG_NODE_STATE),
        None,
        "tagged before bootstrap: {t:?}"
    );
    let mut rc = r.root().await;
    let ro: u64 =
        mysql_async::prelude::Queryable::query_first(&mut rc, "SELECT @@GLOBAL.read_only")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(ro, 1, "a replica without its source must stay read-only");
    src.start();
    src.bootstrap();
    let up = Instant::now();
    let log = r.dir.path().join("agent-node.log");
    wait_state(&ec2, &id, "ready", &log).await;
    let waited = up.elapsed();
    eprintln!("replica ready {waited:.1?} after its source came up");
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    let st = r.status();
    assert_eq!(st["replication"]["io_thread"], "Yes", "{st:#}");
    let _ = ec2.terminate_instances().instance_ids(&id).send().await;
}
