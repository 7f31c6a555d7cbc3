//! go-plugin AutoMTLS: the client generates a throwaway certificate and passes it in
//! `PLUGIN_CLIENT_CERT`; the plugin generates its own, pins the client's, and sends its own
//! back in the handshake line. Both ends trust exactly one certificate each.

use std::sync::{Arc, OnceLock};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName as TlsDistinguishedName, SignatureScheme};

/// Why a TLS set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not generate the plugin's server certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("could not build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The plugin's own certificate and key for one process lifetime.
#[derive(Debug)]
pub struct ServerIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ServerIdentity {
    /// A fresh self-signed certificate shaped like go-plugin's: an ECDSA key, CN and DNS SAN
    /// "localhost" (the name go-plugin clients verify), usable for server and client auth,
    /// marked as a CA so that Go accepts it as its own trust root.
    pub fn generate() -> Result<Self, TlsError> {
        // go-plugin uses P-521; ring (rcgen's backend here) signs only P-256/P-384, and Go
        // clients accept either.
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "localhost");
        name.push(DnType::OrganizationName, "Strata");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        // Backdated a little, as go-plugin does, so a client clock slightly behind ours
        // still accepts it.
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::seconds(30);
        params.not_after = now + time::Duration::days(365);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

/// The crypto provider AutoMTLS uses: ring for everything (key exchange, ciphers, randomness),
/// plus aws-lc-rs's verifiers for the signature schemes ring lacks, ECDSA P-521 above all,
/// which go-plugin clients sign with.
///
/// Why not aws-lc-rs throughout: its random generator seeds itself from CPU-jitter entropy the
/// first time a process asks for random bytes, and a TLS handshake asks at once. A profile of
/// provider starts put most of a start's CPU there (`jent_*`), and tofu starts the provider
/// three times per plan. ring takes randomness from the OS (getrandom), which is free.
/// Signature verification needs no randomness, so borrowing aws-lc-rs's verifiers does not
/// wake that generator.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.signature_verification_algorithms = *verification_algorithms();
    Arc::new(provider)
}

/// ring's verifiers, then aws-lc-rs's for each scheme ring does not verify. Built once and
/// kept for the life of the process (rustls wants `'static` tables).
fn verification_algorithms() -> &'static WebPkiSupportedAlgorithms {
    static TABLE: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    TABLE.get_or_init(|| {
        let ring = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let lc = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        let mut mapping = ring.mapping.to_vec();
        let mut all = ring.all.to_vec();
        for (scheme, algs) in lc.mapping {
            if !mapping.iter().any(|(s, _)| s == scheme) {
                mapping.push((*scheme, *algs));
                all.extend(algs.iter().copied());
            }
        }
        WebPkiSupportedAlgorithms {
            all: Vec::leak(all),
            mapping: Vec::leak(mapping),
        }
    })
}

/// A server TLS configuration that presents `identity` and accepts exactly one client
/// certificate: `client_cert`, byte for byte. TLS 1.2 and 1.3, ALPN h2 for gRPC.
pub fn server_config(
    identity: &ServerIdentity,
    client_cert: CertificateDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = crypto_provider();
    let verifier = Arc::new(PinnedClientCert::new(
        client_cert,
        provider.signature_verification_algorithms,
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![identity.cert.clone()],
            PrivateKeyDer::Pkcs8(identity.key.clone_key()),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts only the one certificate the client announced through the environment.
///
/// Pinning replaces chain building: the client's certificate is self-signed and was handed to
/// us out of band by our parent process, so "is it exactly that certificate" is the whole
/// question. The handshake signature is still verified, which proves the peer holds its key.
#[derive(Debug)]
pub struct PinnedClientCert {
    expected: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClientCert {
    pub fn new(expected: CertificateDer<'static>, algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self {
            expected,
            algorithms,
        }
    }
}

impl ClientCertVerifier for PinnedClientCert {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[TlsDistinguishedName] {
        // An empty hint list makes Go clients send their certificate unconditionally.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn server_certificate_is_shaped_for_go_plugin_clients() {
        let identity = ServerIdentity::generate().unwrap();
        let (_, cert) = X509Certificate::from_der(identity.cert.as_ref()).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        assert!(
            sans.value
                .general_names
                .iter()
                .any(|n| matches!(n, GeneralName::DNSName("localhost")))
        );
        assert!(cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(cert.validity().is_valid());
        // Self-signed: issuer is the subject.
        assert_eq!(cert.issuer(), cert.subject());
    }

    #[test]
    fn each_identity_is_fresh() {
        let a = ServerIdentity::generate().unwrap();
        let b = ServerIdentity::generate().unwrap();
        assert_ne!(a.cert, b.cert);
    }

    #[test]
    fn only_the_pinned_certificate_passes() {
        let pinned = ServerIdentity::generate().unwrap().cert;
        let other = ServerIdentity::generate().unwrap().cert;
        let verifier = PinnedClientCert::new(
            pinned.clone(),
            crypto_provider().signature_verification_algorithms,
        );
        assert!(verifier.client_auth_mandatory());
        let now = UnixTime::now();
        assert!(verifier.verify_client_cert(&pinned, &[], now).is_ok());
        assert!(verifier.verify_client_cert(&other, &[], now).is_err());
        // P-521, which go-plugin clients use, must be among the accepted schemes, beside the
        // ones ring verifies itself.
        assert!(
            verifier
                .supported_verify_schemes()
                .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
        );
        assert!(
            verifier
                .supported_verify_schemes()
                .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
        );
    }

    #[test]
    fn randomness_comes_from_ring_not_aws_lc() {
        // aws-lc-rs's generator seeds itself from CPU jitter on first use, which cost most of a
        // provider start's CPU; the handshake's random bytes must come from ring (getrandom).
        let provider = crypto_provider();
        assert_eq!(format!("{:?}", provider.secure_random), "Ring");
        assert_eq!(format!("{:?}", provider.key_provider), "Ring");
    }

    #[test]
    fn server_config_builds() {
        let identity = ServerIdentity::generate().unwrap();
        let client = ServerIdentity::generate().unwrap().cert;
        let config = server_config(&identity, client).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
