//! The resource side of `aws::ownership`: the hooks `strata_cluster` and `strata_region` call
//! at plan, create and read so that one resource instance owns its objects.

use crate::aws::ownership::{self, Anchor, ApplyClaim, TAG_ORIGIN, TAG_OWNER};
use crate::aws::{AwsError, Clients, network};
use crate::cty::AttributePath;
use crate::framework::{ApplyFailure, Diagnostic, Diagnostics, PlanChange};

/// An identity: what makes two resources the same objects, and the attribute that sets it.
pub struct Identity<'a> {
    /// Unique key (`strata_cluster/us-east-1/orders`).
    pub key: String,
    /// For messages (`strata_cluster name "orders"`).
    pub describe: String,
    /// The attribute a user changes to pick another identity.
    pub attribute: &'a str,
    /// Region of the anchor (`None`: the provider's).
    pub region: Option<String>,
    /// Tag filters that find the anchor security group.
    pub anchor_filters: Vec<(String, String)>,
    /// Tag filters of the instance whose life makes the objects a working whole (the
    /// cluster's source): an owned anchor without one is what is left of a resource whose
    /// node died, and a create may take it over to repair it.
    pub live_node_filters: Vec<(String, String)>,
}

fn diag_at(e: &AwsError, attribute: &str) -> Diagnostics {
    let summary = match e {
        AwsError::Duplicate { .. } => "Two resources would manage the same AWS objects",
        AwsError::Owned { .. } => "The AWS objects belong to another resource",
        _ => "Ownership check failed",
    };
    Diagnostic::error(summary, e.to_string())
        .at(AttributePath::attr(attribute))
        .into()
}

/// At plan: a second create of one identity in this configuration is refused.
pub fn plan_create(plan: &PlanChange, id: &Identity<'_>) -> Result<(), Diagnostics> {
    if !plan.is_create() {
        return Ok(());
    }
    let fingerprint = plan.config.is_wholly_known().then(|| {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        plan.config.hash(&mut h);
        h.finish()
    });
    ownership::plan_claim(&id.key, &id.describe, id.attribute, fingerprint)
        .map_err(|e| diag_at(&e, id.attribute))
}

/// A create in progress: holds the in-process claim; `owner` goes in the private state.
pub struct Creating {
    _claim: ApplyClaim,
    pub owner: String,
}

/// `(tag key, value)` pairs as EC2 `tag:<key>` filters.
fn tag_filters(tags: &[(String, String)]) -> Vec<(String, String)> {
    tags.iter()
        .map(|(k, v)| (format!("tag:{k}"), v.clone()))
        .collect()
}

