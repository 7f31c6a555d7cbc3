//! The go-plugin handshake: what the client tells the plugin through environment variables,
//! and the one line the plugin answers with on stdout.
//!
//! Everything here is a pure function of strings so it can be tested without a process.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The variable Terraform and OpenTofu set so a plugin knows it was started by them.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// The value Terraform and OpenTofu put in [`MAGIC_COOKIE_KEY`].
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin's own protocol version, the first field of the handshake line.
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The Terraform plugin protocol major version this provider speaks.
pub const PROTOCOL_VERSION: u32 = 6;

pub const ENV_PROTOCOL_VERSIONS: &str = "PLUGIN_PROTOCOL_VERSIONS";
pub const ENV_MIN_PORT: &str = "PLUGIN_MIN_PORT";
pub const ENV_MAX_PORT: &str = "PLUGIN_MAX_PORT";
pub const ENV_CLIENT_CERT: &str = "PLUGIN_CLIENT_CERT";
/// Newer go-plugin clients may ask for the unix socket to live in a given directory.
pub const ENV_UNIX_SOCKET_DIR: &str = "PLUGIN_UNIX_SOCKET_DIR";

/// Why the handshake with the client cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error(
        "{MAGIC_COOKIE_KEY} is not set: this binary is a plugin meant to be started by \
         Terraform or OpenTofu"
    )]
    MissingCookie,
    #[error(
        "{MAGIC_COOKIE_KEY} has an unexpected value: the program that started this plugin \
         does not speak the Terraform plugin protocol"
    )]
    WrongCookie,
    #[error("{ENV_PROTOCOL_VERSIONS} contains {entry:?}, which is not a protocol version number")]
    MalformedProtocolVersion { entry: String },
    #[error(
        "the client offers plugin protocol versions {offered:?}, but the Strata provider speaks \
         only protocol {PROTOCOL_VERSION}; use Terraform 1.0 or later, or OpenTofu"
    )]
    UnsupportedProtocolVersions { offered: Vec<u32> },
    #[error("{var} is {value:?}, which is not a port number")]
    InvalidPort { var: &'static str, value: String },
    #[error("{ENV_MIN_PORT} ({min}) is greater than {ENV_MAX_PORT} ({max})")]
    InvertedPortRange { min: u16, max: u16 },
    #[error("{ENV_CLIENT_CERT} does not hold a PEM certificate: {reason}")]
    InvalidClientCert { reason: String },
}

/// Checks the magic cookie the client put in the environment.
pub fn check_magic_cookie(value: Option<&str>) -> Result<(), HandshakeError> {
    match value {
        None | Some("") => Err(HandshakeError::MissingCookie),
        Some(MAGIC_COOKIE_VALUE) => Ok(()),
        Some(_) => Err(HandshakeError::WrongCookie),
    }
}

/// Picks the protocol version from the client's comma-separated offer.
///
/// A client that sends no list at all is a legacy go-plugin client; go-plugin servers answer
/// those with the version they have, and so do we (it fails later if the client cannot
/// speak it, with the client's own clear error).
pub fn negotiate_protocol_version(offered: Option<&str>) -> Result<u32, HandshakeError> {
    let Some(offered) = offered.filter(|s| !s.trim().is_empty()) else {
        return Ok(PROTOCOL_VERSION);
    };
    let mut versions = Vec::new();
    for entry in offered.split(',') {
        let entry = entry.trim();
        let version =
            entry
                .parse::<u32>()
                .map_err(|_| HandshakeError::MalformedProtocolVersion {
                    entry: entry.to_owned(),
                })?;
        versions.push(version);
    }
    if versions.contains(&PROTOCOL_VERSION) {
        Ok(PROTOCOL_VERSION)
    } else {
        Err(HandshakeError::UnsupportedProtocolVersions { offered: versions })
    }
}

/// The TCP ports the client allows, from `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT`.
///
/// As in go-plugin, an unset bound counts as 0, so neither set means "any free port"
/// (`0..=0`, port 0 asking the kernel to choose).
pub fn parse_port_range(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<RangeInclusive<u16>, HandshakeError> {
    fn port(var: &'static str, value: Option<&str>) -> Result<u16, HandshakeError> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(0),
            Some(v) => v.parse::<u16>().map_err(|_| HandshakeError::InvalidPort {
                var,
                value: v.to_owned(),
            }),
        }
    }
    let min = port(ENV_MIN_PORT, min)?;
    let max = port(ENV_MAX_PORT, max)?;
    if min > max {
        return Err(HandshakeError::InvertedPortRange { min, max });
    }
    Ok(min..=max)
}

