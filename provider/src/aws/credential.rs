//! The cluster's generated credentials (replication, admin): random passwords stored as SSM
//! SecureString parameters that nodes read with their instance profile, never in user-data or
//! plain state. [`SecretString`] keeps them out of Debug output and logs.

use rand::Rng as _;

use super::cluster::ClusterSpec;
use super::config::{Clients, RegionClients};
use super::error::{AwsError, ErrorKind};

/// A secret that never shows up in Debug output or logs. Store it only as a sensitive value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// The SSM parameter holding the replication credential.
pub fn replication_parameter_name(cluster: &str) -> String {
    format!("/strata/{cluster}/replication")
}

/// The SSM parameter holding the admin (client/operator) account's password.
pub fn admin_parameter_name(cluster: &str) -> String {
    format!("/strata/{cluster}/admin-password")
}

/// The database account clients and operators log in with.
pub const ADMIN_USER: &str = "strata_admin";

pub(super) fn generate_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Stores a new random password as a SecureString (never overwriting), or reads back the one a
/// previous attempt stored. Returns the password, whether it was created now, and its version.
/// `role` is the parameter's `strata:role` tag, `purpose` says whose credential it is.
pub(super) async fn ensure_parameter(
    clients: &Clients,
    rc: &RegionClients,
    spec: &ClusterSpec,
    name: &str,
    role: &str,
    purpose: &str,
) -> Result<(SecretString, bool, Option<i64>), AwsError> {
    let what = format!("SSM parameter {name} of cluster {:?}", spec.name());
    let t = spec.object_tags(clients, role, &format!("param-{purpose}"), None);
    let ssm_tags = t
        .iter()
        .filter_map(|(k, v)| {
            aws_sdk_ssm::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .ok()
        })
        .collect();
    let password = generate_password();
    let put = rc
        .ssm
        .put_parameter()
        .name(name)
        .description(format!(
            "Strata {purpose} credential of cluster {}",
            spec.name()
        ))
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .value(&password)
        .overwrite(false)
        .set_tags(Some(ssm_tags))
        .send()
        .await;
    match put {
        Ok(out) => Ok((SecretString(password), true, Some(out.version()))),
        Err(e) => {
            let e = AwsError::from_sdk(e, "ssm:PutParameter", &what);
            if !e.is_kind(ErrorKind::AlreadyExists) {
                return Err(e);
            }
            // A retried create: the credential already made is the one nodes read.
            let out = rc
                .ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(e, "ssm:GetParameter", &what))?;
            let p = out.parameter();
            let v = p
                .and_then(|p| p.value())
                .ok_or_else(|| AwsError::missing("ssm:GetParameter", &what, "Value"))?;
            Ok((SecretString(v.to_string()), false, p.map(|p| p.version())))
        }
    }
}

pub(super) async fn delete_parameter(rc: &RegionClients, name: &str) -> Result<(), AwsError> {
    match rc.ssm.delete_parameter().name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = AwsError::from_sdk(e, "ssm:DeleteParameter", &format!("SSM parameter {name}"));
            if e.is_not_found() { Ok(()) } else { Err(e) }
        }
    }
}
