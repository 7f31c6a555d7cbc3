//! The lease store: the cluster's S3 bucket. The lease is only ever written conditionally
//! (`If-None-Match: *` to create, `If-Match: <etag>` to replace), which is the one primitive
//! the "exactly one source" guarantee rests on: S3 applies conditional writes to one key
//! atomically, so of two agents replacing the same version exactly one succeeds.

use aws_sdk_s3::primitives::ByteStream;
use std::time::Duration;
use strata_topology::LeaseRef;
use strata_topology::failover::{
    Lease, Member, SwitchoverRequest, lease_key, member_key, members_prefix, parse_lease,
    parse_member, parse_member_key, parse_switchover, render_lease, render_member,
    render_switchover, switchover_key,
};
use strata_topology::replace::{
    LaunchSpec, Replacement, launch_spec_key, parse_launch_spec, parse_replacement,
    render_launch_spec, render_replacement, replacement_key,
};
use strata_topology::roll::{
    DesiredConfig, cluster_config_key, config_key, parse_desired_config, render_desired_config,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The conditional write lost: another writer changed (or created) the object first.
    #[error("lease changed under us (precondition failed)")]
    Conflict,
    /// S3 could not be reached or answered with an error; nothing is known.
    #[error("lease store: {0}")]
    Unavailable(String),
    #[error("lease store object {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// An object's version, as S3 names it.
pub type ETag = String;

#[derive(Clone)]
pub struct LeaseStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    timeout: Duration,
}

