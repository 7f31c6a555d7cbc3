//! Bootstrap: turns a running server into its node's part of the topology, and leaves a node
//! that is already right alone. Everything that can fail for a bad config (credential, the
//! source being reachable and accepting it, a duplicate server_id, the wrong engine) is
//! checked before the first change, so a refused bootstrap leaves the node as it was.

use crate::credential::{Credentials, Secret};
use crate::engine::{self, EngineSql, LinkSpec, ReplicaLink, global_privileges, same_value};
use crate::error::AgentError;
use crate::files;
use crate::seed;
use crate::sql::{self, LocalTarget};
use mysql_async::Conn;
use serde::Serialize;
use std::time::Duration;
use strata_topology::{NodeConfig, Role};

#[derive(Debug, Clone)]
pub struct Options {
    pub local: LocalTarget,
    /// Run when the config file changed or the server was not started with it, e.g.
    /// `systemctl restart mariadb`. Without it such a node is an error, not a silent restart.
    pub restart_command: Option<Vec<String>>,
    pub connect_timeout: Duration,
    /// How long to wait for a replica's threads to run after starting them.
    pub replica_start_timeout: Duration,
    /// Leave the read-only variables as they are (a source being promoted: it becomes
    /// writable only after semi-sync is on, which the failover controller does last).
    pub hold_read_only: bool,
}

impl Options {
    pub fn new(local: LocalTarget) -> Options {
        Options {
            local,
            restart_command: None,
            connect_timeout: Duration::from_secs(5),
            replica_start_timeout: Duration::from_secs(30),
            hold_read_only: false,
        }
    }
}

/// One thing bootstrap checked, and whether it had to change it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Step {
    pub step: String,
    pub changed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub node: String,
    pub role: Role,
    pub steps: Vec<Step>,
}

impl Report {
    pub fn changes(&self) -> usize {
        self.steps.iter().filter(|s| s.changed).count()
    }
    fn push(&mut self, step: &str, changed: bool, detail: impl Into<String>) {
        self.steps.push(Step {
            step: step.to_string(),
            changed,
            detail: detail.into(),
        });
    }
}

struct Ctx<'a> {
    cfg: &'a NodeConfig,
    eng: &'static dyn EngineSql,
    password: Secret,
    admin_password: Option<Secret>,
}

