//! The plugin protocol from the client's side: start the real binary (or serve in-process)
//! the way go-plugin does, read the handshake line, connect with AutoMTLS, talk gRPC.

use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use strata_provider::tfplugin::automtls::crypto_provider;
use strata_provider::tfplugin::handshake::{
    HandshakeLine, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, Negotiated, Network,
};
use strata_provider::tfplugin::proto::plugin::Empty;
use strata_provider::tfplugin::proto::plugin::grpc_controller_client::GrpcControllerClient;
use strata_provider::tfplugin::proto::tfplugin6;
use strata_provider::tfplugin::proto::tfplugin6::provider_client::ProviderClient;
use strata_provider::tfplugin::{PluginServer, Transport, UnimplementedProvider};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_terraform-provider-strata-testing");
const WAIT: Duration = Duration::from_secs(30);

/// A client certificate like the one go-plugin hands over in PLUGIN_CLIENT_CERT.
struct ClientIdentity {
    pem: String,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn client_identity() -> ClientIdentity {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    ClientIdentity {
        pem: cert.pem(),
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}

/// Trusts exactly the certificate from the handshake line, as go-plugin clients do.
#[derive(Debug)]
struct PinnedServer(CertificateDer<'static>);

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate is not the pinned one".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &crypto_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &crypto_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        crypto_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn tls_client(server_cert: &[u8], identity: Option<&ClientIdentity>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer(CertificateDer::from(
            server_cert.to_vec(),
        ))));
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                vec![id.cert.clone()],
                PrivateKeyDer::Pkcs8(id.key.clone_key()),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Connects like go-plugin: to the address in the handshake line, over TLS if it carries a
/// certificate. gRPC errors and TLS refusals both come back as `Err`.
async fn connect(
    line: &HandshakeLine,
    identity: Option<&ClientIdentity>,
) -> Result<Channel, tonic::transport::Error> {
    let network = line.network;
    let address = line.address.clone();
    let tls = line
        .server_cert
        .as_deref()
        .map(|cert| tls_client(cert, identity));
    let connector = tower::service_fn(move |_: Uri| {
        let address = address.clone();
        let tls = tls.clone();
        async move {
            let stream: Box<dyn AsyncIo> = match network {
                Network::Unix => Box::new(UnixStream::connect(&address).await?),
                Network::Tcp => Box::new(TcpStream::connect(&address).await?),
            };
            let stream: Box<dyn AsyncIo> = match tls {
                None => stream,
                Some(config) => {
                    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
                    Box::new(
                        tokio_rustls::TlsConnector::from(config)
                            .connect(name, stream)
                            .await?,
                    )
                }
            };
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
}

trait AsyncIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> AsyncIo for T {}

async fn health(channel: Channel) -> Result<i32, tonic::Status> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "plugin".into(),
        })
        .await?;
    Ok(response.into_inner().status)
}

/// Connect and health-check; any failure (TLS refusal, connection reset) is `Err`.
async fn health_via(
    line: &HandshakeLine,
    identity: Option<&ClientIdentity>,
) -> Result<i32, String> {
    let channel = connect(line, identity).await.map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), health(channel))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())
}

struct Plugin {
    child: Child,
    line: HandshakeLine,
}

