//! IMDSv2 at 169.254.169.254:80, inside the router namespace. The instance is the one whose
//! private IP is the connection's source address (nodes reach the router without NAT).
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What IMDS serves for one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceMeta {
    pub instance_id: String,
    pub region: String,
    pub availability_zone: String,
    pub private_ip: Ipv4Addr,
    pub hostname: String,
    pub account_id: String,
    pub instance_type: String,
    pub image_id: String,
    pub role: Option<String>,
    pub user_data: Option<Vec<u8>>,
}

/// Instances by private IP, shared with the daemon that keeps it current.
#[derive(Default, Clone)]
pub struct Registry {
    by_ip: Arc<RwLock<HashMap<Ipv4Addr, InstanceMeta>>>,
    tokens: Arc<Mutex<HashMap<String, (Ipv4Addr, Instant)>>>,
}

impl Registry {
    pub fn insert(&self, meta: InstanceMeta) {
        if let Ok(mut m) = self.by_ip.write() {
            m.insert(meta.private_ip, meta);
        }
    }

    pub fn remove(&self, ip: Ipv4Addr, instance_id: &str) {
        if let Ok(mut m) = self.by_ip.write()
            && m.get(&ip).is_some_and(|x| x.instance_id == instance_id)
        {
            m.remove(&ip);
        }
    }

