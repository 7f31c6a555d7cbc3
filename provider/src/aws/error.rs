//! `AwsError`: every failure of the AWS layer, worded for the person reading a Terraform
//! diagnostic. Each message names the object and says what to do next.

use std::time::Duration;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure an AWS error code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Unauthorized,
    LimitExceeded,
    DependencyViolation,
    AlreadyExists,
    InvalidInput,
    /// A state conflict that may clear (IncorrectState, IncorrectModificationState...).
    Conflict,
    /// AWS is rate-limiting the account's API calls: not a quota to raise, a rate to slow to.
    Throttled,
    /// AWS (or what is in front of it) answered with a server error (HTTP 5xx).
    Unavailable,
    Other,
}

impl ErrorKind {
    /// Retrying later may succeed; a lookup that failed this way says nothing about existence.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Unavailable)
    }
}

/// Sorts an AWS error code into an `ErrorKind`.
pub fn classify(code: &str) -> ErrorKind {
    match code {
        // Before the `*LimitExceeded` quota rule: `RequestLimitExceeded` is EC2's throttle.
        "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "SlowDown"
        | "EC2ThrottledException"
        | "PriorRequestNotComplete"
        | "BandwidthLimitExceeded"
        | "ProvisionedThroughputExceededException" => ErrorKind::Throttled,
        "InternalError"
        | "InternalFailure"
        | "InternalServerError"
        | "InternalServiceError"
        | "InternalServerErrorException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "Unavailable"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorKind::Unavailable,
        "UnauthorizedOperation"
        | "AccessDenied"
        | "AccessDeniedException"
        | "AuthFailure"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "UnrecognizedClientException"
        | "OptInRequired"
        | "Blocked"
        | "InvalidAccessKeyId"
        | "Forbidden" => ErrorKind::Unauthorized,
        "DependencyViolation" | "DeleteConflict" => ErrorKind::DependencyViolation,
        "InvalidGroup.Duplicate"
        | "EntityAlreadyExists"
        | "ParameterAlreadyExists"
        | "InvalidPermission.Duplicate"
        | "BucketAlreadyExists"
        | "BucketAlreadyOwnedByYou" => ErrorKind::AlreadyExists,
        // S3's HEAD requests have no body, so their 404 comes back as plain `NotFound`.
        "NoSuchEntity"
        | "ParameterNotFound"
        | "ParameterVersionNotFound"
        | "NotFound"
        | "NoSuchBucket"
        | "NoSuchKey" => ErrorKind::NotFound,
        "IncorrectState"
        | "IncorrectInstanceState"
        | "IncorrectModificationState"
        | "VolumeInUse"
        | "InvalidVolume.ZoneMismatch"
        | "ConcurrentModification"
        | "VolumeModificationRateExceeded" => ErrorKind::Conflict,
        "InsufficientInstanceCapacity" | "VcpuLimitExceeded" => ErrorKind::LimitExceeded,
        c if c.ends_with(".NotFound") || c.ends_with("NotFoundException") => ErrorKind::NotFound,
        c if c.ends_with("LimitExceeded") || c.ends_with("LimitExceededException") => {
            ErrorKind::LimitExceeded
        }
        c if c.starts_with("Invalid")
            || c.starts_with("Unsupported")
            || c.ends_with(".Malformed")
            || c == "MissingParameter"
            || c == "ValidationError"
            || c == "ValidationException"
            || c == "MalformedPolicyDocument" =>
        {
            ErrorKind::InvalidInput
        }
        _ => ErrorKind::Other,
    }
}

