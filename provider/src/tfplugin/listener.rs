//! Where the plugin listens: a unix socket in a private temp directory (what Go plugins do
//! on Linux) or 127.0.0.1 within the client's port range, with TLS on top under AutoMTLS.

use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::handshake::Network;

/// How the plugin listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// A unix domain socket; go-plugin's choice on every non-Windows system.
    #[default]
    Unix,
    /// TCP on 127.0.0.1, honouring `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT`.
    Tcp,
}

/// A TLS handshake that takes longer than this is a client we do not want.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) enum BoundListener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        socket: SocketDir,
    },
}

/// The private directory holding the unix socket; removed when dropped.
pub(crate) struct SocketDir {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        // Best effort: a leftover socket in a temp dir is harmless.
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl BoundListener {
    pub(crate) async fn bind(
        transport: Transport,
        port_range: RangeInclusive<u16>,
        socket_parent: Option<&Path>,
    ) -> io::Result<Self> {
        match transport {
            Transport::Tcp => bind_tcp(port_range).await.map(BoundListener::Tcp),
            Transport::Unix => {
                let parent = socket_parent
                    .map(Path::to_path_buf)
                    .unwrap_or_else(std::env::temp_dir);
                let dir = private_dir(&parent)?;
                let path = dir.join("plugin.sock");
                let listener = UnixListener::bind(&path);
                let socket = SocketDir { dir, path };
                Ok(BoundListener::Unix {
                    listener: listener?,
                    socket,
                })
            }
        }
    }

    pub(crate) fn network(&self) -> Network {
        match self {
            BoundListener::Tcp(_) => Network::Tcp,
            BoundListener::Unix { .. } => Network::Unix,
        }
    }

    pub(crate) fn address(&self) -> io::Result<String> {
        match self {
            BoundListener::Tcp(l) => Ok(l.local_addr()?.to_string()),
            BoundListener::Unix { socket, .. } => socket
                .path
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| io::Error::other("unix socket path is not UTF-8")),
        }
    }

    async fn accept(&self) -> io::Result<PluginConn> {
        match self {
            BoundListener::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                // gRPC messages are small and latency-bound.
                stream.set_nodelay(true)?;
                Ok(PluginConn::new(stream))
            }
            BoundListener::Unix { listener, .. } => {
                let (stream, _) = listener.accept().await?;
                Ok(PluginConn::new(stream))
            }
        }
    }

    /// Accepts connections until `shutdown`, terminating TLS when `tls` is set, and yields
    /// the ready connections. A client that fails the TLS handshake (for instance one without
    /// the pinned certificate) is dropped and logged; the plugin keeps serving.
    pub(crate) fn incoming(
        self,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: CancellationToken,
    ) -> ReceiverStream<io::Result<PluginConn>> {
        let (tx, rx) = mpsc::channel(16);
        let acceptor = tls.map(TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    conn = self.accept() => conn,
                };
                let conn = match conn {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a plugin connection failed");
                        // Out of file descriptors and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match &acceptor {
                    None => {
                        if tx.send(Ok(conn)).await.is_err() {
                            break;
                        }
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let handshake =
                                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(conn))
                                    .await;
                            match handshake {
                                Ok(Ok(tls)) => {
                                    let _ = tx.send(Ok(PluginConn::new(tls))).await;
                                }
                                Ok(Err(e)) => {
                                    tracing::warn!(error = %e, "refused a plugin connection: TLS handshake failed");
                                }
                                Err(_) => {
                                    tracing::warn!(
                                        "refused a plugin connection: TLS handshake timed out"
                                    );
                                }
                            }
                        });
                    }
                }
            }
            // Dropping self here closes the listener and removes the socket directory.
            drop(self);
        });
        ReceiverStream::new(rx)
    }
}

async fn bind_tcp(port_range: RangeInclusive<u16>) -> io::Result<TcpListener> {
    let mut last_error = None;
    for port in port_range.clone() {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
            Err(e) => last_error = Some(e),
        }
    }
    let detail = last_error.map(|e| e.to_string()).unwrap_or_default();
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "no free port on 127.0.0.1 in {}..={}: {detail}",
            port_range.start(),
            port_range.end()
        ),
    ))
}

/// Creates a fresh directory only we can enter, so no other user can reach the socket.
fn private_dir(parent: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    for _ in 0..16 {
        let name = format!(
            "strata-plugin-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let dir = parent.join(name);
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "could not create a unique socket directory",
    ))
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// One accepted connection, plain or TLS, over TCP or a unix socket.
pub struct PluginConn(Box<dyn Io>);

impl PluginConn {
    fn new(io: impl AsyncRead + AsyncWrite + Send + Unpin + 'static) -> Self {
        Self(Box::new(io))
    }
}

impl Connected for PluginConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for PluginConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PluginConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unix_socket_lives_in_a_private_dir_and_is_removed() {
        let parent = tempfile::tempdir().unwrap();
        let listener = BoundListener::bind(Transport::Unix, 0..=0, Some(parent.path()))
            .await
            .unwrap();
        let address = PathBuf::from(listener.address().unwrap());
        assert!(address.starts_with(parent.path()));
        let dir = address.parent().unwrap().to_path_buf();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(listener);
        assert!(!address.exists());
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn tcp_honours_the_port_range() {
        // Find a free port, then ask for exactly that one.
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = probe.local_addr().unwrap().port();
        let busy = BoundListener::bind(Transport::Tcp, port..=port, None).await;
        assert!(busy.is_err(), "the only allowed port is taken");
        drop(probe);
        let listener = BoundListener::bind(Transport::Tcp, port..=port, None)
            .await
            .unwrap();
        assert_eq!(listener.network(), Network::Tcp);
        assert_eq!(listener.address().unwrap(), format!("127.0.0.1:{port}"));
    }
}
