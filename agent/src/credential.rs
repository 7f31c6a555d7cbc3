//! Where passwords come from: SSM SecureString on an instance (read with the instance
//! profile's credentials), a file or an environment variable in tests and labs. A node needs
//! two: the replication user's (`replication.credential`) and, when the config names one, the
//! admin account's (`admin.credential`).

use crate::error::AgentError;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;
use strata_topology::{CredentialRef, NodeConfig};

/// A secret that does not print itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

pub trait CredentialSource: Send + Sync {
    /// The password `cred` names. File, environment and static sources hold one password
    /// and ignore the reference; SSM reads the parameter it names.
    fn read<'a>(&'a self, cred: &'a CredentialRef) -> BoxFuture<'a, Result<Secret, AgentError>>;
}

/// The sources of a node's two passwords.
#[derive(Clone)]
pub struct Credentials {
    pub replication: Arc<dyn CredentialSource>,
    pub admin: Arc<dyn CredentialSource>,
}

impl Credentials {
    /// Both passwords from SSM, as on an instance.
    pub fn ssm() -> Credentials {
        Credentials {
            replication: Arc::new(SsmCredentialSource),
            admin: Arc::new(SsmCredentialSource),
        }
    }

    /// The replication user's password for this node's cluster.
    pub async fn replication_password(&self, cfg: &NodeConfig) -> Result<Secret, AgentError> {
        self.replication
            .read(&cfg.replication.credential)
            .await
            .map_err(|e| relabel(e, "replication credential"))
    }

    /// The admin account's password; None when the config has no admin account.
    pub async fn admin_password(&self, cfg: &NodeConfig) -> Result<Option<Secret>, AgentError> {
        let Some(admin) = &cfg.admin else {
            return Ok(None);
        };
        self.admin
            .read(&admin.credential)
            .await
            .map(Some)
            .map_err(|e| relabel(e, "admin credential"))
    }
}

fn relabel(e: AgentError, what: &str) -> AgentError {
    match e {
        AgentError::Credential { reason, .. } => AgentError::Credential {
            what: what.to_string(),
            reason,
        },
        other => other,
    }
}

fn cred_err(reason: String) -> AgentError {
    AgentError::Credential {
        what: "credential".into(),
        reason,
    }
}

fn non_empty(s: String, from: &str) -> Result<Secret, AgentError> {
    let trimmed = s.trim_end_matches(['\n', '\r']).to_string();
    if trimmed.is_empty() {
        return Err(cred_err(format!("{from} is empty")));
    }
    Ok(Secret(trimmed))
}

/// Reads the referenced SSM parameter with decryption. Honors the SDK's usual
/// environment (AWS_ENDPOINT_URL for LocalStack, AWS_* credentials), else the instance profile.
pub struct SsmCredentialSource;

impl CredentialSource for SsmCredentialSource {
    fn read<'a>(&'a self, cred: &'a CredentialRef) -> BoxFuture<'a, Result<Secret, AgentError>> {
        Box::pin(async move {
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(cred.ssm_region.clone()))
                .load()
                .await;
            let client = aws_sdk_ssm::Client::new(&sdk);
            let out = client
                .get_parameter()
                .name(&cred.ssm_parameter)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| {
                    cred_err(format!(
                        "SSM parameter {} in {}: {}",
                        cred.ssm_parameter,
                        cred.ssm_region,
                        aws_sdk_ssm::error::DisplayErrorContext(&e)
                    ))
                })?;
            let value = out.parameter.and_then(|p| p.value).ok_or_else(|| {
                cred_err(format!("SSM parameter {} has no value", cred.ssm_parameter))
            })?;
            non_empty(value, &format!("SSM parameter {}", cred.ssm_parameter))
        })
    }
}

/// A file holding the password (trailing newline ignored).
pub struct FileCredentialSource {
    pub path: std::path::PathBuf,
}

impl CredentialSource for FileCredentialSource {
    fn read<'a>(&'a self, _cred: &'a CredentialRef) -> BoxFuture<'a, Result<Secret, AgentError>> {
        Box::pin(async move {
            let s = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| cred_err(format!("{}: {e}", self.path.display())))?;
            non_empty(s, &self.path.display().to_string())
        })
    }
}

/// An environment variable holding the password.
pub struct EnvCredentialSource {
    pub var: String,
}

impl CredentialSource for EnvCredentialSource {
    fn read<'a>(&'a self, _cred: &'a CredentialRef) -> BoxFuture<'a, Result<Secret, AgentError>> {
        Box::pin(async move {
            let s = std::env::var(&self.var)
                .map_err(|_| cred_err(format!("environment variable {} is not set", self.var)))?;
            non_empty(s, &self.var)
        })
    }
}

/// A fixed value, for tests that build the agent in-process.
pub struct StaticCredentialSource(pub Secret);

impl CredentialSource for StaticCredentialSource {
    fn read<'a>(&'a self, _cred: &'a CredentialRef) -> BoxFuture<'a, Result<Secret, AgentError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_does_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn empty_values_are_refused() {
        assert!(non_empty("\n".into(), "f").is_err());
        assert_eq!(non_empty("pw\n".into(), "f").unwrap().expose(), "pw");
    }
}