fn as_refs(filters: &[(String, String)]) -> Vec<(&str, &str)> {
    filters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

async fn anchor(c: &Clients, id: &Identity<'_>) -> Result<Option<network::GroupInfo>, AwsError> {
    let rc = c.region(id.region.as_deref()).await?;
    let filters = tag_filters(&id.anchor_filters);
    Ok(network::find_groups(&rc.ec2, &as_refs(&filters))
        .await?
        .into_iter()
        .next())
}

async fn live_node(c: &Clients, id: &Identity<'_>) -> Result<bool, AwsError> {
    let rc = c.region(id.region.as_deref()).await?;
    let filters = tag_filters(&id.live_node_filters);
    Ok(!crate::aws::node::find_nodes(&rc, &as_refs(&filters))
        .await?
        .is_empty())
}

/// Before a create: refuses an identity another create in this process holds, or whose anchor
/// a finished create owns; adopts what an unfinished one left.
pub async fn begin_create(c: &Clients, id: &Identity<'_>) -> Result<Creating, ApplyFailure> {
    let claim = ApplyClaim::take(&id.key, &id.describe, id.attribute)
        .map_err(|e| ApplyFailure::from(diag_at(&e, id.attribute)))?;
    let found = anchor(c, id).await.map_err(|e| {
        ApplyFailure::from(Diagnostics::from(Diagnostic::error(
            format!("{}: ownership check failed", id.describe),
            e.to_string(),
        )))
    })?;
    let mut verdict = ownership::anchor_verdict(
        found
            .as_ref()
            .and_then(|g| g.tags.get(TAG_OWNER).map(String::as_str)),
        found.is_some(),
    );
    // Made from this very configuration (a re-apply whose state tofu never wrote): take it back.
    if matches!(verdict, Anchor::Owned(_))
        && found
            .as_ref()
            .and_then(|g| g.tags.get(TAG_ORIGIN))
            .is_some_and(|o| *o == ownership::origin())
    {
        tracing::info!(identity = %id.describe, "taking back objects this configuration made");
        verdict = Anchor::Unfinished;
    }
    if matches!(verdict, Anchor::Owned(_)) && !id.live_node_filters.is_empty() {
        let alive = live_node(c, id).await.map_err(|e| {
            ApplyFailure::from(Diagnostics::from(Diagnostic::error(
                format!("{}: ownership check failed", id.describe),
                e.to_string(),
            )))
        })?;
        if !alive {
            tracing::info!(identity = %id.describe, "the owner's node is gone: repairing");
            verdict = Anchor::Unfinished;
        }
    }
    if let (Some(g), Anchor::Owned(_)) = (&found, &verdict) {
        let object = format!("security group {} of {}", g.group_id, id.describe);
        ownership::check_anchor(&verdict, &object, id.attribute)
            .map_err(|e| ApplyFailure::from(diag_at(&e, id.attribute)))?;
    }
    if verdict == Anchor::Unfinished {
        tracing::info!(identity = %id.describe, "adopting what an unfinished create left");
    }
    Ok(Creating {
        _claim: claim,
        owner: ownership::new_owner_id(),
    })
}

/// After a successful create: tags the anchor as this instance's. Returns the private state.
pub async fn finish_create(
    c: &Clients,
    id: &Identity<'_>,
    creating: &Creating,
    anchor_group_id: &str,
) -> Result<Vec<u8>, ApplyFailure> {
    let rc = c
        .region(id.region.as_deref())
        .await
        .map_err(|e| ApplyFailure::from(diag_at(&e, id.attribute)))?;
    ownership::mark_owned(
        &rc,
        &[anchor_group_id.to_string()],
        &creating.owner,
        Some(&ownership::origin()),
    )
    .await
    .map_err(|e| {
        ApplyFailure::from(Diagnostics::from(Diagnostic::error(
            format!("{}: could not record ownership", id.describe),
            e.to_string(),
        )))
    })?;
    Ok(creating.owner.clone().into_bytes())
}

/// At read: `None` when the anchor belongs to another instance (then this one's objects are
/// gone); otherwise the private state to keep (an instance with none takes the anchor's).
pub async fn read_check(
    c: &Clients,
    region: Option<&str>,
    group_id: &str,
    private: &[u8],
) -> Result<Option<Vec<u8>>, AwsError> {
    let rc = c.region(region).await?;
    let g = match network::describe_group(&rc.ec2, group_id).await {
        Ok(g) => g,
        Err(e) if e.is_not_found() => return Ok(Some(private.to_vec())),
        Err(e) => return Err(e),
    };
    let mine = String::from_utf8_lossy(private).to_string();
    let theirs = g.tags.get(TAG_OWNER).map(String::as_str);
    if !ownership::is_mine(&mine, theirs) {
        return Ok(None);
    }
    Ok(Some(if mine.is_empty() {
        theirs.unwrap_or_default().as_bytes().to_vec()
    } else {
        private.to_vec()
    }))
}

/// `strata_cluster`: one per name in the home region; its anchor is the cluster's group.
pub fn cluster_identity(home: &str, name: &str) -> Identity<'static> {
    Identity {
        key: format!("strata_cluster/{home}/{name}"),
        describe: format!("strata_cluster name {name:?}"),
        attribute: "name",
        region: None,
        anchor_filters: vec![
            (crate::aws::tags::TAG_CLUSTER.into(), name.into()),
            (
                crate::aws::tags::TAG_ROLE.into(),
                crate::aws::cluster::ROLE_SECURITY_GROUP.into(),
            ),
        ],
        live_node_filters: vec![
            (crate::aws::tags::TAG_CLUSTER.into(), name.into()),
            (
                crate::aws::tags::TAG_ROLE.into(),
                crate::aws::cluster::ROLE_SOURCE.into(),
            ),
        ],
    }
}

