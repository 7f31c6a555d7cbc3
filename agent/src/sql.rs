//! Connections and the few query shapes the agent needs, over `mysql_async` (pure Rust,
//! rustls). Rows come back as column name → text, which is all the engines' status output is.

use crate::error::AgentError;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, SslOpts, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How the agent reaches the local server with admin rights.
#[derive(Debug, Clone)]
pub struct LocalTarget {
    /// Unix socket; preferred when set.
    pub socket: Option<String>,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
}

impl LocalTarget {
    pub fn describe(&self) -> String {
        match &self.socket {
            Some(s) => format!("socket {s} as {}", self.user),
            None => format!("{}:{} as {}", self.host, self.port, self.user),
        }
    }
}

/// rustls needs one process-wide crypto provider when several are compiled in (the AWS SDK
/// brings its own); installing ring twice is harmless.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn connect_local(t: &LocalTarget, timeout: Duration) -> Result<Conn, String> {
    init_crypto();
    let mut b = OptsBuilder::default()
        .user(Some(t.user.clone()))
        .pass(t.password.clone())
        .prefer_socket(false)
        .wait_timeout(Some(28_800));
    b = match &t.socket {
        Some(s) => b.socket(Some(s.clone())),
        None => b.ip_or_hostname(t.host.clone()).tcp_port(t.port),
    };
    connect(b, timeout).await
}

/// Connects to a source as the replication user. With `tls`, the link is encrypted; the
/// source's certificate is verified only when a CA file is given (self-signed otherwise).
pub async fn connect_remote(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    tls: bool,
    ca_file: Option<&str>,
    timeout: Duration,
) -> Result<Conn, String> {
    init_crypto();
    let mut b = OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(user.to_string()))
        .pass(Some(password.to_string()))
        .prefer_socket(false);
    if tls {
        let ssl = match ca_file {
            Some(ca) => SslOpts::default().with_root_certs(vec![PathBuf::from(ca).into()]),
            None => SslOpts::default().with_danger_accept_invalid_certs(true),
        };
        b = b.ssl_opts(Some(ssl));
    }
    connect(b, timeout).await
}

async fn connect(b: OptsBuilder, timeout: Duration) -> Result<Conn, String> {
    match tokio::time::timeout(timeout, Conn::new(b)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// MySQL error code of a connection failure message, e.g. 1045 for "access denied".
pub fn is_access_denied(msg: &str) -> bool {
    msg.contains("1045") || msg.to_ascii_lowercase().contains("access denied")
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

pub type TextRow = BTreeMap<String, Option<String>>;

fn to_text_row(row: &Row) -> TextRow {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = row.as_ref(i).and_then(text);
            (c.name_str().into_owned(), v)
        })
        .collect()
}

/// Runs a query and returns its rows as text. `what` names it in errors.
pub async fn rows(conn: &mut Conn, sql: &str, what: &str) -> Result<Vec<TextRow>, AgentError> {
    let rows: Vec<Row> = conn
        .query(sql)
        .await
        .map_err(|e| AgentError::sql(what, e))?;
    Ok(rows.iter().map(to_text_row).collect())
}

/// First column of the first row, as text.
pub async fn scalar(conn: &mut Conn, sql: &str, what: &str) -> Result<Option<String>, AgentError> {
    let row: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(|e| AgentError::sql(what, e))?;
    Ok(row.and_then(|r| r.as_ref(0).and_then(text)))
}

/// Runs a statement. `what` names it in errors, since the text may hold a password.
pub async fn exec(conn: &mut Conn, sql: &str, what: &str) -> Result<(), AgentError> {
    conn.query_drop(sql)
        .await
        .map_err(|e| AgentError::sql(what, e))
}

/// `SHOW ... STATUS LIKE` output as name → value.
pub async fn status_vars(
    conn: &mut Conn,
    sql: &str,
    what: &str,
) -> Result<BTreeMap<String, String>, AgentError> {
    let rows: Vec<(String, String)> = conn
        .query(sql)
        .await
        .map_err(|e| AgentError::sql(what, e))?;
    Ok(rows.into_iter().collect())
}
