//! A fault-injecting HTTP proxy for LocalStack, on 127.0.0.1 only: the provider talks to it as
//! if it were AWS, and a fixed fraction of requests (drawn from a seeded generator) get what a
//! busy AWS endpoint sends back instead of LocalStack's answer:
//!
//! - `unavailable`: HTTP 503 with a plain-text body (what a load balancer in front of an API
//!   says; no AWS XML/JSON to parse),
//! - `throttle`: the service's own throttling error in its wire shape (EC2 `RequestLimitExceeded`
//!   XML, IAM/STS `Throttling` query-XML, SSM `ThrottlingException` JSON, S3 `SlowDown`),
//! - `drop`: the connection closed with no answer at all,
//! - `slow`: the real answer, after a delay.
//!
//! Usage: `strata-fault-proxy --listen 127.0.0.1:4570 --upstream http://127.0.0.1:4569
//! --seed 13 --rate 0.2 [--slow-ms 1500] [--stats FILE]`. Counts go to FILE (JSON) every half
//! second, so a test can report the rate it survived.
//!
//! With `--rate 0` it is a call counter: the stats also count requests per AWS operation
//! (`"calls": {"ec2:DescribeInstances": 12, ...}`), served at once by `GET /_strata-proxy/stats`
//! and zeroed by `POST /_strata-proxy/reset` (neither is forwarded nor counted), so a test or
//! bench can measure the AWS calls of one `tofu apply`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[derive(Debug, Clone)]
struct Args {
    listen: SocketAddr,
    upstream: String,
    seed: u64,
    rate: f64,
    slow: Duration,
    stats: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        listen: "127.0.0.1:4570".parse()?,
        upstream: "http://127.0.0.1:4566".into(),
        seed: 13,
        rate: 0.2,
        slow: Duration::from_millis(1500),
        stats: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--listen" => a.listen = v.parse().context("--listen")?,
            "--upstream" => a.upstream = v,
            "--seed" => a.seed = v.parse().context("--seed")?,
            "--rate" => a.rate = v.parse().context("--rate")?,
            "--slow-ms" => a.slow = Duration::from_millis(v.parse().context("--slow-ms")?),
            "--stats" => a.stats = Some(v.into()),
            _ => bail!("unknown argument {k}"),
        }
    }
    if !a.listen.ip().is_loopback() {
        bail!("--listen must be a loopback address (tests talk only to 127.0.0.1)");
    }
    if !(0.0..=1.0).contains(&a.rate) {
        bail!("--rate must be between 0 and 1");
    }
    Ok(a)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Unavailable,
    Throttle,
    Drop,
    Slow,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    forwarded: AtomicU64,
    unavailable: AtomicU64,
    throttle: AtomicU64,
    dropped: AtomicU64,
    slow: AtomicU64,
    upstream_errors: AtomicU64,
    /// Requests per AWS operation (`service:Operation`), faulted ones included.
    calls: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn counters(&self) -> [&AtomicU64; 7] {
        [
            &self.requests,
            &self.forwarded,
            &self.unavailable,
            &self.throttle,
            &self.dropped,
            &self.slow,
            &self.upstream_errors,
        ]
    }

    fn json(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let calls = self
            .calls
            .lock()
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k:?}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        format!(
            "{{\"requests\":{},\"forwarded\":{},\"unavailable\":{},\"throttle\":{},\"dropped\":{},\"slow\":{},\"upstream_errors\":{},\"calls\":{{{calls}}}}}",
            g(&self.requests),
            g(&self.forwarded),
            g(&self.unavailable),
            g(&self.throttle),
            g(&self.dropped),
            g(&self.slow),
            g(&self.upstream_errors)
        )
    }

    fn count_call(&self, op: String) {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(op).or_default() += 1;
        }
    }

    fn reset(&self) {
        for a in self.counters() {
            a.store(0, Ordering::Relaxed);
        }
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }
}

/// The AWS operation a request is, as `service:Operation`: the query protocols (EC2, IAM, STS)
/// name it in the form body's `Action`, the JSON ones (SSM) in `X-Amz-Target`; the REST ones
/// (S3, Route 53) by method and path, with ids replaced by `*`.
fn operation_of(service: &str, parts: &hyper::http::request::Parts, body: &[u8]) -> String {
    let service = if service.is_empty() { "?" } else { service };
    if let Some(t) = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        return format!("{service}:{}", t.rsplit('.').next().unwrap_or(t));
    }
    let body = String::from_utf8_lossy(body);
    if let Some(action) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return format!("{service}:{action}");
    }
    let path: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let shape = match service {
        // /2013-04-01/hostedzone/<id>/rrset: keep the API's nouns, hide the ids.
        "route53" => path
            .iter()
            .enumerate()
            .map(|(i, s)| if i == 0 || i % 2 == 1 { *s } else { "*" })
            .collect::<Vec<_>>()
            .join("/"),
        // Path-style S3: /<bucket>/<key...>.
        _ => match path.len() {
            0 => String::new(),
            1 => "bucket".into(),
            _ => "bucket/key".into(),
        },
    };
    let query = parts
        .uri
        .query()
        .map(|q| {
            let mut keys: Vec<&str> = q
                .split('&')
                .map(|kv| kv.split('=').next().unwrap_or(kv))
                .collect();
            keys.sort();
            format!("?{}", keys.join("&"))
        })
        .unwrap_or_default();
    format!("{service}:{} /{shape}{query}", parts.method)
}

