//! Serving a provider as a go-plugin process: handshake, listener, the side services, and
//! the rules for when the process stops.
//!
//! Managed mode (started by Terraform/OpenTofu) stops on the controller's Shutdown, on
//! SIGTERM, or when the parent process goes away. SIGINT is ignored there, as go-plugin
//! does: Ctrl-C reaches the whole process group, and the CLI wants the provider alive to
//! call StopProvider and finish writing state before it shuts the plugin down itself.
//! Debug mode (started by hand with `--debug`) stops on Ctrl-C, SIGTERM or Shutdown.

use std::io::{self, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use super::automtls::{self, ServerIdentity, TlsError};
use super::handshake::{
    CORE_PROTOCOL_VERSION, HandshakeError, HandshakeLine, Negotiated, PROTOCOL_VERSION, PluginEnv,
};
use super::listener::{BoundListener, Transport};
use super::proto::plugin::grpc_broker_server::GrpcBrokerServer;
use super::proto::plugin::grpc_controller_server::GrpcControllerServer;
use super::proto::plugin::grpc_stdio_server::GrpcStdioServer;
use super::proto::tfplugin6::provider_server::{Provider, ProviderServer};
use super::services::{Broker, Controller, Stdio};

/// The keys debug mode writes into `TF_REATTACH_PROVIDERS`: `strata/strata` as OpenTofu
/// resolves it, and as Terraform does. Each CLI picks the entry matching its own registry.
pub const DEFAULT_PROVIDER_ADDRESSES: &[&str] = &[
    "registry.opentofu.org/strata/strata",
    "registry.terraform.io/strata/strata",
];

/// The service name go-plugin clients health-check.
const HEALTH_SERVICE: &str = "plugin";

/// Largest request or response message. Go's gRPC defaults to 4 MiB for requests, which a
/// large state or schema can exceed; go-plugin clients themselves allow up to 2 GiB.
const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// How often the parent process is checked for.
const PARENT_POLL: Duration = Duration::from_secs(1);

const NOT_STARTED_BY_TERRAFORM: &str = "\
This is terraform-provider-strata, the Strata provider: a Terraform/OpenTofu plugin.
It is not meant to be run by hand: `tofu` or `terraform` starts it when a configuration
requires the provider `strata/strata`.

To attach a debugger, run it with `--debug` and follow the instructions it prints.
See the README in the Strata repository for installation and usage.";

/// How the process was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServeMode {
    /// Started by Terraform/OpenTofu: magic cookie, negotiation, handshake line.
    #[default]
    Managed,
    /// Started by hand for debugging: no cookie, plaintext, prints `TF_REATTACH_PROVIDERS`.
    Debug,
}

/// Options for [`serve_with`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub mode: ServeMode,
    pub transport: Transport,
    /// Keys for the `TF_REATTACH_PROVIDERS` map in debug mode.
    pub provider_addresses: Vec<String>,
    /// How long in-flight RPCs get to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            mode: ServeMode::Managed,
            transport: Transport::default(),
            provider_addresses: DEFAULT_PROVIDER_ADDRESSES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// Why serving failed or never started.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No magic cookie: somebody ran the binary by hand. Displays the human explanation.
    #[error("{NOT_STARTED_BY_TERRAFORM}")]
    NotStartedByTerraform,
    #[error("plugin handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("could not listen for the plugin client: {0}")]
    Listen(#[source] io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("could not write the handshake to stdout: {0}")]
    Stdout(#[source] io::Error),
    #[error("could not install signal handlers: {0}")]
    Signals(#[source] io::Error),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `provider` the way Terraform/OpenTofu start plugins (managed mode), until the
/// client shuts it down. Reads the handshake from the process environment and prints the
/// handshake line on stdout.
pub async fn serve<P: Provider>(provider: P) -> Result<(), ServeError> {
    serve_with(provider, ServeOptions::default()).await
}

/// [`serve`] with options, including debug (reattach) mode.
pub async fn serve_with<P: Provider>(provider: P, options: ServeOptions) -> Result<(), ServeError> {
    let server = match options.mode {
        ServeMode::Managed => {
            let env = PluginEnv::from_process_env();
            if env.magic_cookie.as_deref().is_none_or(str::is_empty) {
                return Err(ServeError::NotStartedByTerraform);
            }
            let negotiated = env.negotiate()?;
            let server =
                PluginServer::bind(&negotiated, options.transport, options.shutdown_grace).await?;
            let line = server.handshake_line()?;
            tracing::debug!(handshake = %line, "plugin listening");
            print_stdout(&format!("{line}\n"))?;
            watch_parent(server.shutdown_token());
            server
        }
        ServeMode::Debug => {
            let server =
                PluginServer::bind_debug(options.transport, options.shutdown_grace).await?;
            let json = server.reattach_config(&options.provider_addresses)?;
            print_stdout(&format!(
                "Strata provider started in debug mode. To make Terraform or OpenTofu use this \
                 process,\nset TF_REATTACH_PROVIDERS in the shell you run them from:\n\n\
                 \texport TF_REATTACH_PROVIDERS='{json}'\n\nPress Ctrl-C to stop the provider.\n"
            ))?;
            server
        }
    };
    watch_signals(options.mode, server.shutdown_token()).map_err(ServeError::Signals)?;
    server.run(provider).await
}

fn print_stdout(text: &str) -> Result<(), ServeError> {
    // The client reads stdout line by line and waits for this; flush it now.
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(ServeError::Stdout)
}

fn watch_signals(mode: ServeMode, shutdown: CancellationToken) -> io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut interrupts = 0u32;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM received; shutting down");
                    shutdown.cancel();
                    break;
                }
                _ = interrupt.recv() => {
                    if mode == ServeMode::Debug {
                        tracing::info!("interrupted; shutting down");
                        shutdown.cancel();
                        break;
                    }
                    interrupts += 1;
                    tracing::trace!(count = interrupts, "ignoring SIGINT: the client stops the plugin itself");
                }
            }
        }
    });
    Ok(())
}