/// Decodes the client certificate AutoMTLS hands over in `PLUGIN_CLIENT_CERT` (PEM).
pub fn parse_client_cert(pem: &str) -> Result<CertificateDer<'static>, HandshakeError> {
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    match certs.next() {
        Some(Ok(cert)) => Ok(cert),
        Some(Err(e)) => Err(HandshakeError::InvalidClientCert {
            reason: e.to_string(),
        }),
        None => Err(HandshakeError::InvalidClientCert {
            reason: "no CERTIFICATE block found".to_owned(),
        }),
    }
}

/// The handshake inputs, as read from the process environment (or given by a test).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginEnv {
    pub magic_cookie: Option<String>,
    pub protocol_versions: Option<String>,
    pub min_port: Option<String>,
    pub max_port: Option<String>,
    pub client_cert: Option<String>,
    pub unix_socket_dir: Option<String>,
}

impl PluginEnv {
    pub fn from_process_env() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        Self {
            magic_cookie: var(MAGIC_COOKIE_KEY),
            protocol_versions: var(ENV_PROTOCOL_VERSIONS),
            min_port: var(ENV_MIN_PORT),
            max_port: var(ENV_MAX_PORT),
            client_cert: var(ENV_CLIENT_CERT),
            unix_socket_dir: var(ENV_UNIX_SOCKET_DIR).filter(|d| !d.is_empty()),
        }
    }

    /// Everything the plugin needs to know before it listens, or the first reason it cannot.
    pub fn negotiate(&self) -> Result<Negotiated, HandshakeError> {
        check_magic_cookie(self.magic_cookie.as_deref())?;
        let protocol_version = negotiate_protocol_version(self.protocol_versions.as_deref())?;
        let port_range = parse_port_range(self.min_port.as_deref(), self.max_port.as_deref())?;
        let client_cert = match self.client_cert.as_deref() {
            Some(pem) if !pem.trim().is_empty() => Some(parse_client_cert(pem)?),
            _ => None,
        };
        Ok(Negotiated {
            protocol_version,
            port_range,
            client_cert,
            unix_socket_dir: self.unix_socket_dir.clone(),
        })
    }
}

/// The outcome of a successful negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub protocol_version: u32,
    pub port_range: RangeInclusive<u16>,
    /// Present when the client asked for AutoMTLS.
    pub client_cert: Option<CertificateDer<'static>>,
    pub unix_socket_dir: Option<String>,
}

/// The kind of address in the handshake line, spelled as Go's `net.Addr.Network()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Tcp,
    Unix,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Tcp => "tcp",
            Network::Unix => "unix",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Network {
    type Err = HandshakeLineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Network::Tcp),
            "unix" => Ok(Network::Unix),
            other => Err(HandshakeLineError::UnknownNetwork(other.to_owned())),
        }
    }
}

/// The line a plugin prints on stdout once it listens:
/// `core|protocol|network|address|grpc|server-cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeLine {
    pub core_protocol_version: u32,
    pub protocol_version: u32,
    pub network: Network,
    pub address: String,
    /// DER of the server certificate under AutoMTLS.
    pub server_cert: Option<Vec<u8>>,
}

/// Why a handshake line could not be read (used by the client side in tests and tools).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeLineError {
    #[error("handshake line has {0} fields, expected at least 5")]
    TooFewFields(usize),
    #[error("handshake field {field} is {value:?}, not a number")]
    NotANumber { field: &'static str, value: String },
    #[error("unknown network {0:?} in handshake line")]
    UnknownNetwork(String),
    #[error("handshake line names RPC protocol {0:?}, expected \"grpc\"")]
    NotGrpc(String),
    #[error("server certificate in handshake line is not base64: {0}")]
    BadCertificate(String),
}

impl fmt::Display for HandshakeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // go-plugin sends the raw DER rather than PEM because the line cannot hold newlines,
        // and decodes it with base64.RawStdEncoding: standard alphabet, no padding.
        let cert = self
            .server_cert
            .as_deref()
            .map(|der| STANDARD_NO_PAD.encode(der))
            .unwrap_or_default();
        write!(
            f,
            "{}|{}|{}|{}|grpc|{}",
            self.core_protocol_version, self.protocol_version, self.network, self.address, cert
        )
    }
}