/// What to do about an error code, when there is something specific to say.
pub fn hint(code: &str, kind: ErrorKind) -> String {
    let specific = match code {
        "InvalidSubnetID.NotFound" => {
            "check subnet_id: the subnet must exist in this region and account"
        }
        "InvalidVpcID.NotFound" => "check that the subnet's VPC still exists",
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" | "InvalidAMIID.Unavailable" => {
            "check ami_id: the image must exist in this region and be shared with this account"
        }
        "InvalidGroup.NotFound" | "InvalidGroupId.Malformed" => {
            "check allowed_security_group_ids: every group must exist in the cluster's VPC"
        }
        "InvalidParameterValue" | "Unsupported" | "InvalidInstanceType" => {
            "check instance_type, ami_id and subnet_id: the instance type must be offered in the \
             subnet's availability zone and match the image's architecture"
        }
        "InvalidKeyPair.NotFound" => "the EC2 key pair does not exist in this region",
        "IncorrectModificationState" | "VolumeModificationRateExceeded" => {
            "a previous modification of this volume is still in progress; EBS allows one \
             modification every 6 hours: apply again later"
        }
        "InvalidVolume.ZoneMismatch" => {
            "a volume can only attach to a node in its own availability zone"
        }
        "InsufficientInstanceCapacity" => {
            "AWS has no capacity for this instance type in this zone right now: try another \
             instance_type or subnet, or apply again later"
        }
        _ => "",
    };
    if !specific.is_empty() {
        return specific.to_string();
    }
    match kind {
        ErrorKind::NotFound => "it may have been deleted outside Terraform".into(),
        ErrorKind::Unauthorized => "check the provider's credentials (access_key/secret_key, \
             profile, assume_role, AWS_* variables) and that their IAM policy allows this action"
            .into(),
        ErrorKind::LimitExceeded => {
            "an account or service quota was reached: raise it in Service Quotas, or remove \
             unused objects"
                .into()
        }
        ErrorKind::DependencyViolation => {
            "another object still uses it: remove that first, or apply again once it is gone".into()
        }
        ErrorKind::AlreadyExists => {
            "an object with this name exists but is not the one Strata made: rename, or import \
             it"
            .into()
        }
        ErrorKind::InvalidInput => "check the resource's arguments".into(),
        ErrorKind::Conflict => "the object is busy: apply again in a moment".into(),
        ErrorKind::Throttled => "AWS is throttling this account's API requests (a request \
             rate to slow down to, not a service limit to raise); the provider retried with backoff and gave up: apply \
             again later, raise the provider's max_retries, or run fewer applies at once"
            .into(),
        ErrorKind::Unavailable => "AWS answered with a server error even after the provider's \
             retries; it is usually transient: apply again, or raise the provider's max_retries"
            .into(),
        ErrorKind::Other => "apply again; if it persists, run with TF_LOG=debug".into(),
    }
}

/// Every error of `strata_provider::aws`.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An AWS API call failed.
    #[error("{operation} on {object} failed: {code}: {message} ({hint})")]
    Api {
        kind: ErrorKind,
        operation: String,
        object: String,
        code: String,
        message: String,
        hint: String,
    },
    /// The request never got an AWS answer (network, endpoint, timeout).
    #[error(
        "{operation} on {object}: could not reach AWS: {message} (check the network, the \
         region and any endpoints override)"
    )]
    Transport {
        operation: String,
        object: String,
        message: String,
    },
    /// A waiter gave up.
    #[error(
        "timed out after {waited:?} waiting for {object} to become {wanted} (last state: \
         {last_state}); raise the resource's timeouts or look at the object in the AWS console"
    )]
    Timeout {
        object: String,
        wanted: String,
        last_state: String,
        waited: Duration,
    },
    /// An object reached a state it cannot leave towards the wanted one.
    #[error("{object} is {state}, so it cannot become {wanted}: {what_to_do}")]
    BadState {
        object: String,
        state: String,
        wanted: String,
        what_to_do: String,
    },
    /// Terraform asked the provider to stop (Ctrl-C) while it was waiting.
    #[error(
        "cancelled while waiting for {waiting_for}: Terraform asked the provider to stop. \
         Apply again to finish: what was made is found again by its tags"
    )]
    Cancelled { waiting_for: String },
    /// The objects a create would make already belong to another resource instance.
    #[error(
        "{object} already exists and belongs to another Terraform resource (tag \
         strata:owner={owner}): two resources cannot manage the same AWS objects. Choose another \
         {attribute}; or, to manage the existing objects from here, remove them from the other \
         state (`terraform state rm`) and `terraform import` them into this resource"
    )]
    Owned {
        object: String,
        attribute: String,
        owner: String,
    },
    /// Two resources of one configuration would create the same objects.
    #[error(
        "{what} is used by two resources in this configuration: they would share (and destroy) \
         the same AWS objects. Give each its own {attribute}"
    )]
    Duplicate { what: String, attribute: String },
    /// A spec asked for something impossible before any call was made.
    #[error("{0}")]
    Invalid(String),
    /// The provider configuration is unusable.
    #[error("provider configuration: {0}")]
    Config(String),
    /// Credential validation (STS GetCallerIdentity) failed.
    #[error(
        "the AWS credentials could not be validated: {message}. Check access_key/secret_key, \
         profile, shared_credentials_files, assume_role or the AWS_* variables; set \
         skip_credentials_validation = true for emulators without STS"
    )]
    Credentials { message: String },
    /// A field AWS always returns was missing from a response.
    #[error("{operation} on {object}: AWS returned no {field}")]
    MissingField {
        operation: String,
        object: String,
        field: String,
    },
    /// No agent build for an instance type's architecture ships with this provider.
    #[error(
        "no strata-agent build for {arch} (looked for {}). Use an instance type whose \
         architecture has an agent build (x86_64: e.g. m7i.large, r7i.large), or set ami_id to \
         an image with the engine and the agent (at /usr/local/bin/strata-agent) baked in; \
         STRATA_AGENT_DIR names another folder holding strata-agent_linux_<arch> builds",
        looked_for.join(", ")
    )]
    NoAgentBuild {
        arch: String,
        looked_for: Vec<String>,
    },
    /// A node reported that its first boot failed (`strata:node-state` = `failed`).
    #[error(
        "node {instance_id} ({node}) failed during first boot: {reason}. Its user-data log is \
         /var/log/strata-user-data.log on the node (also in the console output: `aws ec2 \
         get-console-output --instance-id {instance_id}`)"
    )]
    NodeFailed {
        instance_id: String,
        node: String,
        reason: String,
    },
    /// A node never reported `ready` within the provider's `node_ready_timeout`.
    #[error(
        "node {instance_id} ({node}) never reported ready within {waited:?} (last \
         strata:node-state: {last_state}). Look at its console output (`aws ec2 \
         get-console-output --instance-id {instance_id}`) or, on the node, \
         /var/log/strata-user-data.log and `journalctl -u strata-agent`. If first boot is just \
         slow, raise the provider's node_ready_timeout; for EC2 emulators whose instances never \
         boot, set node_ready_timeout = \"0s\""
    )]
    NodeNotReady {
        instance_id: String,
        node: String,
        last_state: String,
        waited: Duration,
    },
    /// A create failed after some objects were made and could not be removed: the caller
    /// should keep them in state as tainted.
    #[error("{source}; objects left behind that could not be cleaned up: {leftovers:?}")]
    Partial {
        #[source]
        source: Box<AwsError>,
        leftovers: Vec<String>,
    },
}