impl LeaseStore {
    /// A client whose every call gives up after `timeout` with one attempt: a lease
    /// decision must never wait on a stalled connection longer than it can afford.
    /// `endpoint` overrides AWS_ENDPOINT_URL (which the SDK honours by itself).
    pub async fn connect(lease: &LeaseRef, timeout: Duration, endpoint: Option<&str>) -> Self {
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(lease.region.clone()))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(timeout)
                    .operation_timeout(timeout)
                    .operation_attempt_timeout(timeout)
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1));
        let s3 = crate::s3::client(loader, endpoint).await;
        LeaseStore {
            s3,
            bucket: lease.bucket.clone(),
            prefix: lease.key_prefix.clone(),
            timeout,
        }
    }

    /// Bounds a whole call, body included (the SDK's timeouts end at the headers).
    async fn bounded<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout * 2, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!("{what}: timed out"))),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, ETag)>, StoreError> {
        self.bounded(key, self.get_unbounded(key)).await
    }

    async fn get_unbounded(&self, key: &str) -> Result<Option<(Vec<u8>, ETag)>, StoreError> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    return Ok(None);
                }
                return Err(unavailable(&e));
            }
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading {key}: {e}")))?;
        Ok(Some((body.into_bytes().to_vec(), etag)))
    }

    async fn put(
        &self,
        key: &str,
        body: String,
        condition: Condition<'_>,
    ) -> Result<ETag, StoreError> {
        self.bounded(key, self.put_unbounded(key, body, condition))
            .await
    }

    async fn put_unbounded(
        &self,
        key: &str,
        body: String,
        condition: Condition<'_>,
    ) -> Result<ETag, StoreError> {
        let mut req = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body.into_bytes()));
        req = match condition {
            Condition::None => req,
            Condition::Absent => req.if_none_match("*"),
            Condition::Version(etag) => req.if_match(etag),
        };
        match req.send().await {
            Ok(o) => Ok(o.e_tag().unwrap_or_default().to_string()),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                // 412: the precondition failed; 409: a concurrent conditional write won.
                if matches!(status, Some(412) | Some(409)) {
                    Err(StoreError::Conflict)
                } else {
                    Err(unavailable(&e))
                }
            }
        }
    }

    /// The lease and its version; None when no lease was ever written.
    pub async fn read_lease(&self) -> Result<Option<(Lease, ETag)>, StoreError> {
        let key = lease_key(&self.prefix);
        match self.get(&key).await? {
            None => Ok(None),
            Some((body, etag)) => {
                parse_lease(&body)
                    .map(|l| Some((l, etag)))
                    .map_err(|e| StoreError::Corrupt {
                        key,
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// Creates the first lease; Conflict when one exists.
    pub async fn create_lease(&self, lease: &Lease) -> Result<ETag, StoreError> {
        self.put(
            &lease_key(&self.prefix),
            render_lease(lease),
            Condition::Absent,
        )
        .await
    }

    /// Replaces the lease version `etag`; Conflict when it is no longer the current one.
    pub async fn replace_lease(&self, lease: &Lease, etag: &str) -> Result<ETag, StoreError> {
        self.put(
            &lease_key(&self.prefix),
            render_lease(lease),
            Condition::Version(etag),
        )
        .await
    }

    pub async fn write_member(&self, m: &Member) -> Result<(), StoreError> {
        self.put(
            &member_key(&self.prefix, &m.node_id),
            render_member(m),
            Condition::None,
        )
        .await
        .map(|_| ())
    }

    /// One node's member object; None when it has none. Unlike [`Self::members`], a failed
    /// read is an error (`Unavailable`), not a missing member; an unparsable one is `Corrupt`.
    pub async fn read_member(&self, node_id: &str) -> Result<Option<Member>, StoreError> {
        let key = member_key(&self.prefix, node_id);
        match self.get(&key).await? {
            None => Ok(None),
            Some((body, _)) => parse_member(&body)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key,
                    reason: e.to_string(),
                }),
        }
    }

    /// Every member object; unreadable ones are skipped (a member that writes garbage is
    /// not a member).
    pub async fn members(&self) -> Result<Vec<Member>, StoreError> {
        let prefix = members_prefix(&self.prefix);
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            let keys: Vec<String> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter(|k| parse_member_key(&self.prefix, k).is_some())
                .map(str::to_string)
                .collect();
            let reads = keys.iter().map(|k| self.get(k));
            for (key, got) in keys.iter().zip(futures::future::join_all(reads).await) {
                // One unreadable member (a node that died mid-write, a slow read) must not
                // hide the others: it simply does not count as live.
                match got {
                    Ok(Some((body, _))) => match parse_member(&body) {
                        Ok(m) => out.push(m),
                        Err(e) => tracing::warn!(%key, error = %e, "unreadable member object"),
                    },
                    Ok(None) => {}
                    Err(e) => tracing::debug!(%key, error = %e, "member object not read"),
                }
            }
            if page.is_truncated() == Some(true) {
                token = page.next_continuation_token().map(str::to_string);
            } else {
                break;
            }
        }
        Ok(out)
    }

    pub async fn read_switchover(&self) -> Result<Option<SwitchoverRequest>, StoreError> {
        let key = switchover_key(&self.prefix);
        match self.get(&key).await? {
            None => Ok(None),
            Some((body, _)) => parse_switchover(&body)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key,
                    reason: e.to_string(),
                }),
        }
    }

    pub async fn request_switchover(&self, r: &SwitchoverRequest) -> Result<(), StoreError> {
        self.put(
            &switchover_key(&self.prefix),
            render_switchover(r),
            Condition::None,
        )
        .await
        .map(|_| ())
    }

    /// This node's desired engine settings, None when no roll ever wrote them.
    pub async fn read_desired_config(
        &self,
        node_id: &str,
    ) -> Result<Option<DesiredConfig>, StoreError> {
        let key = if node_id.is_empty() {
            cluster_config_key(&self.prefix)
        } else {
            config_key(&self.prefix, node_id)
        };
        match self.get(&key).await? {
            None => Ok(None),
            Some((body, _)) => {
                parse_desired_config(&body)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key,
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// Writes `d` for its node; an empty `node_id` is the cluster-wide object
    /// ([`cluster_config_key`]), also read by [`Self::read_desired_config`] with `""`.
    pub async fn write_desired_config(&self, d: &DesiredConfig) -> Result<(), StoreError> {
        let key = if d.node_id.is_empty() {
            cluster_config_key(&self.prefix)
        } else {
            config_key(&self.prefix, &d.node_id)
        };
        self.put(&key, render_desired_config(d), Condition::None)
            .await
            .map(|_| ())
    }

    /// Publishes this node's launch parameters (replaced on every start).
    pub async fn write_launch_spec(&self, spec: &LaunchSpec) -> Result<(), StoreError> {
        let key = launch_spec_key(&self.prefix, &spec.node_id);
        self.put(&key, render_launch_spec(spec), Condition::None)
            .await
            .map(|_| ())
    }

    /// A node's launch parameters; None when it never published them.
    pub async fn read_launch_spec(&self, node_id: &str) -> Result<Option<LaunchSpec>, StoreError> {
        let key = launch_spec_key(&self.prefix, node_id);
        match self.get(&key).await? {
            None => Ok(None),
            Some((body, _)) => {
                parse_launch_spec(&body)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key,
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// The claim on replacing `lost_instance_id`, with its version.
    pub async fn read_replacement(
        &self,
        lost_instance_id: &str,
    ) -> Result<Option<(Replacement, ETag)>, StoreError> {
        let key = replacement_key(&self.prefix, lost_instance_id);
        match self.get(&key).await? {
            None => Ok(None),
            Some((body, etag)) => parse_replacement(&body)
                .map(|r| Some((r, etag)))
                .map_err(|e| StoreError::Corrupt {
                    key,
                    reason: e.to_string(),
                }),
        }
    }

    /// Creates the claim (`If-None-Match: *`: [`StoreError::Conflict`] when another node
    /// claimed it first), or replaces the version `etag` names.
    pub async fn write_replacement(
        &self,
        r: &Replacement,
        etag: Option<&str>,
    ) -> Result<ETag, StoreError> {
        let key = replacement_key(&self.prefix, &r.lost_instance_id);
        let cond = match etag {
            None => Condition::Absent,
            Some(e) => Condition::Version(e),
        };
        self.put(&key, render_replacement(r), cond).await
    }

    pub async fn clear_switchover(&self) -> Result<(), StoreError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(switchover_key(&self.prefix))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&e))
    }
}

enum Condition<'a> {
    None,
    Absent,
    Version(&'a str),
}

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> StoreError {
    StoreError::Unavailable(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}
