//! The `strata` provider itself: its configuration block (region, credentials, endpoints,
//! default tags) and the resource types it serves. Configure builds the shared AWS clients
//! once; every resource borrows them.

use std::sync::Arc;

use crate::aws::{AssumeRole, AwsConfig, Clients, Endpoints};
use crate::cty::Value;
use crate::framework::{
    Attr, Block, DataSource, Diagnostic, Diagnostics, NestedBlock, Provider, ProviderData,
    Resource, Schema, Type, async_trait, validators,
};
use crate::resources::common::{
    bool_attr, i64_attr, parse_duration, str_attr, string_list, string_map,
};

#[derive(Debug, Default)]
pub struct StrataProvider;

impl StrataProvider {
    pub fn new() -> Self {
        StrataProvider
    }
}

fn endpoint(service: &str) -> Attr {
    Attr::string(service).optional().description(format!(
        "Custom endpoint URL for {}, e.g. `http://127.0.0.1:4566` for LocalStack.",
        service.to_uppercase()
    ))
}

pub fn provider_schema() -> Schema {
    Schema::builder(0)
        .description(
            "Strata deploys a replicated MySQL-compatible database (source, read replicas, \
             self-growing storage segments, read-only regions) into your own AWS account.",
        )
        .attribute(Attr::string("region").optional().description(
            "Home AWS region. Defaults to `AWS_REGION`, then `AWS_DEFAULT_REGION`, then the \
             shared config profile's region.",
        ))
        .attribute(Attr::string("profile").optional().description(
            "Named profile from the shared config and credentials files (`AWS_PROFILE`).",
        ))
        .attribute(
            Attr::string("access_key")
                .optional()
                .sensitive()
                .description("AWS access key id. Prefer a profile or the environment."),
        )
        .attribute(
            Attr::string("secret_key")
                .optional()
                .sensitive()
                .description("AWS secret access key; goes with `access_key`."),
        )
        .attribute(
            Attr::list("shared_config_files", Type::String)
                .optional()
                .description("Paths of shared config files (default `~/.aws/config`)."),
        )
        .attribute(
            Attr::list("shared_credentials_files", Type::String)
                .optional()
                .description("Paths of shared credentials files (default `~/.aws/credentials`)."),
        )
        .attribute(Attr::bool("skip_credentials_validation").optional().description(
            "Skip the STS GetCallerIdentity check at configure time (emulators without STS).",
        ))
        .attribute(
            Attr::number("max_retries")
                .optional()
                .validate(validators::int_range(0, 100))
                .description("How many times an AWS call is retried after throttling, an HTTP 5xx answer or a transport failure (reset, timeout), with adaptive rate limiting and jittered exponential backoff (0.2 s doubling to 20 s). Default: `AWS_MAX_ATTEMPTS` - 1 when set, else 25, which rides out several minutes of sustained throttling."),
        )
        .attribute(
            Attr::string("node_ready_timeout")
                .optional()
                .validate(validators::custom(
                    "a duration such as 30s, 20m or 1h",
                    |v| match v.as_str() {
                        Some(s) => parse_duration(s).map(|_| ()),
                        None => Ok(()),
                    },
                ))
                .description(
                    "How long an apply waits for each node it launches to report ready (its \
                     `strata:node-state` tag: the engine and agent installed, the role \
                     bootstrapped), as a duration such as `20m` (the default). A node that \
                     reports `failed` fails the apply with its reason. `0s` does not wait: for \
                     EC2 emulators such as LocalStack whose instances never boot.",
                ),
        )
        .block(
            NestedBlock::single(
                "assume_role",
                Block::new()
                    .description("Assume an IAM role with the base credentials before calling AWS.")
                    .attribute(Attr::string("role_arn").required().description("ARN of the role to assume."))
                    .attribute(Attr::string("session_name").optional().description("Session name (default `strata`)."))
                    .attribute(Attr::string("external_id").optional().description("External id the role's trust policy requires.")),
            ),
        )
        .block(NestedBlock::single(
            "default_tags",
            Block::new()
                .description("Tags added to every AWS object Strata creates; a resource's own `tags` win.")
                .attribute(Attr::map("tags", Type::String).optional().description("The tags.")),
        ))
        .block(NestedBlock::single(
            "endpoints",
            Block::new()
                .description("Per-service endpoint overrides (LocalStack and other emulators). `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` work too.")
                .attribute(endpoint("ec2"))
                .attribute(endpoint("ebs"))
                .attribute(endpoint("iam"))
                .attribute(endpoint("ssm"))
                .attribute(endpoint("sts"))
                .attribute(endpoint("s3"))
                .attribute(endpoint("route53")),
        ))
        .build()
}