impl AwsError {
    /// Maps an SDK error. `operation` is the API call (`ec2:RunInstances`), `object` names the
    /// Strata object it was for (`source instance of cluster "orders"`).
    pub fn from_sdk<E>(
        err: aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
        operation: &str,
        object: &str,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_smithy_runtime_api::client::result::SdkError;
        if crate::cancel::is_cancelled() {
            return AwsError::Cancelled {
                waiting_for: format!("{operation} on {object}"),
            };
        }
        let status = err.raw_response().map(|r| r.status().as_u16());
        match &err {
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => {}
            SdkError::ConstructionFailure(_) => {
                // The request could not even be built (a malformed endpoint override, say):
                // the SDK's Debug dump of the request helps nobody; its error chain does.
                return AwsError::Config(format!(
                    "{operation} on {object}: the request could not be built: {}",
                    error_chain(&err)
                ));
            }
            _ => {
                return AwsError::Transport {
                    operation: operation.into(),
                    object: object.into(),
                    message: error_chain(&err),
                };
            }
        }
        let code = err.code().map(str::to_string);
        // An answer with no AWS error code in it (a proxy's or load balancer's 503 page, an
        // empty 500) is classified by its HTTP status, not reported as a parse failure.
        if let (None, Some(st)) = (&code, status)
            && (st >= 500 || st == 429)
        {
            let kind = if st == 429 {
                ErrorKind::Throttled
            } else {
                ErrorKind::Unavailable
            };
            let code = format!("HTTP {st}");
            let message = err.message().map(str::to_string).unwrap_or_else(|| {
                format!(
                    "{} (no AWS error in the answer)",
                    http_reason(st).unwrap_or("server error")
                )
            });
            return AwsError::Api {
                kind,
                operation: operation.into(),
                object: object.into(),
                hint: hint(&code, kind),
                code,
                message,
            };
        }
        let code = code.unwrap_or_else(|| "Unknown".into());
        let message = err
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| error_chain(&err));
        Self::api(operation, object, &code, &message)
    }

    /// Builds an `Api` error from a code and message (also used by unit tests).
    pub fn api(operation: &str, object: &str, code: &str, message: &str) -> AwsError {
        let kind = classify(code);
        AwsError::Api {
            kind,
            operation: operation.into(),
            object: object.into(),
            code: code.into(),
            message: message.into(),
            hint: hint(code, kind),
        }
    }

    pub fn missing(operation: &str, object: &str, field: &str) -> AwsError {
        AwsError::MissingField {
            operation: operation.into(),
            object: object.into(),
            field: field.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            AwsError::Api { kind, .. } => *kind,
            AwsError::Partial { source, .. } => source.kind(),
            _ => ErrorKind::Other,
        }
    }

    /// The AWS error code, if AWS answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => Some(code),
            AwsError::Partial { source, .. } => source.code(),
            _ => None,
        }
    }

    /// The object is gone: a read should drop it from state.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// Throttling, a 5xx or no answer at all: says nothing about whether an object exists.
    pub fn is_transient(&self) -> bool {
        match self {
            AwsError::Transport { .. } => true,
            AwsError::Partial { source, .. } => source.is_transient(),
            _ => self.kind().is_transient(),
        }
    }

    pub fn is_kind(&self, kind: ErrorKind) -> bool {
        self.kind() == kind
    }

    /// Objects a failed create left behind (to keep in state as tainted).
    pub fn leftovers(&self) -> &[String] {
        match self {
            AwsError::Partial { leftovers, .. } => leftovers,
            _ => &[],
        }
    }
}