pub async fn bootstrap(
    cfg: &NodeConfig,
    creds: &Credentials,
    opts: &Options,
) -> Result<Report, AgentError> {
    cfg.validate()?;
    let eng = engine::for_engine(cfg.engine);
    let mut report = Report {
        node: cfg.node_name.clone(),
        role: cfg.role,
        steps: Vec::new(),
    };

    // --- checks: nothing below changes the node until they all pass ---
    let password = creds.replication_password(cfg).await?;
    let admin_password = creds.admin_password(cfg).await?;
    let ctx = Ctx {
        cfg,
        eng,
        password,
        admin_password,
    };
    let mut local = connect_local(&ctx, opts).await?;
    let version = sql::scalar(&mut local, "SELECT VERSION()", "reading the server version")
        .await?
        .unwrap_or_default();
    if !eng.recognizes_version(&version) {
        return Err(AgentError::EngineMismatch {
            configured: cfg.engine,
            found: version,
        });
    }
    check_local_replica_hosts(&ctx, &mut local).await?;
    if cfg.role.is_replica() {
        check_source(&ctx, opts).await?;
    }

    // --- files the server reads at start ---
    let prepared = files::prepare_server_files(cfg)?;
    report.push(
        "tls_material",
        prepared.tls_generated,
        if prepared.tls_generated {
            format!(
                "generated a self-signed certificate at {}",
                cfg.tls.cert_file
            )
        } else {
            format!("{} present", cfg.tls.cert_file)
        },
    );
    report.push(
        "server_config_file",
        prepared.config_written,
        cfg.server_config_path(),
    );
    let mismatches = static_mismatches(&ctx, &mut local).await?;
    if prepared.config_written || prepared.tls_generated || !mismatches.is_empty() {
        if mismatches.is_empty() {
            // The file changed but the running server already has what matters; the next
            // restart picks the file up.
            report.push("static_settings", false, "running server matches");
        } else if let Some(cmd) = &opts.restart_command {
            drop(local);
            restart(cmd).await?;
            local = wait_for_local(&ctx, opts).await?;
            let left = static_mismatches(&ctx, &mut local).await?;
            if !left.is_empty() {
                return Err(AgentError::StaticSettings {
                    path: cfg.server_config_path().to_string(),
                    mismatches: left.join(", "),
                });
            }
            report.push(
                "static_settings",
                true,
                "restarted the server with the new config",
            );
        } else {
            return Err(AgentError::StaticSettings {
                path: cfg.server_config_path().to_string(),
                mismatches: mismatches.join(", "),
            });
        }
    } else {
        report.push("static_settings", false, "running server matches");
    }

    // --- run-time configuration ---
    for (plugin, lib) in eng.required_plugins(cfg) {
        let loaded = sql::scalar(&mut local, &eng.plugin_loaded_sql(plugin), "plugin check")
            .await?
            .is_some_and(|n| n != "0");
        if !loaded {
            sql::exec(
                &mut local,
                &eng.install_plugin_sql(plugin, lib),
                "INSTALL PLUGIN",
            )
            .await?;
        }
        report.push(&format!("plugin {plugin}"), !loaded, lib);
    }
    if cfg.role == Role::Source {
        ensure_replication_user(&ctx, &mut local, &mut report).await?;
    }
    ensure_admin_account(&ctx, &mut local, &mut report).await?;
    let semi_replica_changed =
        apply_dynamic_settings(&ctx, &mut local, &mut report, opts.hold_read_only).await?;
    if cfg.role.is_replica() {
        ensure_replica_link(&ctx, &mut local, &mut report, semi_replica_changed, opts).await?;
    }
    let _ = local.disconnect().await;
    Ok(report)
}

async fn connect_local(ctx: &Ctx<'_>, opts: &Options) -> Result<Conn, AgentError> {
    sql::connect_local(&opts.local, opts.connect_timeout)
        .await
        .map_err(|reason| AgentError::LocalConnect {
            engine: ctx.cfg.engine,
            target: opts.local.describe(),
            reason,
        })
}

async fn wait_for_local(ctx: &Ctx<'_>, opts: &Options) -> Result<Conn, AgentError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match connect_local(ctx, opts).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn restart(cmd: &[String]) -> Result<(), AgentError> {
    let Some((prog, args)) = cmd.split_first() else {
        return Err(AgentError::Restart("empty command".into()));
    };
    let status = tokio::process::Command::new(prog)
        .args(args)
        .status()
        .await
        .map_err(|e| AgentError::Restart(format!("{prog}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(AgentError::Restart(format!(
            "{} exited with {status}",
            cmd.join(" ")
        )))
    }
}

/// A replica registered on this server with our server_id, under another name, is a twin.
async fn check_local_replica_hosts(ctx: &Ctx<'_>, conn: &mut Conn) -> Result<(), AgentError> {
    let hosts = sql::rows(conn, ctx.eng.replica_hosts_sql(), "listing replicas").await?;
    find_twin(ctx, &hosts, "a replica of this node")
}

fn find_twin(ctx: &Ctx<'_>, hosts: &[sql::TextRow], whose: &str) -> Result<(), AgentError> {
    let id_col = ctx.eng.replica_hosts_server_id_column();
    for h in hosts {
        let id = h.get(id_col).cloned().flatten().unwrap_or_default();
        let host = h.get("Host").cloned().flatten().unwrap_or_default();
        if id == ctx.cfg.server_id.to_string() && host != ctx.cfg.node_name {
            return Err(AgentError::DuplicateServerId {
                server_id: ctx.cfg.server_id,
                holder: format!("{whose} reporting as {host:?}"),
            });
        }
    }
    Ok(())
}