fn plugin_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("TF_LOG")
        .env_remove("TF_LOG_PROVIDER")
        .env_remove("STRATA_LOG")
        .env_remove(MAGIC_COOKIE_KEY)
        .env_remove("PLUGIN_CLIENT_CERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts the binary as OpenTofu would and reads its handshake line.
async fn start_plugin(client_cert_pem: Option<&str>) -> Plugin {
    let mut cmd = plugin_command();
    cmd.env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_MIN_PORT", "10000")
        .env("PLUGIN_MAX_PORT", "25000");
    if let Some(pem) = client_cert_pem {
        cmd.env("PLUGIN_CLIENT_CERT", pem);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("handshake line in time")
        .unwrap()
        .expect("a handshake line before stdout closed");
    let line: HandshakeLine = first.parse().unwrap();
    // Keep draining stdout like go-plugin does, so the plugin never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Plugin { child, line }
}

async fn exit_code(child: &mut Child) -> Option<i32> {
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("plugin exits in time")
        .unwrap()
        .code()
}

#[tokio::test]
async fn automtls_handshake_and_pinned_client() {
    let client = client_identity();
    let mut plugin = start_plugin(Some(&client.pem)).await;
    let line = plugin.line.clone();
    assert_eq!(line.core_protocol_version, 1);
    assert_eq!(line.protocol_version, 6);
    assert_eq!(line.network, Network::Unix);
    let cert = line
        .server_cert
        .clone()
        .expect("server certificate in the handshake");
    assert_ne!(cert, client.cert.as_ref().to_vec());

    // The expected client gets through TLS, the health check, and a Provider RPC.
    assert_eq!(
        health_via(&line, Some(&client)).await,
        Ok(ServingStatus::Serving as i32)
    );
    let channel = connect(&line, Some(&client)).await.unwrap();
    let metadata = ProviderClient::new(channel.clone())
        .get_metadata(tfplugin6::get_metadata::Request {})
        .await;
    // Whatever provider the binary serves, the call must reach it: a real answer or
    // Unimplemented, never a transport failure.
    if let Err(status) = &metadata {
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status}");
    }

    // Another certificate, or none, is refused; the server keeps serving the right client.
    let stranger = client_identity();
    assert!(health_via(&line, Some(&stranger)).await.is_err());
    assert!(health_via(&line, None).await.is_err());
    assert_eq!(
        health_via(&line, Some(&client)).await,
        Ok(ServingStatus::Serving as i32)
    );

    // Shutdown ends the process cleanly and removes the socket.
    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .unwrap();
    assert_eq!(exit_code(&mut plugin.child).await, Some(0));
    assert!(!PathBuf::from(&line.address).exists());
}

#[tokio::test]
async fn plaintext_without_client_cert() {
    let mut plugin = start_plugin(None).await;
    assert_eq!(plugin.line.server_cert, None);
    assert!(plugin.line.to_string().ends_with("|grpc|"));
    assert_eq!(
        health_via(&plugin.line, None).await,
        Ok(ServingStatus::Serving as i32)
    );
    let channel = connect(&plugin.line, None).await.unwrap();
    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .unwrap();
    assert_eq!(exit_code(&mut plugin.child).await, Some(0));
}

#[tokio::test]
async fn sigint_is_ignored_and_sigterm_stops_a_managed_plugin() {
    let mut plugin = start_plugin(None).await;
    let pid = plugin.child.id().unwrap().to_string();
    let kill = |sig: &'static str| {
        let pid = pid.clone();
        async move {
            let status = Command::new("kill")
                .args([sig, &pid])
                .status()
                .await
                .unwrap();
            assert!(status.success());
        }
    };
    kill("-INT").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        plugin.child.try_wait().unwrap().is_none(),
        "SIGINT must not stop it"
    );
    assert_eq!(
        health_via(&plugin.line, None).await,
        Ok(ServingStatus::Serving as i32)
    );
    kill("-TERM").await;
    assert_eq!(exit_code(&mut plugin.child).await, Some(0));
}

async fn run_to_end(mut cmd: Command) -> (Option<i32>, String, String) {
    let output = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("plugin exits in time")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn started_by_hand_explains_and_exits_1() {
    let (code, stdout, stderr) = run_to_end(plugin_command()).await;
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty(), "no handshake line: {stdout}");
    assert!(stderr.contains("Terraform/OpenTofu plugin"), "{stderr}");
    assert!(stderr.contains("--debug"), "{stderr}");
}

#[tokio::test]
async fn wrong_cookie_and_unsupported_versions_are_refused() {
    let mut wrong = plugin_command();
    wrong.env(MAGIC_COOKIE_KEY, "not-the-cookie");
    let (code, stdout, stderr) = run_to_end(wrong).await;
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(stderr.contains("unexpected value"), "{stderr}");

    let mut old = plugin_command();
    old.env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "4,5");
    let (code, stdout, stderr) = run_to_end(old).await;
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(stderr.contains("only protocol 6"), "{stderr}");
}