/// `strata_region`: one per cluster and region; its anchor is the region's group.
pub fn region_identity(cluster: &str, region: &str, resource: &str) -> Identity<'static> {
    Identity {
        key: format!("strata_region/{cluster}/{region}"),
        describe: format!("strata_region of cluster {cluster:?} in {region}"),
        attribute: "region",
        region: Some(region.to_string()),
        anchor_filters: vec![
            (crate::aws::tags::TAG_CLUSTER.into(), cluster.into()),
            (crate::aws::tags::TAG_RESOURCE.into(), resource.into()),
            (
                crate::aws::tags::TAG_ROLE.into(),
                crate::aws::region::ROLE_REGION_GROUP.into(),
            ),
        ],
        live_node_filters: Vec::new(),
    }
}

fn claim_failure(e: AwsError) -> ApplyFailure {
    ApplyFailure::from(Diagnostics::from(Diagnostic::error(
        "Could not look for what an unfinished create left",
        e.to_string(),
    )))
}

/// `strata_replica` create: the planned token, or that of a replica an unfinished create (tofu
/// killed mid-apply) launched in the same cluster and subnet.
pub async fn replica_token(
    c: &Clients,
    cluster: &str,
    subnet: &str,
    planned: &str,
) -> Result<ownership::TokenClaim, ApplyFailure> {
    let rc = c.home().await.map_err(claim_failure)?;
    let [(k1, v1), (k2, v2)] = ownership::replica_listing_filters(cluster);
    // Listed once for the cluster's replicas (the wave's creates share it; a cluster created
    // in this process moments ago listed them already), then by subnet.
    let candidates = ownership::unfinished_node_tokens(&rc, &[(&k1, &v1), (&k2, &v2)], |n| {
        n.subnet_id.as_deref() == Some(subnet)
    })
    .await
    .map_err(claim_failure)?;
    let claim = ownership::choose_token(planned, &candidates).map_err(claim_failure)?;
    if claim.adopted {
        tracing::info!(token = %claim.token, "adopting a replica an unfinished create launched");
    }
    Ok(claim)
}

/// `strata_storage_segment` create: as [`replica_token`], for the volumes of one resource
/// address in the node's zone (never a volume the autoscaler added).
pub async fn segment_token(
    c: &Clients,
    cluster: &str,
    resource: &str,
    availability_zone: Option<&str>,
    autoscaled_tag: &str,
    planned: &str,
) -> Result<ownership::TokenClaim, ApplyFailure> {
    let rc = c.home().await.map_err(claim_failure)?;
    let tc = format!("tag:{}", crate::aws::tags::TAG_CLUSTER);
    let tr = format!("tag:{}", crate::aws::tags::TAG_ROLE);
    let tres = format!("tag:{}", crate::aws::tags::TAG_RESOURCE);
    let candidates = ownership::unfinished_volume_tokens(
        &rc,
        &[
            (&tc, cluster),
            (&tr, crate::aws::segment::ROLE_SEGMENT),
            (&tres, resource),
        ],
        availability_zone,
        autoscaled_tag,
    )
    .await
    .map_err(claim_failure)?;
    ownership::choose_token(planned, &candidates).map_err(claim_failure)
}

/// An unnamed resource's read: the state holds it, so it is owned now (a later create never
/// takes it for an unfinished one). `tags` are the object's; only adoptable tokens are marked.
pub async fn mark_read(
    c: &Clients,
    id: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<(), AwsError> {
    if tags.contains_key(TAG_OWNER) {
        return Ok(());
    }
    let Some(token) = tags
        .get(crate::aws::tags::TAG_TOKEN)
        .filter(|t| ownership::is_adoptable_token(t))
    else {
        return Ok(());
    };
    let rc = c.home().await?;
    ownership::mark_owned(&rc, &[id.to_string()], token, None).await
}