impl FromStr for HandshakeLine {
    type Err = HandshakeLineError;
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = line.trim().splitn(6, '|').collect();
        if parts.len() < 5 {
            return Err(HandshakeLineError::TooFewFields(parts.len()));
        }
        let number = |field: &'static str, value: &str| {
            value
                .parse::<u32>()
                .map_err(|_| HandshakeLineError::NotANumber {
                    field,
                    value: value.to_owned(),
                })
        };
        if parts[4] != "grpc" {
            return Err(HandshakeLineError::NotGrpc(parts[4].to_owned()));
        }
        let server_cert = match parts.get(5).copied().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                STANDARD_NO_PAD
                    .decode(c)
                    .map_err(|e| HandshakeLineError::BadCertificate(e.to_string()))?,
            ),
        };
        Ok(HandshakeLine {
            core_protocol_version: number("core protocol version", parts[0])?,
            protocol_version: number("protocol version", parts[1])?,
            network: parts[2].parse()?,
            address: parts[3].to_owned(),
            server_cert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> PluginEnv {
        PluginEnv {
            magic_cookie: Some(MAGIC_COOKIE_VALUE.to_owned()),
            protocol_versions: Some("5,6".to_owned()),
            min_port: Some("10000".to_owned()),
            max_port: Some("25000".to_owned()),
            client_cert: None,
            unix_socket_dir: None,
        }
    }

    #[test]
    fn cookie_must_match_exactly() {
        assert_eq!(check_magic_cookie(Some(MAGIC_COOKIE_VALUE)), Ok(()));
        assert_eq!(check_magic_cookie(None), Err(HandshakeError::MissingCookie));
        assert_eq!(
            check_magic_cookie(Some("")),
            Err(HandshakeError::MissingCookie)
        );
        let wrong = check_magic_cookie(Some("d602bf8f")).unwrap_err();
        assert_eq!(wrong, HandshakeError::WrongCookie);
        assert!(wrong.to_string().contains(MAGIC_COOKIE_KEY), "{wrong}");
    }

    #[test]
    fn wrong_cookie_stops_negotiation_first() {
        let e = PluginEnv {
            magic_cookie: Some("nope".into()),
            protocol_versions: Some("5".into()),
            ..env()
        };
        assert_eq!(e.negotiate(), Err(HandshakeError::WrongCookie));
    }

    #[test]
    fn picks_six_from_offers() {
        for offer in ["6", "5,6", "6,5", " 5 , 6 ", "4,5,6,7"] {
            assert_eq!(negotiate_protocol_version(Some(offer)), Ok(6), "{offer}");
        }
        assert_eq!(negotiate_protocol_version(None), Ok(6));
        assert_eq!(negotiate_protocol_version(Some("")), Ok(6));
    }

    #[test]
    fn no_six_is_a_clear_error() {
        let err = negotiate_protocol_version(Some("4,5")).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::UnsupportedProtocolVersions {
                offered: vec![4, 5]
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("[4, 5]") && msg.contains("only protocol 6"),
            "{msg}"
        );
    }

    #[test]
    fn garbage_versions_are_rejected() {
        assert_eq!(
            negotiate_protocol_version(Some("5,six")),
            Err(HandshakeError::MalformedProtocolVersion {
                entry: "six".into()
            })
        );
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range(None, None), Ok(0..=0));
        assert_eq!(
            parse_port_range(Some("10000"), Some("25000")),
            Ok(10000..=25000)
        );
        assert_eq!(
            parse_port_range(Some("3"), Some("2")),
            Err(HandshakeError::InvertedPortRange { min: 3, max: 2 })
        );
        assert_eq!(
            parse_port_range(Some("70000"), None),
            Err(HandshakeError::InvalidPort {
                var: ENV_MIN_PORT,
                value: "70000".into()
            })
        );
    }

    #[test]
    fn client_cert_pem_is_decoded() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let negotiated = PluginEnv {
            client_cert: Some(cert.pem()),
            ..env()
        }
        .negotiate()
        .unwrap();
        assert_eq!(negotiated.client_cert.as_deref(), Some(cert.der().as_ref()));
        assert_eq!(negotiated.port_range, 10000..=25000);
        assert_eq!(negotiated.protocol_version, 6);

        assert!(matches!(
            parse_client_cert("not a pem"),
            Err(HandshakeError::InvalidClientCert { .. })
        ));
    }

    #[test]
    fn handshake_line_round_trips() {
        let line = HandshakeLine {
            core_protocol_version: 1,
            protocol_version: 6,
            network: Network::Unix,
            address: "/tmp/plugin1/plugin.sock".into(),
            server_cert: Some(vec![0x30, 0x82, 0x01, 0xff, 0x00]),
        };
        let text = line.to_string();
        // Five bytes encode to seven characters without padding.
        assert_eq!(text, "1|6|unix|/tmp/plugin1/plugin.sock|grpc|MIIB/wA");
        assert_eq!(text.parse::<HandshakeLine>(), Ok(line));

        let plain = "1|6|tcp|127.0.0.1:1234|grpc|"
            .parse::<HandshakeLine>()
            .unwrap();
        assert_eq!(plain.network, Network::Tcp);
        assert_eq!(plain.server_cert, None);
        assert!(matches!(
            "1|6|tcp".parse::<HandshakeLine>(),
            Err(HandshakeLineError::TooFewFields(3))
        ));
        assert!(matches!(
            "1|6|tcp|x|netrpc|".parse::<HandshakeLine>(),
            Err(HandshakeLineError::NotGrpc(_))
        ));
    }
}