#[tokio::test]
async fn debug_mode_prints_reattach_config() {
    let mut cmd = plugin_command();
    cmd.arg("--debug");
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reattach = None;
    while let Some(line) = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        if let Some(rest) = line.trim().strip_prefix("export TF_REATTACH_PROVIDERS='") {
            reattach = Some(rest.trim_end_matches('\'').to_owned());
            break;
        }
    }
    let reattach: serde_json::Value = serde_json::from_str(&reattach.unwrap()).unwrap();
    let entry = &reattach["registry.opentofu.org/strata/strata"];
    assert_eq!(entry["Protocol"], "grpc");
    assert_eq!(entry["ProtocolVersion"], 6);
    assert_eq!(entry["Test"], true);
    assert_eq!(entry["Pid"], child.id().unwrap());
    assert_eq!(entry["Addr"]["Network"], "unix");
    let line = HandshakeLine {
        core_protocol_version: 1,
        protocol_version: 6,
        network: Network::Unix,
        address: entry["Addr"]["String"].as_str().unwrap().to_owned(),
        server_cert: None,
    };
    assert_eq!(
        health_via(&line, None).await,
        Ok(ServingStatus::Serving as i32)
    );
    // Ctrl-C ends debug mode.
    let pid = child.id().unwrap().to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert_eq!(exit_code(&mut child).await, Some(0));
}

#[tokio::test]
async fn in_process_tcp_with_automtls() {
    let client = client_identity();
    let negotiated = Negotiated {
        protocol_version: 6,
        port_range: 0..=0,
        client_cert: Some(client.cert.clone()),
        unix_socket_dir: None,
    };
    let server = PluginServer::bind(&negotiated, Transport::Tcp, Duration::from_secs(2))
        .await
        .unwrap();
    let line = server.handshake_line().unwrap();
    assert_eq!(line.network, Network::Tcp);
    assert!(line.address.starts_with("127.0.0.1:"));
    let shutdown = server.shutdown_token();
    let serving = tokio::spawn(server.run(UnimplementedProvider));

    let channel = connect(&line, Some(&client)).await.unwrap();
    let status = ProviderClient::new(channel.clone())
        .get_provider_schema(tfplugin6::get_provider_schema::Request {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(status.message().contains("GetProviderSchema"));
    assert!(health_via(&line, Some(&client_identity())).await.is_err());

    // An open stdio stream must not hold up shutdown.
    let mut stdio =
        strata_provider::tfplugin::proto::plugin::grpc_stdio_client::GrpcStdioClient::new(
            channel.clone(),
        )
        .stream_stdio(())
        .await
        .unwrap()
        .into_inner();
    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .unwrap();
    assert!(shutdown.is_cancelled());
    let finished = tokio::time::timeout(Duration::from_secs(1), serving).await;
    assert!(matches!(finished, Ok(Ok(Ok(())))), "{finished:?}");
    // The stdio stream ended without sending anything.
    assert!(matches!(stdio.message().await, Ok(None) | Err(_)));
}

/// True once `pid` has exited (gone, or a zombie nobody has reaped yet).
fn has_exited(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[tokio::test]
async fn plugin_exits_when_its_parent_dies() {
    // A shell plays the client: it starts the plugin, then exits without a Shutdown.
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("\"{BIN}\" & echo \"pid=$!\"; sleep 1"))
        .env_remove("TF_LOG")
        .env_remove("PLUGIN_CLIENT_CERT")
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "6")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut shell = shell.spawn().unwrap();
    let mut lines = BufReader::new(shell.stdout.take().unwrap()).lines();
    let (mut pid, mut handshake) = (None, None);
    while pid.is_none() || handshake.is_none() {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("pid and handshake lines");
        match line.strip_prefix("pid=") {
            Some(p) => pid = Some(p.to_owned()),
            None => handshake = Some(line.parse::<HandshakeLine>().unwrap()),
        }
    }
    let (pid, handshake) = (pid.unwrap(), handshake.unwrap());
    assert_eq!(
        health_via(&handshake, None).await,
        Ok(ServingStatus::Serving as i32)
    );
    assert!(!has_exited(&pid));
    shell.wait().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !has_exited(&pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "plugin {pid} still running 10s after its parent exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sigterm_right_after_the_handshake_is_not_lost() {
    // Clients may signal the plugin the moment they have read the handshake line.
    for _ in 0..20 {
        let mut plugin = start_plugin(None).await;
        let pid = plugin.child.id().unwrap().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let exited = tokio::time::timeout(Duration::from_secs(10), plugin.child.wait()).await;
        assert!(
            matches!(&exited, Ok(Ok(s)) if s.code() == Some(0)),
            "plugin did not stop on an early SIGTERM: {exited:?}"
        );
    }
}