/// Replicas only: the source answers, accepts the credential, and has another server_id,
/// as do its other replicas.
async fn check_source(ctx: &Ctx<'_>, opts: &Options) -> Result<(), AgentError> {
    let Some(src) = &ctx.cfg.source else {
        return Ok(());
    };
    let tls = ctx.cfg.role == Role::RegionReplica;
    let mut conn = sql::connect_remote(
        &src.host,
        src.port,
        &ctx.cfg.replication.user,
        ctx.password.expose(),
        tls,
        ctx.cfg.tls.ca_file.as_deref(),
        opts.connect_timeout,
    )
    .await
    .map_err(|reason| {
        if sql::is_access_denied(&reason) {
            AgentError::SourceAuth {
                host: src.host.clone(),
                port: src.port,
                user: ctx.cfg.replication.user.clone(),
                reason,
            }
        } else {
            AgentError::SourceUnreachable {
                host: src.host.clone(),
                port: src.port,
                reason,
            }
        }
    })?;
    let source_id = sql::scalar(
        &mut conn,
        "SELECT @@GLOBAL.server_id",
        "reading the source's server_id",
    )
    .await?
    .unwrap_or_default();
    if source_id == ctx.cfg.server_id.to_string() {
        return Err(AgentError::DuplicateServerId {
            server_id: ctx.cfg.server_id,
            holder: format!("the source {}:{}", src.host, src.port),
        });
    }
    // Needs a privilege the replication user has on Strata-made sources; elsewhere skip.
    if let Ok(hosts) = sql::rows(&mut conn, ctx.eng.replica_hosts_sql(), "listing replicas").await {
        find_twin(ctx, &hosts, "another replica of the source")?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

async fn static_mismatches(ctx: &Ctx<'_>, conn: &mut Conn) -> Result<Vec<String>, AgentError> {
    let mut out = Vec::new();
    for (var, wanted) in ctx.eng.static_settings(ctx.cfg) {
        let have = sql::scalar(conn, &ctx.eng.read_global_sql(var), var)
            .await?
            .unwrap_or_default();
        if !same_value(&have, &wanted) {
            out.push(format!("{var} is {have:?}, wants {wanted:?}"));
        }
    }
    Ok(out)
}

/// Returns whether the replica-side semi-sync switch changed (the IO thread must reconnect).
async fn apply_dynamic_settings(
    ctx: &Ctx<'_>,
    conn: &mut Conn,
    report: &mut Report,
    hold_read_only: bool,
) -> Result<bool, AgentError> {
    let mut semi_replica_changed = false;
    for (var, wanted) in ctx.eng.dynamic_settings(ctx.cfg) {
        if hold_read_only && ctx.eng.read_only_vars().contains(&var) {
            continue;
        }
        let have = sql::scalar(conn, &ctx.eng.read_global_sql(var), var)
            .await?
            .unwrap_or_default();
        let change = !same_value(&have, &wanted);
        if change {
            sql::exec(
                conn,
                &ctx.eng.set_global_sql(var, &wanted),
                &format!("SET GLOBAL {var}"),
            )
            .await?;
            if var.starts_with("rpl_semi_sync_slave") || var.starts_with("rpl_semi_sync_replica") {
                semi_replica_changed = true;
            }
        }
        report.push(
            &format!("set {var}"),
            change,
            if change {
                format!("{have} -> {wanted}")
            } else {
                wanted.clone()
            },
        );
    }
    Ok(semi_replica_changed)
}

async fn ensure_replication_user(
    ctx: &Ctx<'_>,
    conn: &mut Conn,
    report: &mut Report,
) -> Result<(), AgentError> {
    let user = &ctx.cfg.replication.user;
    let pw = ctx.password.expose();
    let eng = ctx.eng;
    let exists = sql::scalar(conn, &eng.user_exists_sql(user), "replication user check")
        .await?
        .is_some_and(|n| n != "0");
    if !exists {
        for stmt in eng.create_replication_user_sql(user, pw) {
            sql::exec(conn, &stmt, "creating the replication user").await?;
        }
        report.push("replication_user", true, format!("created {user}"));
        return Ok(());
    }
    let matches = match eng.credential_matches_sql(user, pw) {
        Some(q) => sql::scalar(conn, &q, "replication credential check")
            .await?
            .is_some_and(|n| n != "0"),
        None => false,
    };
    if !matches {
        for stmt in eng.set_password_sql(user, pw) {
            sql::exec(conn, &stmt, "setting the replication password").await?;
        }
    }
    report.push(
        "replication_user",
        !matches,
        if matches {
            format!("{user} present with the current credential")
        } else {
            format!("{user}: credential updated")
        },
    );
    let grants = grant_rows(conn, &eng.show_grants_sql(user)).await?;
    let held = global_privileges(&grants);
    // Sources made by an earlier agent lack the seed's read privileges: add what is missing.
    let has = eng
        .replication_privileges()
        .iter()
        .all(|p| held.contains(*p));
    if !has {
        sql::exec(conn, &eng.grant_replication_sql(user), "GRANT").await?;
    }
    report.push(
        "replication_grant",
        !has,
        eng.replication_privileges().join(", "),
    );
    Ok(())
}

async fn grant_rows(conn: &mut Conn, show: &str) -> Result<Vec<String>, AgentError> {
    let rows = sql::rows(conn, show, "SHOW GRANTS").await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.values().next().cloned().flatten())
        .collect())
}

