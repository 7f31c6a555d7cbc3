//! Provider configuration and the per-region SDK client factory.
//!
//! `AwsConfig` is what the `provider "strata"` block says; `resolve_settings` folds in the
//! standard `AWS_*` environment variables the way the Terraform AWS provider does (explicit
//! configuration wins). `Clients` builds one SDK client set per region on first use and shares
//! it; no lock is held across an await, so independent resources never wait on each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_types::SdkConfig;
use aws_types::region::Region;
use tokio::sync::OnceCell;

use super::coalesce::{Coalescer, POLL_GATHER};
use super::error::AwsError;
use super::memo::Memo;
use super::retry;

/// `assume_role { ... }` in the provider block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssumeRole {
    pub role_arn: String,
    pub session_name: Option<String>,
    pub external_id: Option<String>,
}

/// `endpoints { ... }`: per-service endpoint overrides (LocalStack and other emulators).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub ec2: Option<String>,
    pub ebs: Option<String>,
    pub iam: Option<String>,
    pub ssm: Option<String>,
    pub sts: Option<String>,
    pub s3: Option<String>,
    pub route53: Option<String>,
}

/// How long the provider waits for a node it launched to report ready, when nothing says.
pub const DEFAULT_NODE_READY_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The provider block, as plain Rust. Every field is optional; the environment and the shared
/// files fill in what it leaves out.
#[derive(Debug, Clone, Default)]
pub struct AwsConfig {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// A session token to go with `access_key`/`secret_key` (Terraform's `token`).
    pub token: Option<String>,
    pub assume_role: Option<AssumeRole>,
    pub shared_config_files: Vec<String>,
    pub shared_credentials_files: Vec<String>,
    pub default_tags: BTreeMap<String, String>,
    pub endpoints: Endpoints,
    pub skip_credentials_validation: bool,
    /// Retries after the first attempt (Terraform's meaning); `None`: `AWS_MAX_ATTEMPTS`, else
    /// `retry::DEFAULT_MAX_RETRIES`.
    pub max_retries: Option<u32>,
    /// How long to wait for a launched node's `strata:node-state` tag to say `ready`; zero: do
    /// not wait (EC2 emulators whose instances never boot). `None`: the default, 20 minutes.
    pub node_ready_timeout: Option<Duration>,
}

/// Which services `Endpoints` covers, with the suffix their `AWS_ENDPOINT_URL_<X>` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ec2,
    Ebs,
    Iam,
    Ssm,
    Sts,
    S3,
    Route53,
}

impl Service {
    fn env_suffix(self) -> &'static str {
        match self {
            Service::Ec2 => "EC2",
            Service::Ebs => "EBS",
            Service::Iam => "IAM",
            Service::Ssm => "SSM",
            Service::Sts => "STS",
            Service::S3 => "S3",
            Service::Route53 => "ROUTE_53",
        }
    }
}

/// The configuration after the environment has been folded in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedSettings {
    /// `None`: left to the shared config file's profile (aws-config looks there).
    pub region: Option<String>,
    pub profile: Option<String>,
    pub static_credentials: Option<(String, String, Option<String>)>,
    pub endpoints: Endpoints,
    pub max_attempts: Option<u32>,
    pub skip_credentials_validation: bool,
}

