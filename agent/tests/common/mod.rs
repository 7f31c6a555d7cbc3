//! Test harness: real `mariadbd` processes on 127.0.0.1, each with its own datadir, port,
//! socket and the config file the agent renders. Processes are killed by PID on drop.
#![allow(dead_code)]

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use strata_topology::{
    CredentialRef, Engine, LocalServer, NodeConfig, Replication, ReplicationMode, Role,
    SCHEMA_VERSION, SourceEndpoint, Storage, Tls,
};

pub(crate) const MARIADBD: &str = "/usr/sbin/mariadbd";
pub(crate) const PASSWORD: &str = "repl-s3cret'\\pw";
/// The admin account's password, with the characters an options file must escape.
pub(crate) const ADMIN_PASSWORD: &str = "adm\"in'#\\ pw";

/// Tests in one binary share two cores with everything else: one topology at a time.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn mariadbd() -> PathBuf {
    let p = std::env::var("STRATA_MARIADBD").unwrap_or_else(|_| MARIADBD.to_string());
    let p = PathBuf::from(p);
    assert!(
        p.exists(),
        "mariadbd not found at {} (install it with scripts/install-packages, or set STRATA_MARIADBD)",
        p.display()
    );
    p
}

/// An initialized, empty datadir, copied for each server. Made once per installed `mariadbd`
/// and kept in the temp folder under a name derived from the binary, so test binaries share one
/// (each used to leave its own 114 MB copy behind, run after run).
fn template_datadir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let bin = mariadbd();
        let meta = std::fs::metadata(&bin).expect("stat mariadbd");
        let stamp = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let tmp = std::env::temp_dir();
        let data = tmp.join(format!("strata-mariadb-template-{}-{stamp}", meta.len()));
        if data.join("mysql").is_dir() {
            return data;
        }
        // Built beside the final name and renamed into place, so a concurrent test binary or
        // an interrupted run never sees a half-initialized datadir.
        let build = tempfile::Builder::new()
            .prefix("strata-template-")
            .tempdir_in(&tmp)
            .expect("tempdir");
        let staged = build.path().join("data");
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", staged.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--user=root")
            .output()
            .expect("mariadb-install-db must be installed (scripts/install-packages)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Losing the race to another binary is fine: its copy is as good as ours, and ours is
        // removed with `build`.
        if std::fs::rename(&staged, &data).is_err() {
            assert!(
                data.join("mysql").is_dir(),
                "could not place the template datadir at {}",
                data.display()
            );
        }
        data
    })
}

/// The agent binary under test. STRATA_AGENT_BIN overrides it: worktrees that share one
/// CARGO_TARGET_DIR overwrite each other's `strata-agent`.
pub(crate) fn agent_bin() -> PathBuf {
    std::env::var_os("STRATA_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_strata-agent")))
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Node {
    pub dir: tempfile::TempDir,
    pub cfg: NodeConfig,
    pub child: Option<Child>,
}

#[allow(clippy::too_many_arguments)] // a test builder: one argument per NodeConfig knob
pub(crate) fn node_config(
    dir: &Path,
    name: &str,
    role: Role,
    server_id: u32,
    port: u16,
    source_port: Option<u16>,
    mode: ReplicationMode,
    ack_timeout_ms: u64,
) -> NodeConfig {
    NodeConfig {
        version: SCHEMA_VERSION,
        cluster_id: "test".into(),
        node_id: name.into(),
        node_name: name.into(),
        role,
        region: "us-east-1".into(),
        engine: Engine::Mariadb,
        engine_version: "10.11".into(),
        server_id,
        source: source_port.map(|p| SourceEndpoint {
            host: "127.0.0.1".into(),
            port: p,
        }),
        replication: Replication {
            mode,
            ack_count: 1,
            ack_timeout_ms,
            user: "strata_repl".into(),
            credential: CredentialRef {
                ssm_parameter: "/strata/test/replication-password".into(),
                ssm_region: "us-east-1".into(),
            },
        },
        local: LocalServer {
            port,
            socket: Some(dir.join("s.sock").display().to_string()),
            server_config_path: Some(dir.join("strata.cnf").display().to_string()),
        },
        tls: Tls {
            cert_file: dir.join("tls/server.crt").display().to_string(),
            key_file: dir.join("tls/server.key").display().to_string(),
            ca_file: None,
        },
        storage: Storage {
            device: "/dev/null".into(),
            mount_point: dir.join("data").display().to_string(),
            max_size_gib: 10,
            grow_at_percent: 80,
            grow_by_percent: 20,
            min_step_gib: 1,
        },
        admin: None,
        install: Default::default(),
        failover: None,
        engine_settings: BTreeMap::new(),
        backup: None,
        restore: None,
        tags: BTreeMap::new(),
    }
}