    /// The instances IMDS serves without a role yet, as (private IP, instance id).
    pub fn without_role(&self) -> Vec<(Ipv4Addr, String)> {
        self.by_ip
            .read()
            .map(|m| {
                m.values()
                    .filter(|x| x.role.is_none())
                    .map(|x| (x.private_ip, x.instance_id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets the role of the instance at `ip`, if that is still `instance_id`.
    pub fn set_role(&self, ip: Ipv4Addr, instance_id: &str, role: String) {
        if let Ok(mut m) = self.by_ip.write()
            && let Some(x) = m.get_mut(&ip)
            && x.instance_id == instance_id
        {
            x.role = Some(role);
        }
    }

    fn get(&self, ip: Ipv4Addr) -> Option<InstanceMeta> {
        self.by_ip.read().ok()?.get(&ip).cloned()
    }

    fn new_token(&self, ip: Ipv4Addr, ttl: Duration) -> String {
        let token = hex::encode(rand::random::<[u8; 24]>());
        if let Ok(mut t) = self.tokens.lock() {
            let now = Instant::now();
            t.retain(|_, (_, exp)| *exp > now);
            t.insert(token.clone(), (ip, now + ttl));
        }
        token
    }

    fn token_valid(&self, token: &str, ip: Ipv4Addr) -> bool {
        self.tokens
            .lock()
            .ok()
            .and_then(|t| t.get(token).copied())
            .is_some_and(|(owner, exp)| owner == ip && exp > Instant::now())
    }
}

/// A parsed request: method, path, headers (lower-case names).
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

/// Parses a request head (everything before the blank line).
pub fn parse_head(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    let path = target.split('?').next().unwrap_or(target).to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Request {
        method,
        path,
        headers,
    })
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra: Vec<(&'static str, String)>,
}

impl Response {
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: "text/plain",
            body: body.into(),
            extra: Vec::new(),
        }
    }
    fn json(body: serde_json::Value) -> Self {
        Response {
            status: 200,
            content_type: "text/plain",
            body: serde_json::to_vec_pretty(&body).unwrap_or_default(),
            extra: Vec::new(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    }
}

/// Static credentials LocalStack accepts, valid "forever": nodes never see them expire.
const EXPIRATION: &str = "2099-01-01T00:00:00Z";

/// Answers one request from `ip`.
pub fn handle(reg: &Registry, ip: Ipv4Addr, req: &Request) -> Response {
    if req.method == "PUT" {
        if req.path != "/latest/api/token" {
            return Response::text(405, "");
        }
        // EC2 refuses token requests that went through a proxy.
        if req.headers.contains_key("x-forwarded-for") {
            return Response::text(403, "");
        }
        let ttl = req
            .headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|t| (1..=21600).contains(t));
        let Some(ttl) = ttl else {
            return Response::text(400, "");
        };
        if reg.get(ip).is_none() {
            return Response::text(404, "");
        }
        let mut r = Response::text(200, reg.new_token(ip, Duration::from_secs(ttl)));
        r.extra
            .push(("X-aws-ec2-metadata-token-ttl-seconds", ttl.to_string()));
        return r;
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, "");
    }
    // IMDSv2 only: every read needs a token issued to this same address.
    let token_ok = req
        .headers
        .get("x-aws-ec2-metadata-token")
        .is_some_and(|t| reg.token_valid(t, ip));
    if !token_ok {
        return Response::text(401, "");
    }
    let Some(m) = reg.get(ip) else {
        return Response::text(404, "");
    };
    let p = req.path.trim_end_matches('/');
    let creds_prefix = "/latest/meta-data/iam/security-credentials";
    match p {
        "/latest/user-data" => match &m.user_data {
            Some(u) => Response {
                status: 200,
                content_type: "application/octet-stream",
                body: u.clone(),
                extra: Vec::new(),
            },
            None => Response::text(404, ""),
        },
        "/latest" => Response::text(200, "dynamic\nmeta-data\nuser-data"),
        "/latest/meta-data" => Response::text(
            200,
            "ami-id\nhostname\niam/\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nplacement/",
        ),
        "/latest/meta-data/instance-id" => Response::text(200, m.instance_id),
        "/latest/meta-data/ami-id" => Response::text(200, m.image_id),
        "/latest/meta-data/instance-type" => Response::text(200, m.instance_type),
        "/latest/meta-data/local-ipv4" => Response::text(200, m.private_ip.to_string()),
        "/latest/meta-data/hostname" | "/latest/meta-data/local-hostname" => {
            Response::text(200, m.hostname)
        }
        "/latest/meta-data/placement" => Response::text(200, "availability-zone\nregion"),
        "/latest/meta-data/placement/region" => Response::text(200, m.region),
        "/latest/meta-data/placement/availability-zone" => Response::text(200, m.availability_zone),
        "/latest/meta-data/iam" => match &m.role {
            Some(_) => Response::text(200, "info\nsecurity-credentials/"),
            None => Response::text(404, ""),
        },
        "/latest/meta-data/iam/info" => match &m.role {
            Some(role) => Response::json(serde_json::json!({
                "Code": "Success",
                "LastUpdated": "2026-01-01T00:00:00Z",
                "InstanceProfileArn": format!("arn:aws:iam::{}:instance-profile/{role}", m.account_id),
                "InstanceProfileId": "AIPALOCALSTRATANODE",
            })),
            None => Response::text(404, ""),
        },
        p if p == creds_prefix => match &m.role {
            Some(role) => Response::text(200, role.clone()),
            None => Response::text(404, ""),
        },
        p if p.starts_with(creds_prefix) => {
            let asked = &p[creds_prefix.len() + 1..];
            match &m.role {
                Some(role) if role == asked => Response::json(serde_json::json!({
                    "Code": "Success",
                    "LastUpdated": "2026-01-01T00:00:00Z",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": "test",
                    "SecretAccessKey": "test",
                    "Token": "strata-local-session-token",
                    "Expiration": EXPIRATION,
                })),
                _ => Response::text(404, ""),
            }
        }
        "/latest/dynamic" => Response::text(200, "instance-identity/"),
        "/latest/dynamic/instance-identity" => Response::text(200, "document"),
        "/latest/dynamic/instance-identity/document" => Response::json(serde_json::json!({
            "accountId": m.account_id,
            "architecture": "x86_64",
            "availabilityZone": m.availability_zone,
            "imageId": m.image_id,
            "instanceId": m.instance_id,
            "instanceType": m.instance_type,
            "privateIp": m.private_ip.to_string(),
            "region": m.region,
            "version": "2017-09-30",
        })),
        _ => Response::text(404, ""),
    }
}

/// Serves IMDS on an already bound listener until the task is dropped.
pub async fn serve(listener: TcpListener, reg: Registry) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let reg = reg.clone();
                tokio::spawn(async move {
                    let IpAddr::V4(ip) = peer.ip() else { return };
                    if let Err(e) = connection(stream, ip, &reg).await {
                        tracing::debug!(%peer, error = %e, "IMDS connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "IMDS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

const MAX_HEAD: usize = 16 * 1024;

/// HTTP/1.1 with keep-alive: requests one after the other on the connection.
async fn connection(mut stream: TcpStream, ip: Ipv4Addr, reg: &Registry) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            if buf.len() > MAX_HEAD {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let Some(req) = parse_head(&head) else {
            return Ok(());
        };
        let body_len: usize = req
            .headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut rest = buf.split_off(head_end + 4);
        while rest.len() < body_len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        buf = rest.split_off(body_len);
        let resp = handle(reg, ip, &req);
        let close = req
            .headers
            .get("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nServer: EC2ws\r\n",
            resp.status,
            reason(resp.status),
            resp.content_type,
            resp.body.len()
        );
        for (k, v) in &resp.extra {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(if close {
            "Connection: close\r\n\r\n"
        } else {
            "\r\n"
        });
        stream.write_all(out.as_bytes()).await?;
        if req.method != "HEAD" {
            stream.write_all(&resp.body).await?;
        }
        stream.flush().await?;
        if close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> (Registry, Ipv4Addr) {
        let reg = Registry::default();
        let ip = Ipv4Addr::new(10, 1, 1, 5);
        reg.insert(InstanceMeta {
            instance_id: "i-abc".into(),
            region: "eu-west-1".into(),
            availability_zone: "eu-west-1a".into(),
            private_ip: ip,
            hostname: "ip-10-1-1-5".into(),
            account_id: "000000000000".into(),
            instance_type: "t3.micro".into(),
            image_id: "ami-1".into(),
            role: Some("node-role".into()),
            user_data: Some(b"#!/bin/sh\n\x00\xffbytes".to_vec()),
        });
        (reg, ip)
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_role_that_appears_after_boot_is_served_from_then_on() {
        let (reg, ip) = reg();
        let mut meta = reg.get(ip).unwrap();
        meta.role = None;
        reg.insert(meta);
        assert_eq!(reg.without_role(), vec![(ip, "i-abc".to_string())]);
        let t = handle(
            &reg,
            ip,
            &req(
                "PUT",
                "/latest/api/token",
                &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
            ),
        );
        let token = String::from_utf8(t.body).unwrap();
        let creds = || {
            handle(
                &reg,
                ip,
                &req(
                    "GET",
                    "/latest/meta-data/iam/security-credentials/",
                    &[("X-aws-ec2-metadata-token", &token)],
                ),
            )
        };
        assert_eq!(creds().status, 404);
        // Another instance now at that address is left alone.
        reg.set_role(ip, "i-other", "wrong".into());
        assert_eq!(creds().status, 404);
        reg.set_role(ip, "i-abc", "node-role".into());
        assert_eq!(creds().body, b"node-role");
        assert!(reg.without_role().is_empty());
    }

    #[test]
    fn imdsv2_token_flow_and_paths() {
        let (reg, ip) = reg();
        assert_eq!(
            handle(&reg, ip, &req("GET", "/latest/meta-data/instance-id", &[])).status,
            401
        );
        assert_eq!(
            handle(&reg, ip, &req("PUT", "/latest/api/token", &[])).status,
            400
        );
        let t = handle(
            &reg,
            ip,
            &req(
                "PUT",
                "/latest/api/token",
                &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
            ),
        );
        assert_eq!(t.status, 200);
        let token = String::from_utf8(t.body).unwrap();
        let get = |p: &str| {
            handle(
                &reg,
                ip,
                &req("GET", p, &[("X-aws-ec2-metadata-token", &token)]),
            )
        };
        assert_eq!(get("/latest/meta-data/instance-id").body, b"i-abc");
        assert_eq!(get("/latest/meta-data/placement/region").body, b"eu-west-1");
        assert_eq!(get("/latest/user-data").body, b"#!/bin/sh\n\x00\xffbytes");
        assert_eq!(
            get("/latest/meta-data/iam/security-credentials/").body,
            b"node-role"
        );
        let creds: serde_json::Value = serde_json::from_slice(
            &get("/latest/meta-data/iam/security-credentials/node-role").body,
        )
        .unwrap();
        assert_eq!(creds["Code"], "Success");
        assert_eq!(creds["Expiration"], EXPIRATION);
        assert_eq!(
            get("/latest/meta-data/iam/security-credentials/other").status,
            404
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&get("/latest/dynamic/instance-identity/document").body)
                .unwrap();
        assert_eq!(doc["privateIp"], "10.1.1.5");
        assert_eq!(doc["accountId"], "000000000000");
        // A token is bound to the address it was issued to.
        let other = Ipv4Addr::new(10, 1, 1, 6);
        assert_eq!(
            handle(
                &reg,
                other,
                &req(
                    "GET",
                    "/latest/meta-data/instance-id",
                    &[("X-aws-ec2-metadata-token", &token)]
                )
            )
            .status,
            401
        );
    }

    #[test]
    fn request_heads_parse() {
        let r = parse_head(
            "GET /latest/meta-data/?x=1 HTTP/1.1\r\nHost: a\r\nX-Aws-Ec2-Metadata-Token: t",
        )
        .unwrap();
        assert_eq!(r.path, "/latest/meta-data/");
        assert_eq!(r.headers["x-aws-ec2-metadata-token"], "t");
    }
}