impl ResolvedSettings {
    pub fn endpoint(&self, service: Service) -> Option<&str> {
        match service {
            Service::Ec2 => self.endpoints.ec2.as_deref(),
            Service::Ebs => self.endpoints.ebs.as_deref(),
            Service::Iam => self.endpoints.iam.as_deref(),
            Service::Ssm => self.endpoints.ssm.as_deref(),
            Service::Sts => self.endpoints.sts.as_deref(),
            Service::S3 => self.endpoints.s3.as_deref(),
            Service::Route53 => self.endpoints.route53.as_deref(),
        }
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// Folds the `AWS_*` environment into `cfg`. `env` is a lookup so tests need not touch the
/// process environment.
pub fn resolve_settings(
    cfg: &AwsConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ResolvedSettings, AwsError> {
    let env = |k: &str| non_empty(env(k));
    let region = non_empty(cfg.region.clone())
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"));
    let profile = non_empty(cfg.profile.clone()).or_else(|| env("AWS_PROFILE"));

    let static_credentials = match (
        non_empty(cfg.access_key.clone()),
        non_empty(cfg.secret_key.clone()),
    ) {
        (Some(a), Some(s)) => Some((a, s, non_empty(cfg.token.clone()))),
        (None, None) => None,
        _ => {
            return Err(AwsError::Config(
                "access_key and secret_key must be set together (or neither, to use the \
                 environment, a profile or an instance role)"
                    .into(),
            ));
        }
    };
    // Only an explicit profile stops the environment's keys from applying: that is the order the
    // AWS provider documents (static config, env, shared files, container/instance roles).
    let static_credentials = static_credentials.or_else(|| {
        if non_empty(cfg.profile.clone()).is_some() {
            return None;
        }
        match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(a), Some(s)) => Some((a, s, env("AWS_SESSION_TOKEN"))),
            _ => None,
        }
    });

    let global = env("AWS_ENDPOINT_URL");
    let pick = |explicit: &Option<String>, svc: Service| {
        non_empty(explicit.clone())
            .or_else(|| env(&format!("AWS_ENDPOINT_URL_{}", svc.env_suffix())))
            .or_else(|| global.clone())
    };
    let e = &cfg.endpoints;
    let endpoints = Endpoints {
        ec2: pick(&e.ec2, Service::Ec2),
        ebs: pick(&e.ebs, Service::Ebs),
        iam: pick(&e.iam, Service::Iam),
        ssm: pick(&e.ssm, Service::Ssm),
        sts: pick(&e.sts, Service::Sts),
        s3: pick(&e.s3, Service::S3),
        route53: pick(&e.route53, Service::Route53),
    };

    let max_attempts = match cfg.max_retries {
        Some(r) => Some(r.saturating_add(1)),
        None => match env("AWS_MAX_ATTEMPTS") {
            Some(v) => Some(v.parse::<u32>().map_err(|_| {
                AwsError::Config(format!("AWS_MAX_ATTEMPTS={v:?} is not a whole number"))
            })?),
            None => None,
        },
    };
    Ok(ResolvedSettings {
        region,
        profile,
        static_credentials,
        endpoints,
        max_attempts: max_attempts.map(|n| n.max(1)),
        skip_credentials_validation: cfg.skip_credentials_validation,
    })
}

/// The SDK clients for one region. Cheap to clone (each client is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct RegionClients {
    pub region: String,
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub s3: aws_sdk_s3::Client,
    /// Route 53 is global; the client still carries the region for signing (us-east-1 is
    /// where AWS serves it, whatever the region).
    pub route53: aws_sdk_route53::Client,
    /// Answers shared by the resources of this process (see `memo`).
    pub shared: Arc<Shared>,
}

/// What one region's resources read once and share: see [`super::memo`].
#[derive(Debug)]
pub struct Shared {
    /// A subnet's VPC, AZ and CIDR never change.
    pub subnets: Memo<String, super::network::SubnetInfo>,
    /// The default image per instance architecture: one lookup per process, so every node of
    /// one apply runs the same image.
    pub default_amis: Memo<&'static str, String>,
    /// An image's root device name, by image id.
    pub image_roots: Memo<String, String>,
    /// A cluster as read back, by name; kept briefly (a wave of replicas, segments and regions
    /// planning and creating against one cluster), replaced by a create or update of the
    /// cluster in this process and dropped by its delete.
    pub clusters: Memo<String, super::cluster::ClusterInfo>,
    /// An instance's user-data never changes while it lives: its NodeConfig, by instance id.
    pub node_configs: Memo<String, Option<strata_topology::NodeConfig>>,
    /// Agent builds known to be in S3 (`bucket/key`; the key holds the build's SHA-256).
    pub uploaded: Memo<String, bool>,
    /// Instances this process launched, as the launch's wait read them, by instance id; kept
    /// briefly for the next wave (the segments made on them), dropped when a volume is
    /// attached to one (its devices changed).
    pub launched: Memo<String, super::node::NodeInfo>,
    /// Live instances by listing filters, for the creates of one wave that look for what an
    /// unfinished create left (`ownership::unfinished_node_tokens`); kept briefly.
    pub unfinished_nodes: Memo<String, Vec<super::node::NodeInfo>>,
    /// As `unfinished_nodes`, for volumes: each one's zone and tags.
    #[allow(clippy::type_complexity)]
    pub unfinished_volumes: Memo<String, Vec<(Option<String>, BTreeMap<String, String>)>>,
    /// Instance waits (running, stopped, terminated) polling together share a DescribeInstances.
    pub instance_polls: Coalescer<super::node::NodeInfo>,
    /// Volume waits (available, attached, deleted) polling together share a DescribeVolumes.
    pub volume_polls: Coalescer<super::segment::SegmentInfo>,
}