fn http_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub type Result<T, E = AwsError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        assert_eq!(classify("InvalidInstanceID.NotFound"), ErrorKind::NotFound);
        assert_eq!(classify("InvalidVolume.NotFound"), ErrorKind::NotFound);
        assert_eq!(classify("NoSuchEntity"), ErrorKind::NotFound);
        assert_eq!(classify("ParameterNotFound"), ErrorKind::NotFound);
        assert_eq!(classify("UnauthorizedOperation"), ErrorKind::Unauthorized);
        assert_eq!(classify("AuthFailure"), ErrorKind::Unauthorized);
        assert_eq!(classify("InstanceLimitExceeded"), ErrorKind::LimitExceeded);
        assert_eq!(classify("VolumeLimitExceeded"), ErrorKind::LimitExceeded);
        assert_eq!(
            classify("DependencyViolation"),
            ErrorKind::DependencyViolation
        );
        assert_eq!(classify("InvalidGroup.Duplicate"), ErrorKind::AlreadyExists);
        assert_eq!(classify("InvalidParameterValue"), ErrorKind::InvalidInput);
        assert_eq!(classify("IncorrectInstanceState"), ErrorKind::Conflict);
        assert_eq!(classify("SomethingNew"), ErrorKind::Other);
        // Throttles are a rate, never "a quota to raise".
        for c in [
            "RequestLimitExceeded",
            "Throttling",
            "ThrottlingException",
            "SlowDown",
            "TooManyRequestsException",
        ] {
            assert_eq!(classify(c), ErrorKind::Throttled, "{c}");
            assert!(!hint(c, classify(c)).contains("quota"), "{c}");
        }
        for c in ["InternalError", "ServiceUnavailable", "InternalFailure"] {
            assert_eq!(classify(c), ErrorKind::Unavailable, "{c}");
        }
        assert!(
            AwsError::api("ec2:DescribeInstances", "x", "RequestLimitExceeded", "m").is_transient()
        );
        assert!(
            !AwsError::api("ec2:DescribeInstances", "x", "RequestLimitExceeded", "m")
                .is_not_found()
        );
    }

    #[test]
    fn messages_name_the_object_and_say_what_to_do() {
        let e = AwsError::api(
            "ec2:RunInstances",
            "source instance of cluster \"orders\"",
            "InvalidSubnetID.NotFound",
            "The subnet ID 'subnet-1' does not exist",
        );
        let s = e.to_string();
        assert!(s.contains("cluster \"orders\""), "{s}");
        assert!(s.contains("check subnet_id"), "{s}");
        // Hints name attributes the schemas really have.
        let h = hint("InvalidAMIID.NotFound", ErrorKind::NotFound);
        assert!(h.contains("ami_id"), "{h}");
        assert!(!hint("InvalidParameterValue", ErrorKind::InvalidInput).contains("ami "));
        // A missing subnet on create is still "not found" to callers that care.
        assert!(e.is_not_found());

        let e = AwsError::api("ec2:DescribeInstances", "x", "UnauthorizedOperation", "no");
        assert!(e.to_string().contains("check the provider's credentials"));
        assert!(!e.is_not_found());

        let e = AwsError::api("ec2:RunInstances", "x", "InstanceLimitExceeded", "too many");
        assert!(e.to_string().contains("quota"));

        let e = AwsError::Partial {
            source: Box::new(AwsError::api("ec2:RunInstances", "x", "NoSuchEntity", "m")),
            leftovers: vec!["sg-1".into()],
        };
        assert!(e.is_not_found());
        assert_eq!(e.leftovers(), ["sg-1".to_string()]);
        assert!(e.to_string().contains("sg-1"));
    }
}