/// The operator account, on every node and outside the binlog: each node holds it locally,
/// so a replica has it and keeps it when promoted, and changing it never waits for (or
/// replicates to) anyone. Its privileges cannot write on a read-only replica.
async fn ensure_admin_account(
    ctx: &Ctx<'_>,
    conn: &mut Conn,
    report: &mut Report,
) -> Result<(), AgentError> {
    let (Some(admin), Some(pw)) = (&ctx.cfg.admin, &ctx.admin_password) else {
        return Ok(());
    };
    let eng = ctx.eng;
    let user = &admin.user;
    let (before, after) = eng.local_write_sql(ctx.cfg.role);
    for s in &before {
        sql::exec(conn, s, "preparing local writes").await?;
    }
    let result = async {
        let exists = sql::scalar(conn, &eng.user_exists_sql(user), "admin account check")
            .await?
            .is_some_and(|n| n != "0");
        let mut changes = Vec::new();
        if !exists {
            sql::exec(
                conn,
                &eng.create_user_sql(user, pw.expose()),
                "creating the admin account",
            )
            .await?;
            changes.push("created");
        } else {
            let matches = match eng.credential_matches_sql(user, pw.expose()) {
                Some(q) => sql::scalar(conn, &q, "admin credential check")
                    .await?
                    .is_some_and(|n| n != "0"),
                None => false,
            };
            if !matches {
                for stmt in eng.set_password_sql(user, pw.expose()) {
                    sql::exec(conn, &stmt, "setting the admin password").await?;
                }
                changes.push("credential updated");
            }
        }
        let grants = grant_rows(conn, &eng.show_grants_sql(user)).await?;
        if !eng.admin_grants_match(&grants) {
            for stmt in eng.grant_admin_sql(user) {
                sql::exec(conn, &stmt, "granting the admin account").await?;
            }
            changes.push("privileges set");
        }
        Ok::<_, AgentError>(changes)
    }
    .await;
    for s in &after {
        if let Err(e) = sql::exec(conn, s, "ending local writes").await {
            tracing::warn!(error = %e, "could not restore the session after local writes");
        }
    }
    let changes = result?;
    report.push(
        "admin_account",
        !changes.is_empty(),
        if changes.is_empty() {
            format!("{user} present with its credential and privileges")
        } else {
            format!("{user}: {}", changes.join(", "))
        },
    );
    Ok(())
}

pub(crate) async fn replica_link(
    eng: &dyn EngineSql,
    conn: &mut Conn,
) -> Result<Option<ReplicaLink>, AgentError> {
    let rows = sql::rows(conn, eng.replica_status_sql(), "reading replica status").await?;
    Ok(rows.first().map(|r| eng.parse_replica_status(r)))
}