/// How long a cluster read is shared: long enough for one wave of dependent resources, short
/// enough that a process serving several walks reads again.
pub const CLUSTER_READ_TTL: Duration = Duration::from_secs(30);

impl Default for Shared {
    fn default() -> Self {
        Shared {
            subnets: Memo::new(None),
            default_amis: Memo::new(None),
            image_roots: Memo::new(None),
            clusters: Memo::new(Some(CLUSTER_READ_TTL)),
            node_configs: Memo::new(None),
            uploaded: Memo::new(None),
            launched: Memo::new(Some(CLUSTER_READ_TTL)),
            unfinished_nodes: Memo::new(Some(CLUSTER_READ_TTL)),
            unfinished_volumes: Memo::new(Some(CLUSTER_READ_TTL)),
            instance_polls: Coalescer::new(POLL_GATHER),
            volume_polls: Coalescer::new(POLL_GATHER),
        }
    }
}

/// Who the credentials belong to (STS GetCallerIdentity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

/// The per-region client factory. Share it (`Arc<Clients>` or `&Clients`) across resources.
#[derive(Debug)]
pub struct Clients {
    base: SdkConfig,
    settings: ResolvedSettings,
    default_region: String,
    default_tags: BTreeMap<String, String>,
    node_ready_timeout: Duration,
    /// STS GetCallerIdentity, asked once: the account id names the cluster's agent bucket.
    identity: OnceCell<CallerIdentity>,
    // The outer lock guards only the map; initialisation runs inside the cell, outside the lock.
    regions: Mutex<HashMap<String, Arc<OnceCell<Arc<RegionClients>>>>>,
}

impl Clients {
    /// Loads credentials and region, builds the home region's clients, and validates the
    /// credentials with STS GetCallerIdentity unless `skip_credentials_validation`.
    pub async fn connect(cfg: &AwsConfig) -> Result<Clients, AwsError> {
        let settings = resolve_settings(cfg, |k| std::env::var(k).ok())?;
        Self::connect_with(cfg, settings).await
    }