/// The provider block as an `AwsConfig`.
pub fn aws_config(config: &Value) -> Result<AwsConfig, Diagnostics> {
    let block = |name: &str| config.get_attr(name).filter(|v| !v.is_null()).cloned();
    let assume_role = block("assume_role").map(|b| AssumeRole {
        role_arn: str_attr(&b, "role_arn").unwrap_or_default(),
        session_name: str_attr(&b, "session_name"),
        external_id: str_attr(&b, "external_id"),
    });
    let endpoints = block("endpoints")
        .map(|b| Endpoints {
            ec2: str_attr(&b, "ec2"),
            ebs: str_attr(&b, "ebs"),
            iam: str_attr(&b, "iam"),
            ssm: str_attr(&b, "ssm"),
            sts: str_attr(&b, "sts"),
            s3: str_attr(&b, "s3"),
            route53: str_attr(&b, "route53"),
        })
        .unwrap_or_default();
    let max_retries = match i64_attr(config, "max_retries") {
        Some(n) => Some(u32::try_from(n).map_err(|_| {
            Diagnostics::from(
                Diagnostic::error("Invalid max_retries", "max_retries must be 0 to 100")
                    .at(crate::cty::AttributePath::attr("max_retries")),
            )
        })?),
        None => None,
    };
    let node_ready_timeout = match str_attr(config, "node_ready_timeout") {
        Some(s) => Some(parse_duration(&s).map_err(|e| {
            Diagnostics::from(
                Diagnostic::error("Invalid node_ready_timeout", e)
                    .at(crate::cty::AttributePath::attr("node_ready_timeout")),
            )
        })?),
        None => None,
    };
    Ok(AwsConfig {
        region: str_attr(config, "region"),
        profile: str_attr(config, "profile"),
        access_key: str_attr(config, "access_key"),
        secret_key: str_attr(config, "secret_key"),
        token: None,
        assume_role,
        shared_config_files: string_list(config, "shared_config_files"),
        shared_credentials_files: string_list(config, "shared_credentials_files"),
        default_tags: block("default_tags")
            .map(|b| string_map(&b, "tags"))
            .unwrap_or_default(),
        endpoints,
        skip_credentials_validation: bool_attr(config, "skip_credentials_validation")
            .unwrap_or(false),
        max_retries,
        node_ready_timeout,
    })
}

#[async_trait]
impl Provider for StrataProvider {
    fn schema(&self) -> Schema {
        provider_schema()
    }

    async fn configure(
        &self,
        config: Value,
        terraform_version: String,
    ) -> Result<ProviderData, Diagnostics> {
        let cfg = aws_config(&config)?;
        // A configure starts a graph walk: duplicates are looked for within one walk only.
        crate::aws::ownership::reset_plan_claims();
        tracing::debug!(%terraform_version, region = ?cfg.region, "configuring the AWS clients");
        let clients = Clients::connect(&cfg).await.map_err(|e| {
            Diagnostics::from(Diagnostic::error(
                "Cannot configure the strata provider",
                e.to_string(),
            ))
        })?;
        Ok(Arc::new(clients))
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        crate::resources::all()
    }

    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        crate::datasources::all()
    }
}
