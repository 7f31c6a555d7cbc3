//! Failover harness: a cluster of real `mariadbd` processes, each with a real `strata-agent
//! run` process, the lease in LocalStack S3 and the writer record in LocalStack Route 53.
//!
//! Every node has its own loopback address (127.0.1.N) on one common port, served by a TCP
//! proxy in this process that forwards to the node's `mariadbd`; its agent reaches AWS through
//! a second proxy. Cutting both proxies is the node's network cut: connections stall (no
//! reset), new ones hang, as with dropped packets; on heal, connections from before the cut
//! are closed. Writers resolve the writer through the Route 53 API (the A record) and record
//! every commit the server acknowledged.
#![allow(dead_code)]

use crate::common::{self, ADMIN_PASSWORD, Node, agent_bin};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_topology::failover::{Lease, default_key_prefix, parse_lease};
use strata_topology::{
    Account, CredentialRef, DnsRecords, Failover, FailoverTiming, LeaseRef, ReplicationMode, Role,
    SourceEndpoint,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) fn endpoint() -> String {
    std::env::var("LOCALSTACK_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

fn endpoint_addr() -> SocketAddr {
    let e = endpoint();
    let hostport = e
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .replace("localhost", "127.0.0.1");
    hostport
        .parse()
        .expect("LOCALSTACK_ENDPOINT must be http://127.0.0.1:PORT")
}

/// Test timings: short, so 20 failovers fit in about two minutes.
pub(crate) fn test_timing() -> FailoverTiming {
    FailoverTiming {
        heartbeat_ms: 150,
        lease_ms: 1_200,
        clock_margin_ms: 300,
        detect_misses: 3,
    }
}

// ---------------------------------------------------------------- proxy

pub(crate) struct Proxy {
    pub listen: SocketAddr,
    cut: watch::Sender<bool>,
    generation: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(listen: SocketAddr, target: SocketAddr) -> Proxy {
        let l = TcpListener::bind(listen).await.expect("proxy bind");
        let listen = l.local_addr().unwrap();
        let (cut, rx) = watch::channel(false);
        let generation = Arc::new(AtomicU64::new(0));
        let g = generation.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(pipe(s, target, rx.clone(), g.clone()));
            }
        });
        Proxy {
            listen,
            cut,
            generation,
            task,
        }
    }

    pub(crate) fn cut(&self) {
        let _ = self.cut.send(true);
    }

    /// Ends the cut; connections from before it are closed.
    pub(crate) fn heal(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let _ = self.cut.send(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_uncut(rx: &mut watch::Receiver<bool>) {
    while *rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn pipe(
    a: TcpStream,
    target: SocketAddr,
    mut rx: watch::Receiver<bool>,
    generation: Arc<AtomicU64>,
) {
    let born = generation.load(Ordering::SeqCst);
    wait_uncut(&mut rx).await;
    if generation.load(Ordering::SeqCst) != born {
        return;
    }
    let Ok(b) = TcpStream::connect(target).await else {
        return;
    };
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let g2 = generation.clone();
    let rx2 = rx.clone();
    // Both directions to their end, with half-closes, as TCP does when a process dies: its
    // last request still reaches the server whole (closing both at once made LocalStack
    // keep a broken half-written object).
    tokio::join!(
        copy(ar, bw, rx, generation, born),
        copy(br, aw, rx2, g2, born)
    );
}

async fn copy(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<bool>,
    generation: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        wait_uncut(&mut rx).await;
        if generation.load(Ordering::SeqCst) != born {
            return;
        }
        let n = tokio::select! {
            r = r.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = w.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = rx.changed() => continue,
        };
        // Data read just as the cut began is held until the heal (which then drops it).
        wait_uncut(&mut rx).await;
        if generation.load(Ordering::SeqCst) != born {
            return;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------- cluster

pub(crate) struct CNode {
    pub node: Node,
    pub ip: String,
    pub agent: Option<Child>,
    pub sql: Proxy,
    pub aws: Proxy,
    pub stopped: bool,
}

impl CNode {
    pub(crate) fn id(&self) -> String {
        self.node.cfg.node_id.clone()
    }
    fn pids(&self) -> Vec<u32> {
        let mut v = Vec::new();
        if let Some(c) = &self.agent {
            v.push(c.id());
        }
        if let Some(c) = &self.node.child {
            v.push(c.id());
        }
        v
    }
    pub(crate) fn start_agent(&mut self) {
        assert!(self.agent.is_none());
        let d = self.node.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("agent.log"))
            .unwrap();
        let child = Command::new(agent_bin())
            .arg("run")
            .arg("--config")
            .arg(self.node.config_path())
            .arg("--socket")
            .arg(self.node.socket())
            .arg("--credential-file")
            .arg(self.node.password_path())
            .arg("--admin-credential-file")
            .arg(self.node.admin_password_path())
            .arg("--no-node-tags")
            .arg("--interval")
            .arg("5")
            .arg("--restart-command")
            .arg(self.node.write_restart_script())
            .env("AWS_ENDPOINT_URL", format!("http://{}", self.aws.listen))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(
                "RUST_LOG",
                std::env::var("FAILOVER_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn strata-agent");
        self.agent = Some(child);
    }
    /// Node loss: SIGKILL to the agent and the server.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.node.crash();
    }
    pub(crate) fn restart(&mut self) {
        self.node.start();
        self.start_agent();
    }
    pub(crate) fn sigstop(&mut self) {
        for p in self.pids() {
            unsafe { libc::kill(p as i32, libc::SIGSTOP) };
        }
        self.stopped = true;
    }
    pub(crate) fn sigcont(&mut self) {
        for p in self.pids() {
            unsafe { libc::kill(p as i32, libc::SIGCONT) };
        }
        self.stopped = false;
    }
    pub(crate) fn cut(&self) {
        self.sql.cut();
        self.aws.cut();
    }
    pub(crate) fn heal(&self) {
        self.sql.heal();
        self.aws.heal();
    }
    pub(crate) fn agent_log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(self.node.dir.path().join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = s
            .lines()
            .filter(|l| !l.contains("storage segments not found"))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for CNode {
    fn drop(&mut self) {
        if self.stopped {
            self.sigcont();
        }
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A test that panics (a failed assertion or `expect`) prints every node's log tail and keeps
/// the whole logs (`dump_logs`), once, as the cluster goes.
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

pub(crate) struct Cluster {
    pub nodes: Vec<CNode>,
    pub port: u16,
    pub bucket: String,
    pub prefix: String,
    pub zone_id: String,
    pub writer_name: String,
    pub s3: aws_sdk_s3::Client,
    pub r53: aws_sdk_route53::Client,
    pub timing: FailoverTiming,
}

async fn aws_conf() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

/// A port free on 127.0.1.1 ..= 127.0.1.n.
fn common_port(n: usize) -> u16 {
    for _ in 0..100 {
        let p = common::free_port();
        let ok = (1..=n).all(|i| std::net::TcpListener::bind(format!("127.0.1.{i}:{p}")).is_ok());
        if ok {
            return p;
        }
    }
    panic!("no common free port");
}

impl Cluster {
    /// A source and `n - 1` replicas, semi-sync, agents running, everyone replicating.
    pub(crate) async fn start(n: usize, timing: FailoverTiming) -> Cluster {
        Cluster::start_with(n, 0, timing).await
    }

    /// [`Cluster::start`] plus `regional` region replicas (async over TLS, their own reader
    /// name, never candidates), numbered after the home nodes.
    pub(crate) async fn start_with(
        home: usize,
        regional: usize,
        timing: FailoverTiming,
    ) -> Cluster {
        let n = home + regional;
        let conf = aws_conf().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        let r53 = aws_sdk_route53::Client::new(&conf);
        let tag = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                % 1_000_000_000
        );
        let bucket = format!("strata-fo-{tag}");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "LocalStack S3 at {} (start it: scripts/localstack start): {}",
                    endpoint(),
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
        // LocalStack writes an unversioned key's PUT into the key's one backing file as the
        // body arrives: a PUT cut off mid-body (the agent killed while renewing its lease or
        // writing its member object) leaves the key's current object pointing at a truncated
        // file, and every later GET of it hangs waiting for bytes that never come, so the
        // lease could not be read by anyone again (seen in this test: `lease.json: timed
        // out` on every node until the end). S3 applies a PUT whole or not at all. With
        // versioning on, each PUT writes a new version's own file in LocalStack, so a cut PUT
        // leaves the current object intact, as S3 does. The agent's conditional writes and
        // listings behave the same on a versioned bucket.
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("turn versioning on for the lease bucket");
        let zone_name = format!("fo{tag}.strata.test");
        let zone = r53
            .create_hosted_zone()
            .name(&zone_name)
            .caller_reference(&tag)
            .send()
            .await
            .expect("LocalStack Route 53");
        let zone_id = zone
            .hosted_zone()
            .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
            .expect("zone id");
        let writer_name = format!("writer.{zone_name}");
        let reader_name = format!("reader.{zone_name}");
        let prefix = default_key_prefix(&format!("c{tag}"));
        let port = common_port(n);
        let mut nodes = Vec::new();
        for i in 0..n {
            let ip = format!("127.0.1.{}", i + 1);
            let role = if i == 0 {
                Role::Source
            } else if i < home {
                Role::Replica
            } else {
                Role::RegionReplica
            };
            let failover = Failover {
                lease: LeaseRef {
                    bucket: bucket.clone(),
                    key_prefix: prefix.clone(),
                    region: "us-east-1".into(),
                },
                dns: Some(DnsRecords {
                    zone_id: zone_id.clone(),
                    writer_name: writer_name.clone(),
                    reader_name: if role == Role::RegionReplica {
                        format!("reader-eu.{zone_name}")
                    } else {
                        reader_name.clone()
                    },
                    ttl: 1,
                }),
                timing,
                advertise: Some(SourceEndpoint {
                    host: ip.clone(),
                    port,
                }),
                stop_old_source: false,
                allow_async_fallback: false,
            };
            let name = format!("n{}", i + 1);
            let node = Node::new(|dir, p| {
                let mut cfg = common::node_config(
                    dir,
                    &name,
                    role,
                    (i + 1) as u32,
                    p,
                    None,
                    ReplicationMode::SemiSync,
                    10_000,
                );
                if role != Role::Source {
                    // The first hint only: the writer name, as the provider writes it.
                    cfg.source = Some(SourceEndpoint {
                        host: "127.0.1.1".into(),
                        port,
                    });
                }
                cfg.admin = Some(Account {
                    user: "strata_admin".into(),
                    credential: CredentialRef {
                        ssm_parameter: "/strata/test/admin-password".into(),
                        ssm_region: "us-east-1".into(),
                    },
                });
                cfg.failover = Some(failover);
                cfg
            });
            let target: SocketAddr = format!("127.0.0.1:{}", node.port()).parse().unwrap();
            let sql = Proxy::start(format!("{ip}:{port}").parse().unwrap(), target).await;
            let aws = Proxy::start("127.0.0.1:0".parse().unwrap(), endpoint_addr()).await;
            nodes.push(CNode {
                node,
                ip,
                agent: None,
                sql,
                aws,
                stopped: false,
            });
        }
        for n in nodes.iter_mut() {
            n.node.start();
        }
        let mut c = Cluster {
            nodes,
            port,
            bucket,
            prefix,
            zone_id,
            writer_name,
            s3,
            r53,
            timing,
        };
        c.nodes[0].start_agent();
        c.wait_lease(|l| l.holder.node_id == "n1", Duration::from_secs(60))
            .await;
        for i in 1..n {
            c.nodes[i].start_agent();
        }
        c.wait_replicating(&(1..n).collect::<Vec<_>>(), Duration::from_secs(90))
            .await;
        // The table the writers use, made through the writer.
        let mut conn = c.admin_conn(0).await.unwrap();
        conn.query_drop("CREATE DATABASE IF NOT EXISTS fo")
            .await
            .unwrap();
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS fo.t (id BIGINT PRIMARY KEY, srv INT NOT NULL) ENGINE=InnoDB",
        )
        .await
        .unwrap();
        c
    }

    pub(crate) fn idx(&self, node_id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id() == node_id)
            .unwrap_or_else(|| panic!("no node {node_id}"))
    }

    /// The lease as S3 holds it; None when there is none. A failed read (LocalStack slow on a
    /// loaded machine) is retried for up to 5 s rather than read as "no lease".
    pub(crate) async fn lease(&self) -> Option<Lease> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let read = self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(strata_topology::failover::lease_key(&self.prefix))
                .send()
                .await;
            match read {
                Ok(out) => {
                    if let Ok(body) = out.body.collect().await {
                        return parse_lease(&body.into_bytes()).ok();
                    }
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return None;
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn wait_lease(
        &self,
        pred: impl Fn(&Lease) -> bool,
        within: Duration,
    ) -> Lease {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.lease().await
                && pred(&l)
            {
                return l;
            }
            if Instant::now() > deadline {
                panic!(
                    "lease condition not met within {within:?}: {:?}",
                    self.lease().await
                );
            }
            // Every 100 ms, not faster: the agents' own lease calls (one lease read and one
            // member write per heartbeat each) must not queue behind the test's in LocalStack.
            // Failover times are measured from the writers' acks, not from this poll.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prints the tail of every agent's log and keeps the whole agent and server logs in
    /// `$TMPDIR/strata-failover-logs/<pid>-<node>-<kind>-<n>.log` (the node folders go with
    /// the test).
    pub(crate) fn dump_logs(&self) {
        static DUMPS: AtomicU64 = AtomicU64::new(0);
        let n_dump = DUMPS.fetch_add(1, Ordering::SeqCst);
        let keep = std::env::temp_dir().join("strata-failover-logs");
        let _ = std::fs::create_dir_all(&keep);
        for n in &self.nodes {
            eprintln!("==== {} agent log ====\n{}", n.id(), n.agent_log_tail(80));
            for (file, kind) in [("agent.log", "agent"), ("error.log", "server")] {
                let to = keep.join(format!(
                    "{}-{}-{kind}-{n_dump}.log",
                    std::process::id(),
                    n.id()
                ));
                if std::fs::copy(n.node.dir.path().join(file), &to).is_ok() {
                    eprintln!("(whole {kind} log kept in {})", to.display());
                }
            }
        }
    }

    /// A connection as the admin account (no READ_ONLY ADMIN: read_only stops it) through
    /// the node's proxy.
    pub(crate) async fn admin_conn(&self, i: usize) -> Result<Conn, mysql_async::Error> {
        admin_conn_to(&self.nodes[i].ip, self.port).await
    }

    /// Waits until every node in `idx` replicates from the lease holder with both threads up.
    pub(crate) async fn wait_replicating(&self, idx: &[usize], within: Duration) {
        let deadline = Instant::now() + within;
        for &i in idx {
            loop {
                let lease = self.lease().await;
                let ok = async {
                    let l = lease?;
                    let mut c = self.nodes[i].node.try_root().await.ok()?;
                    let st: Vec<mysql_async::Row> = c.query("SHOW SLAVE STATUS").await.ok()?;
                    let r = st.first()?;
                    let io: String = r.get("Slave_IO_Running")?;
                    let sql: String = r.get("Slave_SQL_Running")?;
                    let host: String = r.get("Master_Host")?;
                    Some(io == "Yes" && sql == "Yes" && host == l.holder.host)
                }
                .await;
                if ok == Some(true) {
                    break;
                }
                if Instant::now() > deadline {
                    panic!("{} not replicating from the holder", self.nodes[i].id());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Runs the agent CLI (`status`, `switchover`) on node `i` with AWS pointed at LocalStack;
    /// returns (success, stdout, stderr).
    pub(crate) fn agent_cli(&self, i: usize, sub: &str, extra: &[&str]) -> (bool, String, String) {
        let n = &self.nodes[i].node;
        let out = Command::new(agent_bin())
            .arg(sub)
            .arg("--config")
            .arg(n.config_path())
            .arg("--socket")
            .arg(n.socket())
            .arg("--credential-file")
            .arg(n.password_path())
            .arg("--admin-credential-file")
            .arg(n.admin_password_path())
            .args(extra)
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The writer record's address, through the Route 53 API.
    pub(crate) async fn writer_ip(&self) -> Option<String> {
        resolve_writer(&self.r53, &self.zone_id, &self.writer_name).await
    }

    /// Row ids on node `i` (root over its socket).
    /// (gtid_binlog_pos, gtid_slave_pos, gtid_current_pos) of node `i`, for failure messages.
    pub(crate) async fn gtids_on(&self, i: usize) -> Option<(String, String, String)> {
        let mut c = self.nodes[i].node.try_root().await.ok()?;
        c.query_first("SELECT @@gtid_binlog_pos, @@gtid_slave_pos, @@gtid_current_pos")
            .await
            .ok()?
    }

    /// `XA RECOVER` and the open InnoDB transactions of node `i`, for failure messages.
    pub(crate) async fn open_transactions(&self, i: usize) -> String {
        let Ok(mut c) = self.nodes[i].node.try_root().await else {
            return "unreachable".into();
        };
        let xa: Vec<mysql_async::Row> = c.query("XA RECOVER").await.unwrap_or_default();
        let trx: Vec<(u64, String, String)> = c
            .query(
                "SELECT trx_id, trx_state, IFNULL(trx_query, '') FROM information_schema.INNODB_TRX",
            )
            .await
            .unwrap_or_default();
        format!("XA RECOVER: {} row(s); INNODB_TRX: {trx:?}", xa.len())
    }

    /// (id, srv) of the given rows on node `i`: which server ran each INSERT.
    pub(crate) async fn rows_origin(&self, i: usize, ids: &[&u64]) -> Vec<(u64, u32)> {
        let Ok(mut c) = self.nodes[i].node.try_root().await else {
            return Vec::new();
        };
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        if list.is_empty() {
            return Vec::new();
        }
        c.query(format!(
            "SELECT id, srv FROM fo.t WHERE id IN ({})",
            list.join(",")
        ))
        .await
        .unwrap_or_default()
    }

    pub(crate) async fn ids_on(&self, i: usize) -> BTreeSet<u64> {
        let mut c = self.nodes[i].node.root().await;
        let v: Vec<u64> = c.query("SELECT id FROM fo.t").await.unwrap_or_default();
        v.into_iter().collect()
    }
}

pub(crate) async fn admin_conn_to(ip: &str, port: u16) -> Result<Conn, mysql_async::Error> {
    let o = OptsBuilder::default()
        .ip_or_hostname(ip.to_string())
        .tcp_port(port)
        .user(Some("strata_admin"))
        .pass(Some(ADMIN_PASSWORD))
        .prefer_socket(false);
    match tokio::time::timeout(Duration::from_millis(800), Conn::new(o)).await {
        Ok(r) => r,
        Err(_) => Err(mysql_async::Error::Other("connect timeout".into())),
    }
}

/// The shortest time between two writer-record lookups of one test writer.
const RESOLVE_EVERY: Duration = Duration::from_millis(200);

pub(crate) async fn resolve_writer(
    r53: &aws_sdk_route53::Client,
    zone: &str,
    name: &str,
) -> Option<String> {
    let want = format!("{name}.");
    let out = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .start_record_name(&want)
        .start_record_type(aws_sdk_route53::types::RrType::A)
        .max_items(1)
        .send()
        .await
        .ok()?;
    let rs = out.resource_record_sets().first()?;
    if rs.name() != want {
        return None;
    }
    rs.resource_records().first().map(|r| r.value().to_string())
}

// ---------------------------------------------------------------- writers

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ack {
    pub id: u64,
    pub srv: u32,
    pub at: Instant,
}

/// Writers that resolve the writer record, insert rows and record what was acknowledged.
pub(crate) struct Writers {
    pub acks: Arc<Mutex<Vec<Ack>>>,
    pub errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    pub(crate) fn start(c: &Cluster, n: usize) -> Writers {
        Writers::start_paced(c, n, Duration::ZERO)
    }

    /// Writers that pause `pause` after each acknowledged insert: a load the replicas' single
    /// SQL thread keeps up with (as fast as possible, they fall seconds behind on a loaded
    /// 2-core machine, and a roll waits for caught-up replicas).
    pub(crate) fn start_paced(c: &Cluster, n: usize, pause: Duration) -> Writers {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(1));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (acks, errors, stop, next) =
                (acks.clone(), errors.clone(), stop.clone(), next.clone());
            let (r53, zone, name, port) = (
                c.r53.clone(),
                c.zone_id.clone(),
                c.writer_name.clone(),
                c.port,
            );
            tasks.push(tokio::spawn(async move {
                // At most one Route 53 lookup per writer per RESOLVE_EVERY. Looking up again at
                // once after every failed write (as during a failover) sent LocalStack about 45
                // ListResourceRecordSets a second, whose cost left its S3 answering the agents'
                // lease calls too late: no lease could be renewed or taken, writes kept failing,
                // and the lookups kept coming (a CI run stalled 35 s that way). A real client
                // caches the answer for the record's TTL (5 s).
                let mut last_lookup: Option<Instant> = None;
                while !stop.load(Ordering::SeqCst) {
                    if let Some(t) = last_lookup {
                        let since = t.elapsed();
                        if since < RESOLVE_EVERY {
                            tokio::time::sleep(RESOLVE_EVERY - since).await;
                        }
                    }
                    last_lookup = Some(Instant::now());
                    let Some(ip) = resolve_writer(&r53, &zone, &name).await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let Ok(mut conn) = admin_conn_to(&ip, port).await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let srv: u32 = match conn.query_first("SELECT @@server_id").await {
                        Ok(Some(s)) => s,
                        _ => continue,
                    };
                    while !stop.load(Ordering::SeqCst) {
                        let id = next.fetch_add(1, Ordering::SeqCst);
                        let r = tokio::time::timeout(
                            Duration::from_secs(2),
                            conn.exec_drop(
                                "INSERT INTO fo.t (id, srv) VALUES (?, @@server_id)",
                                (id,),
                            ),
                        )
                        .await;
                        match r {
                            Ok(Ok(())) => {
                                acks.lock().unwrap().push(Ack {
                                    id,
                                    srv,
                                    at: Instant::now(),
                                });
                                if !pause.is_zero() {
                                    tokio::time::sleep(pause).await;
                                }
                            }
                            _ => {
                                errors.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }));
        }
        Writers {
            acks,
            errors,
            stop,
            tasks,
        }
    }

    pub(crate) fn acked(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// First ack from server `srv` after `t`.
    pub(crate) async fn wait_ack_from(
        &self,
        srv: u32,
        after: Instant,
        within: Duration,
    ) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(a) = self
                .acks
                .lock()
                .unwrap()
                .iter()
                .find(|a| a.srv == srv && a.at > after)
            {
                return Some(a.at);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.acks.lock().unwrap().clone()
    }
}

/// A client pinned to one node (no DNS): after that node is fenced, none of its writes may
/// succeed.
pub(crate) struct Pinned {
    pub successes_after: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Pinned {
    /// Keeps inserting on `ip` and counts successes after `armed` is set.
    pub(crate) fn start(ip: String, port: u16, armed: Arc<AtomicBool>, base_id: u64) -> Pinned {
        let successes_after = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (successes_after.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut id = base_id;
            while !st.load(Ordering::SeqCst) {
                if let Ok(mut c) = admin_conn_to(&ip, port).await {
                    while !st.load(Ordering::SeqCst) {
                        id += 1;
                        let r = tokio::time::timeout(
                            Duration::from_secs(1),
                            c.exec_drop(
                                "INSERT INTO fo.t (id, srv) VALUES (?, @@server_id)",
                                (id,),
                            ),
                        )
                        .await;
                        match r {
                            Ok(Ok(())) => {
                                if armed.load(Ordering::SeqCst) {
                                    s.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            _ => break,
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Pinned {
            successes_after,
            stop,
            task,
        }
    }

    pub(crate) async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
        self.successes_after.load(Ordering::SeqCst)
    }
}

/// Split-brain windows in an ack history: in ack order, every change of the acknowledging
/// server must be a failover (epoch change). More changes than failovers means two servers
/// took writes in the same period.
pub(crate) fn split_brain_windows(acks: &[Ack], failovers: u64) -> u64 {
    let mut v: Vec<&Ack> = acks.iter().collect();
    v.sort_by_key(|a| a.at);
    let mut switches = 0u64;
    let mut cur = None;
    for a in v {
        if cur.is_some_and(|c| c != a.srv) {
            switches += 1;
        }
        cur = Some(a.srv);
    }
    switches.saturating_sub(failovers)
}

/// Acknowledged ids missing from `present`.
pub(crate) fn lost(acks: &[Ack], present: &BTreeSet<u64>) -> Vec<u64> {
    acks.iter()
        .map(|a| a.id)
        .filter(|id| !present.contains(id))
        .collect()
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Per-run report line.
pub(crate) fn report(
    name: &str,
    failovers: u64,
    acked: usize,
    lost: usize,
    split: u64,
    times: &[Duration],
    extra: &str,
) {
    let mut t = times.to_vec();
    t.sort();
    eprintln!(
        "FAILOVER-REPORT {name}: failovers={failovers} acked_writes={acked} lost_acked_writes={lost} split_brain_windows={split} source_loss_to_first_write p50={:.0}ms p99={:.0}ms max={:.0}ms {extra}",
        pct(&t, 0.5).as_secs_f64() * 1000.0,
        pct(&t, 0.99).as_secs_f64() * 1000.0,
        t.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}