/// A plugin whose client died without a Shutdown would otherwise live forever.
fn watch_parent(shutdown: CancellationToken) {
    let parent = std::os::unix::process::parent_id();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(PARENT_POLL) => {
                    if std::os::unix::process::parent_id() != parent {
                        tracing::warn!(parent, "the process that started the plugin is gone; shutting down");
                        shutdown.cancel();
                        break;
                    }
                }
            }
        }
    });
}

/// A bound plugin listener, ready to print its handshake and serve. [`serve`] uses it;
/// tests use it directly to serve in-process.
pub struct PluginServer {
    listener: BoundListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    server_cert: Option<CertificateDer<'static>>,
    protocol_version: u32,
    shutdown: CancellationToken,
    grace: Duration,
}

impl PluginServer {
    /// Listens as negotiated, with AutoMTLS when the client sent its certificate.
    pub async fn bind(
        negotiated: &Negotiated,
        transport: Transport,
        grace: Duration,
    ) -> Result<Self, ServeError> {
        let listener = BoundListener::bind(
            transport,
            negotiated.port_range.clone(),
            negotiated.unix_socket_dir.as_deref().map(Path::new),
        )
        .await
        .map_err(ServeError::Listen)?;
        let (tls, server_cert) = match &negotiated.client_cert {
            Some(client_cert) => {
                let identity = ServerIdentity::generate()?;
                let config = automtls::server_config(&identity, client_cert.clone())?;
                (Some(config), Some(identity.cert))
            }
            None => (None, None),
        };
        Ok(Self {
            listener,
            tls,
            server_cert,
            protocol_version: negotiated.protocol_version,
            shutdown: CancellationToken::new(),
            grace,
        })
    }

    /// Listens for a reattaching client: plaintext, any port, protocol 6.
    pub async fn bind_debug(transport: Transport, grace: Duration) -> Result<Self, ServeError> {
        let negotiated = Negotiated {
            protocol_version: PROTOCOL_VERSION,
            port_range: 0..=0,
            client_cert: None,
            unix_socket_dir: None,
        };
        Self::bind(&negotiated, transport, grace).await
    }

    /// The line to print on stdout for the client.
    pub fn handshake_line(&self) -> Result<HandshakeLine, ServeError> {
        Ok(HandshakeLine {
            core_protocol_version: CORE_PROTOCOL_VERSION,
            protocol_version: self.protocol_version,
            network: self.listener.network(),
            address: self.listener.address().map_err(ServeError::Listen)?,
            server_cert: self.server_cert.as_ref().map(|c| c.as_ref().to_vec()),
        })
    }

    /// The `TF_REATTACH_PROVIDERS` value (go-plugin's ReattachConfig, keyed by provider
    /// address) that points a CLI at this process.
    pub fn reattach_config(&self, provider_addresses: &[String]) -> Result<String, ServeError> {
        let config = serde_json::json!({
            "Protocol": "grpc",
            "ProtocolVersion": self.protocol_version,
            "Pid": std::process::id(),
            // Tells the client the process is not its child: it must not kill it.
            "Test": true,
            "Addr": {
                "Network": self.listener.network().as_str(),
                "String": self.listener.address().map_err(ServeError::Listen)?,
            },
        });
        let map: serde_json::Map<String, serde_json::Value> = provider_addresses
            .iter()
            .map(|a| (a.clone(), config.clone()))
            .collect();
        Ok(serde_json::Value::Object(map).to_string())
    }

    /// Cancelling this token shuts the server down, as the controller's Shutdown does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until shutdown. In-flight RPCs get the grace period to finish.
    pub async fn run<P: Provider>(self, provider: P) -> Result<(), ServeError> {
        let shutdown = self.shutdown.clone();
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(HEALTH_SERVICE, ServingStatus::Serving)
            .await;
        let incoming = self.listener.incoming(self.tls, shutdown.clone());
        let provider = ProviderServer::new(provider)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let server = Server::builder()
            .add_service(health_service)
            .add_service(GrpcControllerServer::new(Controller {
                shutdown: shutdown.clone(),
            }))
            .add_service(GrpcStdioServer::new(Stdio {
                shutdown: shutdown.clone(),
            }))
            .add_service(GrpcBrokerServer::new(Broker {
                shutdown: shutdown.clone(),
            }))
            .add_service(provider)
            .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
        let grace = self.grace;
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result?,
            () = deadline => {
                tracing::warn!(?grace, "RPCs still running after shutdown grace period; stopping anyway");
            }
        }
        tracing::debug!("plugin server stopped");
        Ok(())
    }
}