async fn ensure_replica_link(
    ctx: &Ctx<'_>,
    conn: &mut Conn,
    report: &mut Report,
    semi_replica_changed: bool,
    opts: &Options,
) -> Result<(), AgentError> {
    let Some(src) = &ctx.cfg.source else {
        return Ok(());
    };
    let eng = ctx.eng;
    let tls = ctx.cfg.role == Role::RegionReplica;
    let current = replica_link(eng, conn).await?;
    let matches = current.as_ref().is_some_and(|l| {
        l.source_host == src.host
            && l.source_port == src.port
            && l.source_user == ctx.cfg.replication.user
            && l.gtid_positioning
            && l.ssl == tls
            // A link that is failing to log in holds an old password: re-point it.
            && (l.last_io_errno != 1045 || l.io_running())
    });
    if !matches {
        if current.is_some() {
            sql::exec(conn, eng.stop_replica_sql(), "stopping replication").await?;
        } else {
            // Never replicated: a new replica of a source that holds data starts from a copy.
            let params = seed::SeedParams {
                cfg: ctx.cfg,
                eng,
                password: &ctx.password,
                local: &opts.local,
                connect_timeout: opts.connect_timeout,
            };
            if let Some(done) = seed::seed_if_new(&params, conn).await? {
                report.push(
                    "seed",
                    true,
                    format!(
                        "{}copied {} from {}:{} ({:.1} MB in {:.1}s, {:.1} MB/s), starting at GTID {}",
                        if done.cleaned_up {
                            "removed an unfinished copy; "
                        } else {
                            ""
                        },
                        done.schemas.join(", "),
                        src.host,
                        src.port,
                        done.bytes as f64 / 1e6,
                        done.elapsed.as_secs_f64(),
                        done.mb_per_s(),
                        done.gtid
                    ),
                );
            }
        }
        let link = LinkSpec {
            host: &src.host,
            port: src.port,
            user: &ctx.cfg.replication.user,
            password: ctx.password.expose(),
            tls,
            ca_file: ctx.cfg.tls.ca_file.as_deref(),
        };
        sql::exec(
            conn,
            &eng.change_source_sql(&link),
            "pointing the replica at its source",
        )
        .await?;
        sql::exec(conn, eng.start_replica_sql(), "starting replication").await?;
        report.push(
            "replication_link",
            true,
            format!(
                "replicating from {}:{} by GTID{}",
                src.host,
                src.port,
                if tls { " over TLS" } else { "" }
            ),
        );
    } else if let Some(l) = current.filter(|l| !l.io_running() || !l.sql_running()) {
        // Both threads are started together: START on a half-running link starts the other.
        sql::exec(conn, eng.start_replica_sql(), "starting replication").await?;
        report.push(
            "replication_link",
            true,
            format!(
                "link in place; started threads (IO {}, SQL {})",
                l.io_running, l.sql_running
            ),
        );
    } else if semi_replica_changed {
        for stmt in eng.restart_io_thread_sql() {
            sql::exec(conn, &stmt, "reconnecting the IO thread").await?;
        }
        report.push(
            "replication_link",
            true,
            "reconnected the IO thread for the semi-sync change",
        );
    } else {
        report.push(
            "replication_link",
            false,
            format!("replicating from {}:{}", src.host, src.port),
        );
    }
    wait_running(eng, conn, opts.replica_start_timeout).await
}

async fn wait_running(
    eng: &dyn EngineSql,
    conn: &mut Conn,
    timeout: Duration,
) -> Result<(), AgentError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let link = replica_link(eng, conn).await?.unwrap_or_default();
        if link.io_running() && link.sql_running() {
            return Ok(());
        }
        // A stopped SQL thread or a login failure will not fix itself by waiting.
        if !link.sql_running() && link.last_sql_errno != 0 {
            return Err(AgentError::ReplicaNotRunning {
                seconds: 0,
                reason: format!("SQL thread: {}", link.last_sql_error),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AgentError::ReplicaNotRunning {
                seconds: timeout.as_secs(),
                reason: format!(
                    "IO thread {} ({}), SQL thread {} ({})",
                    link.io_running, link.last_io_error, link.sql_running, link.last_sql_error
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