    /// As `connect`, with settings already resolved (tests pass their own).
    pub async fn connect_with(
        cfg: &AwsConfig,
        settings: ResolvedSettings,
    ) -> Result<Clients, AwsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &settings.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(p) = &settings.profile {
            loader = loader.profile_name(p.clone());
        }
        if !cfg.shared_config_files.is_empty() || !cfg.shared_credentials_files.is_empty() {
            loader = loader.profile_files(profile_files(cfg));
        }
        if let Some((a, s, t)) = &settings.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                a.clone(),
                s.clone(),
                t.clone(),
                None,
                "strata-provider-config",
            ));
        }
        // Every client retries throttling, 5xx and transport failures (see `retry`).
        loader = loader.retry_config(retry::retry_config(
            settings
                .max_attempts
                .unwrap_or(retry::DEFAULT_MAX_RETRIES + 1),
        ));
        let mut base = loader.load().await;
        let default_region = base.region().map(|r| r.to_string()).ok_or_else(|| {
            AwsError::Config(
                "no AWS region: set `region` in the provider block, AWS_REGION, or a region in \
                 the shared config file's profile"
                    .into(),
            )
        })?;

        if let Some(ar) = &cfg.assume_role {
            // STS for assume-role must honour the sts endpoint override too.
            let mut sts_base = base.clone().into_builder();
            if let Some(url) = settings.endpoint(Service::Sts) {
                sts_base = sts_base.endpoint_url(url);
            }
            let mut b = aws_config::sts::AssumeRoleProvider::builder(ar.role_arn.clone())
                .configure(&sts_base.build());
            if let Some(s) = &ar.session_name {
                b = b.session_name(s.clone());
            }
            if let Some(x) = &ar.external_id {
                b = b.external_id(x.clone());
            }
            let provider = b.build().await;
            base = base
                .into_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                )
                .build();
        }

        let clients = Clients {
            base,
            settings,
            default_region,
            default_tags: cfg.default_tags.clone(),
            node_ready_timeout: cfg.node_ready_timeout.unwrap_or(DEFAULT_NODE_READY_TIMEOUT),
            identity: OnceCell::new(),
            regions: Mutex::new(HashMap::new()),
        };
        if !clients.settings.skip_credentials_validation {
            let id = clients.validate_credentials().await?;
            // Kept: the agent bucket's name needs the account id later.
            let _ = clients.identity.set(id);
        }
        Ok(clients)
    }

    pub fn default_region(&self) -> &str {
        &self.default_region
    }

    pub fn default_tags(&self) -> &BTreeMap<String, String> {
        &self.default_tags
    }

    pub fn settings(&self) -> &ResolvedSettings {
        &self.settings
    }

    /// How long to wait for a launched node to report ready; zero: do not wait.
    pub fn node_ready_timeout(&self) -> Duration {
        self.node_ready_timeout
    }

    /// The account the credentials belong to (STS GetCallerIdentity, asked once per process).
    pub async fn account_id(&self) -> Result<String, AwsError> {
        let id = self
            .identity
            .get_or_try_init(|| self.validate_credentials())
            .await?;
        if id.account.is_empty() {
            return Err(AwsError::missing(
                "sts:GetCallerIdentity",
                "the provider credentials",
                "Account",
            ));
        }
        Ok(id.account.clone())
    }

    /// True when any endpoint is overridden: an emulator, where some lookups (public AMI
    /// parameters) do not exist.
    pub fn uses_custom_endpoints(&self) -> bool {
        let e = &self.settings.endpoints;
        e.ec2.is_some() || e.ssm.is_some() || e.iam.is_some()
    }

    /// The client set for `region` (`None`: the provider's region), built on first use.
    pub async fn region(&self, region: Option<&str>) -> Result<Arc<RegionClients>, AwsError> {
        let name = region
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.default_region)
            .to_string();
        let cell = {
            let mut map = self
                .regions
                .lock()
                .map_err(|_| AwsError::Config("client cache lock poisoned".into()))?;
            map.entry(name.clone()).or_default().clone()
        };
        let rc = cell
            .get_or_init(|| async { Arc::new(self.build_region(&name)) })
            .await;
        Ok(rc.clone())
    }

    /// The provider's own region.
    pub async fn home(&self) -> Result<Arc<RegionClients>, AwsError> {
        self.region(None).await
    }

    fn build_region(&self, region: &str) -> RegionClients {
        let r = Region::new(region.to_string());
        let s = &self.settings;
        let mut ec2 = aws_sdk_ec2::config::Builder::from(&self.base)
            .region(r.clone())
            .retry_partition(retry::partition("ec2", region))
            .sleep_impl(crate::cancel::CancellableSleep)
            .interceptor(crate::cancel::CancelInterceptor);
        if let Some(u) = s.endpoint(Service::Ec2) {
            ec2 = ec2.endpoint_url(u);
        }
        let mut ssm = aws_sdk_ssm::config::Builder::from(&self.base)
            .region(r.clone())
            .retry_partition(retry::partition("ssm", region))
            .sleep_impl(crate::cancel::CancellableSleep)
            .interceptor(crate::cancel::CancelInterceptor);
        if let Some(u) = s.endpoint(Service::Ssm) {
            ssm = ssm.endpoint_url(u);
        }
        let mut iam = aws_sdk_iam::config::Builder::from(&self.base)
            .region(r.clone())
            .retry_partition(retry::partition("iam", region))
            .sleep_impl(crate::cancel::CancellableSleep)
            .interceptor(crate::cancel::CancelInterceptor);
        if let Some(u) = s.endpoint(Service::Iam) {
            iam = iam.endpoint_url(u);
        }
        let mut sts = aws_sdk_sts::config::Builder::from(&self.base)
            .region(r.clone())
            .retry_partition(retry::partition("sts", region))
            .sleep_impl(crate::cancel::CancellableSleep)
            .interceptor(crate::cancel::CancelInterceptor);
        if let Some(u) = s.endpoint(Service::Sts) {
            sts = sts.endpoint_url(u);
        }
        let mut route53 = aws_sdk_route53::config::Builder::from(&self.base)
            .region(r.clone())
            .retry_partition(retry::partition("route53", region))
            .sleep_impl(crate::cancel::CancellableSleep)
            .interceptor(crate::cancel::CancelInterceptor);
        if let Some(u) = s.endpoint(Service::Route53) {
            route53 = route53.endpoint_url(u);
        }
        let mut s3 = aws_sdk_s3::config::Builder::from(&self.base)
            .region(r)
            .retry_partition(retry::partition("s3", region))
            .sleep_impl(crate::cancel::CancellableSleep)
            .interceptor(crate::cancel::CancelInterceptor);
        if let Some(u) = s.endpoint(Service::S3) {
            // Emulators answer on one host name: virtual-hosted bucket names would not resolve.
            s3 = s3.endpoint_url(u).force_path_style(true);
        }
        RegionClients {
            region: region.to_string(),
            ec2: aws_sdk_ec2::Client::from_conf(ec2.build()),
            ssm: aws_sdk_ssm::Client::from_conf(ssm.build()),
            iam: aws_sdk_iam::Client::from_conf(iam.build()),
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            route53: aws_sdk_route53::Client::from_conf(route53.build()),
            shared: Arc::default(),
        }
    }

    /// STS GetCallerIdentity with the configured credentials.
    pub async fn validate_credentials(&self) -> Result<CallerIdentity, AwsError> {
        let rc = self.home().await?;
        let out = rc.sts.get_caller_identity().send().await.map_err(|e| {
            let inner = AwsError::from_sdk(e, "sts:GetCallerIdentity", "the provider credentials");
            AwsError::Credentials {
                message: inner.to_string(),
            }
        })?;
        Ok(CallerIdentity {
            account: out.account.unwrap_or_default(),
            arn: out.arn.unwrap_or_default(),
            user_id: out.user_id.unwrap_or_default(),
        })
    }
}