struct Proxy {
    args: Args,
    upstream: (String, u16),
    rng: Mutex<rand::rngs::StdRng>,
    stats: Stats,
}

impl Proxy {
    /// One draw per request from the seeded generator: the same seed and rate give the same
    /// sequence of verdicts (which request gets which one depends on arrival order).
    async fn verdict(&self) -> Option<Fault> {
        let mut rng = self.rng.lock().await;
        if rng.random::<f64>() >= self.args.rate {
            return None;
        }
        Some(match rng.random_range(0..4u8) {
            0 => Fault::Unavailable,
            1 => Fault::Throttle,
            2 => Fault::Drop,
            _ => Fault::Slow,
        })
    }
}

/// The AWS service a request is for, from its SigV4 credential scope
/// (`Credential=<key>/<date>/<region>/<service>/aws4_request`).
fn service_of(req: &Request<Incoming>) -> String {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    auth.split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or_default()
        .to_string()
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert("content-type", v);
    }
    r
}

/// The service's own throttling error, in the shape its SDK parses.
fn throttle_reply(parts: &hyper::http::request::Parts, service: &str) -> Response<Full<Bytes>> {
    if parts.headers.contains_key("x-amz-target") {
        // JSON protocols (SSM).
        return reply(
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.1",
            r#"{"__type":"ThrottlingException","message":"Rate exceeded (strata-fault-proxy)"}"#
                .into(),
        );
    }
    match service {
        "ec2" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded. (strata-fault-proxy)</Message></Error></Errors><RequestID>strata-fault-proxy</RequestID></Response>".into(),
        ),
        "s3" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate. (strata-fault-proxy)</Message><RequestId>strata-fault-proxy</RequestId></Error>".into(),
        ),
        // Query-XML protocols (IAM, STS) and anything else.
        _ => reply(
            StatusCode::BAD_REQUEST,
            "text/xml",
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded (strata-fault-proxy)</Message></Error><RequestId>strata-fault-proxy</RequestId></ErrorResponse>".into(),
        ),
    }
}

/// "Close the connection": hyper aborts the connection when the service fails, which is
/// exactly a dropped connection to the client.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injected: connection dropped")
    }
}
impl std::error::Error for Dropped {}

async fn forward(
    p: &Proxy,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>> {
    let stream = TcpStream::connect((p.upstream.0.as_str(), p.upstream.1)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut up = Request::from_parts(parts, Full::new(body));
    // One upstream connection per request: keep-alive across faults would only add state.
    up.headers_mut().insert(
        "connection",
        hyper::header::HeaderValue::from_static("close"),
    );
    let resp = sender.send_request(up).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

async fn handle(p: Arc<Proxy>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
    // The proxy's own endpoints: the counts now, or zeroed.
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/_strata-proxy/stats") => {
            return Ok(reply(StatusCode::OK, "application/json", p.stats.json()));
        }
        ("POST", "/_strata-proxy/reset") => {
            p.stats.reset();
            return Ok(reply(StatusCode::OK, "application/json", p.stats.json()));
        }
        _ => {}
    }
    p.stats.requests.fetch_add(1, Ordering::Relaxed);
    let service = service_of(&req);
    let (parts, body) = req.into_parts();
    // A body that cannot be read is a client that went away: nothing to answer.
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    // LocalStack's own endpoints (health) are not AWS calls: never faulted nor counted.
    let internal = parts.uri.path().starts_with("/_localstack");
    if !internal {
        p.stats.count_call(operation_of(&service, &parts, &body));
    }
    let fault = if internal { None } else { p.verdict().await };
    match fault {
        Some(Fault::Unavailable) => {
            p.stats.unavailable.fetch_add(1, Ordering::Relaxed);
            return Ok(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "Service Unavailable\n".into(),
            ));
        }
        Some(Fault::Throttle) => {
            p.stats.throttle.fetch_add(1, Ordering::Relaxed);
            return Ok(throttle_reply(&parts, &service));
        }
        Some(Fault::Drop) => {
            p.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(Dropped);
        }
        Some(Fault::Slow) => {
            p.stats.slow.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(p.args.slow).await;
        }
        None => {}
    }
    match forward(&p, parts, body).await {
        Ok(r) => {
            p.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            Ok(r)
        }
        Err(e) => {
            p.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("strata-fault-proxy: upstream: {e:#}");
            Ok(reply(
                StatusCode::BAD_GATEWAY,
                "text/plain",
                format!("upstream: {e}\n"),
            ))
        }
    }
}

fn upstream_host_port(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("http://")
        .context("--upstream must be an http:// URL")?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let (h, p) = hostport
        .rsplit_once(':')
        .context("--upstream needs a port")?;
    Ok((h.to_string(), p.parse().context("--upstream port")?))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let upstream = upstream_host_port(&args.upstream)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    let p = Arc::new(Proxy {
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(args.seed)),
        upstream,
        stats: Stats::default(),
        args,
    });
    if let Some(path) = p.args.stats.clone() {
        let p = p.clone();
        tokio::spawn(async move {
            loop {
                let _ = tokio::fs::write(&path, p.stats.json()).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    // The first stdout line is the bound address (with --listen 127.0.0.1:0, the port).
    println!("{}", listener.local_addr()?);
    eprintln!(
        "strata-fault-proxy: {} -> {} (seed {}, rate {})",
        listener.local_addr()?,
        p.args.upstream,
        p.args.seed,
        p.args.rate
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let p = p.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let p = p.clone();
                async move { handle(p, req).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