/// Where node datadirs go: memory (`/dev/shm`) when the machine has it, else the temp folder.
/// The faults these tests make are process faults (kill -9, SIGSTOP, a cut link), which a
/// file in memory survives exactly as one on disk; what memory removes is the fsync latency of
/// a disk shared with whatever else runs (a build beside the tests made replicas fall seconds
/// behind, and elections wait for them). `STRATA_TEST_NODE_DIR` chooses another place.
fn node_dir_root() -> PathBuf {
    if let Some(d) = std::env::var_os("STRATA_TEST_NODE_DIR") {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    let writable = shm.is_dir()
        && tempfile::Builder::new()
            .prefix("strata-probe-")
            .tempfile_in(shm)
            .is_ok();
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

impl Node {
    /// A node with a fresh datadir; `make` builds its config from (dir, port).
    pub(crate) fn new(make: impl FnOnce(&Path, u16) -> NodeConfig) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("strata-node-")
            .tempdir_in(node_dir_root())
            .unwrap();
        let port = free_port();
        let cfg = make(dir.path(), port);
        let st = Command::new("cp")
            .arg("-a")
            .arg(template_datadir())
            .arg(dir.path().join("data"))
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::write(dir.path().join("node.json"), cfg.to_json()).unwrap();
        std::fs::write(dir.path().join("password"), PASSWORD).unwrap();
        std::fs::write(dir.path().join("admin-password"), ADMIN_PASSWORD).unwrap();
        // What the image's first boot does before the server starts: the agent's files.
        strata_agent::prepare_server_files(&cfg).unwrap();
        Node {
            dir,
            cfg,
            child: None,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.cfg.local.port
    }
    pub(crate) fn socket(&self) -> String {
        self.cfg.local.socket.clone().unwrap()
    }
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("node.json")
    }
    pub(crate) fn password_path(&self) -> PathBuf {
        self.dir.path().join("password")
    }
    pub(crate) fn admin_password_path(&self) -> PathBuf {
        self.dir.path().join("admin-password")
    }

    /// The server's arguments (after the program).
    pub(crate) fn server_args(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            format!("--defaults-file={}", self.cfg.server_config_path()),
            format!("--datadir={}", d.join("data").display()),
            format!("--port={}", self.port()),
            format!("--socket={}", self.socket()),
            format!("--pid-file={}", d.join("mariadbd.pid").display()),
            format!("--log-error={}", d.join("error.log").display()),
            "--bind-address=127.0.0.1".into(),
            "--user=root".into(),
            "--skip-name-resolve".into(),
            "--innodb-buffer-pool-size=16M".into(),
            "--innodb-log-file-size=16M".into(),
            "--performance-schema=OFF".into(),
        ]
    }

    /// A script that restarts this node's server the way `systemctl restart` does on a node:
    /// SIGTERM to the running server (by its PID file), wait until it is gone, start it again
    /// in the background. Given to the agent as `--restart-command`. The restarted server is no child
    /// of the test: [`Node::kill_by_pid_file`] stops it.
    pub(crate) fn write_restart_script(&self) -> PathBuf {
        let d = self.dir.path();
        let pid = d.join("mariadbd.pid");
        let args: Vec<String> = self
            .server_args()
            .iter()
            .map(|a| format!("'{a}'"))
            .collect();
        let script = format!(
            "#!/bin/sh\n\
             # Restart of the test server, with systemctl restart's outcome: 0 once the new\n\
             # server listens, 1 when it exits during startup (a setting it refuses).\n\
             pidf='{pid}'\n\
             sock='{sock}'\n\
             if [ -f \"$pidf\" ]; then\n\
               kill -TERM \"$(cat \"$pidf\")\" 2>/dev/null\n\
               # The server removes its PID file when it has shut down (kill -0 would still\n\
               # succeed on a zombie: the first server is the test's child).\n\
               i=0; while [ -f \"$pidf\" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n\
             fi\n\
             '{bin}' {args} </dev/null >>'{log}' 2>&1 &\n\
             pid=$!\n\
             i=0\n\
             while [ $i -lt 1200 ]; do\n\
               [ -S \"$sock\" ] && exit 0\n\
               st=$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)\n\
               if [ -z \"$st\" ] || [ \"$st\" = Z ]; then echo 'server exited during startup' >&2; exit 1; fi\n\
               sleep 0.05; i=$((i+1))\n\
             done\n\
             exit 1\n",
            pid = pid.display(),
            sock = self.socket(),
            bin = mariadbd().display(),
            args = args.join(" "),
            log = d.join("stderr.log").display(),
        );
        let path = d.join("restart-server.sh");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// SIGKILL to the server named by the PID file (one a restart script started).
    pub(crate) fn kill_by_pid_file(&self) {
        let pidf = self.dir.path().join("mariadbd.pid");
        if let Ok(p) = std::fs::read_to_string(&pidf)
            && let Ok(pid) = p.trim().parse::<i32>()
            && self.child.as_ref().is_none_or(|c| c.id() as i32 != pid)
            // Only a server of this node (a stale PID file may name a reused PID).
            && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains(&self.dir.path().display().to_string())
            })
        {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("stderr.log"))
            .unwrap();
        let child = Command::new(mariadbd())
            .args(self.server_args())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "mariadbd {} exited with {status}:\n{}",
                    self.cfg.node_name,
                    self.error_log_tail()
                );
            }
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd {} did not start:\n{}",
                self.cfg.node_name,
                self.error_log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn error_log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Clean shutdown (SIGTERM to our PID), waiting for exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Crash: SIGKILL to our PID.
    pub(crate) fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) async fn root(&self) -> Conn {
        self.try_root().await.unwrap()
    }

    /// For polling loops: a server that is restarting (a rebuild, a fenced node's kill of
    /// its clients) refuses or drops a connection for a moment; that is a "not yet".
    #[allow(dead_code)]
    pub(crate) async fn try_root(&self) -> Result<Conn, mysql_async::Error> {
        Conn::new(
            OptsBuilder::default()
                .socket(Some(self.socket()))
                .user(Some("root"))
                .prefer_socket(false),
        )
        .await
    }

    pub(crate) async fn as_user(&self, user: &str, pw: &str) -> Conn {
        Conn::new(
            OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(self.port())
                .user(Some(user))
                .pass(Some(pw))
                .prefer_socket(false),
        )
        .await
        .unwrap()
    }

    /// Runs the real binary with this node's config; returns (success, stdout, stderr).
    pub(crate) fn agent(&self, sub: &str, config: &Path, extra: &[&str]) -> (bool, String, String) {
        let out = Command::new(agent_bin())
            .arg(sub)
            .arg("--config")
            .arg(config)
            .arg("--socket")
            .arg(self.socket())
            .arg("--credential-file")
            .arg(self.password_path())
            .arg("--admin-credential-file")
            .arg(self.admin_password_path())
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `bootstrap` that must succeed; returns the report as JSON.
    pub(crate) fn bootstrap(&self) -> serde_json::Value {
        let (ok, out, err) = self.agent("bootstrap", &self.config_path(), &[]);
        assert!(
            ok,
            "bootstrap of {} failed:\n{err}\n{out}",
            self.cfg.node_name
        );
        serde_json::from_str(&out).unwrap()
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        let (ok, out, err) = self.agent("status", &self.config_path(), &[]);
        assert!(ok, "status of {} failed:\n{err}", self.cfg.node_name);
        serde_json::from_str(&out).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_by_pid_file();
        self.crash();
    }
}

/// Steps of a bootstrap report that changed something.
pub(crate) fn changes(report: &serde_json::Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["changed"].as_bool() == Some(true))
        .map(|s| format!("{}: {}", s["step"], s["detail"]))
        .collect()
}

pub(crate) async fn count(conn: &mut Conn, table: &str) -> u64 {
    conn.query_first::<u64, _>(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .unwrap()
        .unwrap()
}

/// Polls until `table` has `n` rows on `node`, or panics after `within`.
pub(crate) async fn wait_rows(node: &Node, table: &str, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    let mut conn = node.root().await;
    loop {
        let have = conn
            .query_first::<u64, _>(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
        if have == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {have} rows in {table}, expected {n}",
            node.cfg.node_name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
