//! The AWS forwarder: 169.254.169.254:4566 in the router namespace -> LocalStack's endpoint in
//! the host namespace, byte for byte.
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// "http://host:port/..." -> "host:port".
pub fn endpoint_authority(endpoint: &str) -> Option<String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))?;
    let auth = rest.split('/').next()?;
    if auth.is_empty() {
        return None;
    }
    Some(if auth.contains(':') {
        auth.to_string()
    } else if endpoint.starts_with("https://") {
        format!("{auth}:443")
    } else {
        format!("{auth}:80")
    })
}

pub async fn serve(listener: TcpListener, target: String) {
    loop {
        match listener.accept().await {
            Ok((mut inbound, peer)) => {
                let target = target.clone();
                tokio::spawn(async move {
                    match TcpStream::connect(&target).await {
                        Ok(mut outbound) => {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        Err(e) => {
                            tracing::warn!(%peer, target, error = %e, "AWS forwarder cannot reach the endpoint")
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "forwarder accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn authority() {
        use super::endpoint_authority as a;
        assert_eq!(
            a("http://127.0.0.1:4566").as_deref(),
            Some("127.0.0.1:4566")
        );
        assert_eq!(a("http://localhost/").as_deref(), Some("localhost:80"));
        assert_eq!(a("ftp://x"), None);
    }
}