#[allow(deprecated)] // aws-config re-exports aws-runtime's type under this older name.
fn profile_files(cfg: &AwsConfig) -> aws_config::profile::profile_file::ProfileFiles {
    use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
    let mut b = ProfileFiles::builder();
    if cfg.shared_config_files.is_empty() {
        b = b.include_default_config_file(true);
    }
    if cfg.shared_credentials_files.is_empty() {
        b = b.include_default_credentials_file(true);
    }
    for f in &cfg.shared_config_files {
        b = b.with_file(ProfileFileKind::Config, expand_home(f));
    }
    for f in &cfg.shared_credentials_files {
        b = b.with_file(ProfileFileKind::Credentials, expand_home(f));
    }
    b.build()
}

fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn explicit_config_wins_over_environment() {
        let cfg = AwsConfig {
            region: Some("eu-west-1".into()),
            endpoints: Endpoints {
                ec2: Some("http://explicit:1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = resolve_settings(
            &cfg,
            env_of(&[
                ("AWS_REGION", "us-west-2"),
                ("AWS_ENDPOINT_URL", "http://global:2"),
                ("AWS_ENDPOINT_URL_EC2", "http://env-ec2:3"),
                ("AWS_ENDPOINT_URL_SSM", "http://env-ssm:4"),
            ]),
        )
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.endpoint(Service::Ec2), Some("http://explicit:1"));
        assert_eq!(s.endpoint(Service::Ssm), Some("http://env-ssm:4"));
        assert_eq!(s.endpoint(Service::Iam), Some("http://global:2"));
    }

    #[test]
    fn region_falls_back_to_default_region_variable() {
        let s = resolve_settings(
            &AwsConfig::default(),
            env_of(&[("AWS_DEFAULT_REGION", "ap-south-1")]),
        )
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("ap-south-1"));
        let s = resolve_settings(
            &AwsConfig::default(),
            env_of(&[
                ("AWS_DEFAULT_REGION", "ap-south-1"),
                ("AWS_REGION", "sa-east-1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("sa-east-1"));
    }

    #[test]
    fn credentials_and_profile_precedence() {
        let env = [
            ("AWS_ACCESS_KEY_ID", "envkey"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_PROFILE", "envprofile"),
        ];
        let s = resolve_settings(&AwsConfig::default(), env_of(&env)).unwrap();
        assert_eq!(
            s.static_credentials,
            Some(("envkey".into(), "envsecret".into(), None))
        );
        assert_eq!(s.profile.as_deref(), Some("envprofile"));

        let cfg = AwsConfig {
            profile: Some("mine".into()),
            ..Default::default()
        };
        let s = resolve_settings(&cfg, env_of(&env)).unwrap();
        assert_eq!(
            s.static_credentials, None,
            "an explicit profile beats env keys"
        );
        assert_eq!(s.profile.as_deref(), Some("mine"));

        let cfg = AwsConfig {
            access_key: Some("a".into()),
            ..Default::default()
        };
        let err = resolve_settings(&cfg, env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("secret_key"), "{err}");
    }

    #[test]
    fn max_retries_counts_retries_not_attempts() {
        let cfg = AwsConfig {
            max_retries: Some(4),
            ..Default::default()
        };
        let s = resolve_settings(&cfg, env_of(&[("AWS_MAX_ATTEMPTS", "9")])).unwrap();
        assert_eq!(s.max_attempts, Some(5));
        let s =
            resolve_settings(&AwsConfig::default(), env_of(&[("AWS_MAX_ATTEMPTS", "9")])).unwrap();
        assert_eq!(s.max_attempts, Some(9));
        assert!(
            resolve_settings(&AwsConfig::default(), env_of(&[("AWS_MAX_ATTEMPTS", "x")])).is_err()
        );
    }
}
