//! The cluster's endpoints: a Route 53 private hosted zone associated with the cluster's VPCs,
//! and in it `writer.<cluster>.<domain>` (A, the source), `_epoch.writer...` (TXT, the lease
//! epoch that last moved the writer), `reader.<cluster>.<domain>` (A, several values: the home
//! replicas) and `reader-<region>.<cluster>.<domain>` per read-only region.
//!
//! The provider makes the zone and the first values of the records; afterwards the agents own
//! the values (a promotion moves the writer, the source's agent keeps the readers equal to the
//! healthy replicas). So nothing here ever overwrites an existing writer record: a missing
//! zone or writer record is drift to repair, a writer that points elsewhere is a failover.
//!
//! The zone is found again by name, VPC and `strata:cluster` tag (or, untagged after a crash
//! between CreateHostedZone and the tagging call, by the marker in its comment), so a retried
//! apply never makes a second zone.

use std::collections::BTreeMap;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet, RrType,
    Tag, TagResourceType, Vpc, VpcRegion,
};

use super::config::RegionClients;
use super::error::{AwsError, ErrorKind};
use super::tags::{TAG_CLUSTER, TAG_RESOURCE, TAG_ROLE};

/// The domain under which clusters get their own zone (`<cluster>.strata.internal`).
pub const DEFAULT_DOMAIN: &str = "strata.internal";
/// Seconds; short, so clients follow a failover within the 10 s budget.
pub const DEFAULT_TTL: u32 = 5;
/// Security group tags recording the cluster's endpoints (the group is the cluster's record of
/// its settings, like `strata:port`).
pub use strata_topology::tags::{TAG_DNS_NAME, TAG_DNS_ZONE, TAG_DNS_ZONE_OWNED as TAG_DNS_OWNED};
pub const ROLE_ZONE: &str = "dns-zone";

/// `<cluster>.<domain>`: every endpoint name of the cluster ends with it.
pub fn base_name(cluster: &str, domain: &str) -> String {
    format!("{cluster}.{}", domain.trim_matches('.'))
}

pub fn writer_name(base: &str) -> String {
    format!("writer.{base}")
}

pub fn reader_name(base: &str) -> String {
    format!("reader.{base}")
}

/// A read-only region's reader name (the contract's `reader-<region>.<base>`).
pub fn region_reader_name(base: &str, region: &str) -> String {
    format!("reader-{region}.{base}")
}

/// `host:port`, the format `writer_endpoint` has always had.
pub fn endpoint(name: &str, port: u16) -> String {
    format!("{name}:{port}")
}

/// Route 53 answers ids as `/hostedzone/Z...`; policies and tags use the bare id.
pub fn short_zone_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_string()
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn zone_comment(cluster: &str) -> String {
    format!("Strata cluster {cluster} endpoints ({TAG_CLUSTER}={cluster})")
}

/// The cluster's zone as the provider knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Bare id (`Z...`).
    pub zone_id: String,
    /// `<cluster>.<domain>`.
    pub base: String,
    pub owned: bool,
}

impl Zone {
    /// The security group tags that find this zone again.
    pub fn group_tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_DNS_ZONE.to_string(), self.zone_id.clone()),
            (TAG_DNS_NAME.to_string(), self.base.clone()),
            (TAG_DNS_OWNED.to_string(), self.owned.to_string()),
        ])
    }

    /// From the cluster group's tags; `None` on clusters made before endpoints existed.
    pub fn from_group_tags(tags: &BTreeMap<String, String>) -> Option<Zone> {
        Some(Zone {
            zone_id: tags.get(TAG_DNS_ZONE)?.clone(),
            base: tags.get(TAG_DNS_NAME)?.clone(),
            owned: tags.get(TAG_DNS_OWNED).is_none_or(|v| v == "true"),
        })
    }
}

/// What `ensure_zone` needs.
#[derive(Debug, Clone)]
pub struct ZoneSpec {
    pub cluster: String,
    pub resource: String,
    pub creation_token: String,
    /// Used when `user_zone_id` is `None`: Strata makes `<cluster>.<domain>`.
    pub domain: String,
    /// A private zone the user made: records go in it as `writer.<cluster>.<its name>`.
    pub user_zone_id: Option<String>,
    pub vpc_id: String,
    pub vpc_region: String,
    /// The full tag set (default tags, user tags, `strata:*`).
    pub tags: BTreeMap<String, String>,
}

fn r53_err<E>(
    e: aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
    op: &str,
    what: &str,
) -> AwsError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    let e = AwsError::from_sdk(e, op, what);
    // Route 53 names its not-found codes per object.
    match &e {
        AwsError::Api { code, .. }
            if matches!(
                code.as_str(),
                "NoSuchHostedZone" | "HostedZoneNotFound" | "NoSuchChange"
            ) =>
        {
            AwsError::api(op, what, "NotFound", &e.to_string())
        }
        _ => e,
    }
}

/// A zone's name, private flag and VPCs; not-found when it is gone.
pub async fn describe_zone(
    rc: &RegionClients,
    zone_id: &str,
) -> Result<(String, bool, Vec<(String, String)>), AwsError> {
    let what = format!("hosted zone {zone_id}");
    let out = rc
        .route53
        .get_hosted_zone()
        .id(short_zone_id(zone_id))
        .send()
        .await
        .map_err(|e| r53_err(e, "route53:GetHostedZone", &what))?;
    let hz = out
        .hosted_zone()
        .ok_or_else(|| AwsError::missing("route53:GetHostedZone", &what, "HostedZone"))?;
    let private = hz.config().is_some_and(|c| c.private_zone());
    let vpcs = out
        .vpcs()
        .iter()
        .map(|v| {
            (
                v.vpc_id().unwrap_or_default().to_string(),
                v.vpc_region()
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    Ok((hz.name().trim_end_matches('.').to_string(), private, vpcs))
}

async fn zone_tags(
    rc: &RegionClients,
    zone_id: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let what = format!("hosted zone {zone_id}");
    let out = rc
        .route53
        .list_tags_for_resource()
        .resource_type(TagResourceType::Hostedzone)
        .resource_id(short_zone_id(zone_id))
        .send()
        .await
        .map_err(|e| r53_err(e, "route53:ListTagsForResource", &what))?;
    Ok(out
        .resource_tag_set()
        .map(|s| {
            s.tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

async fn tag_zone(
    rc: &RegionClients,
    zone_id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    // Route 53 takes at most 10 tags per call.
    let all: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    for chunk in all.chunks(10) {
        rc.route53
            .change_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(short_zone_id(zone_id))
            .set_add_tags(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| {
                r53_err(
                    e,
                    "route53:ChangeTagsForResource",
                    &format!("hosted zone {zone_id}"),
                )
            })?;
    }
    Ok(())
}

/// The cluster's own zone `name` associated with `vpc_id`: tagged as the cluster's, or
/// untagged with Strata's comment marker (a create interrupted before its tagging call).
pub async fn find_zone(
    rc: &RegionClients,
    name: &str,
    vpc_id: &str,
    cluster: &str,
) -> Result<Option<String>, AwsError> {
    let out = rc
        .route53
        .list_hosted_zones_by_name()
        .dns_name(fqdn(name))
        .max_items(100)
        .send()
        .await
        .map_err(|e| r53_err(e, "route53:ListHostedZonesByName", name))?;
    for hz in out.hosted_zones() {
        if !same_name(hz.name(), name) || !hz.config().is_some_and(|c| c.private_zone()) {
            continue;
        }
        let id = short_zone_id(hz.id());
        let (_, _, vpcs) = match describe_zone(rc, &id).await {
            Ok(z) => z,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        if !vpcs.iter().any(|(v, _)| v == vpc_id) {
            continue;
        }
        let tags = zone_tags(rc, &id).await?;
        let ours = match tags.get(TAG_CLUSTER) {
            Some(c) => c == cluster,
            None => hz
                .config()
                .and_then(|c| c.comment())
                .is_some_and(|c| c == zone_comment(cluster)),
        };
        if ours {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The cluster's zone: the user's (checked, and associated with the VPC if it is not yet), or
/// Strata's own, found again or made and tagged. Returns it and whether it was made now.
pub async fn ensure_zone(rc: &RegionClients, spec: &ZoneSpec) -> Result<(Zone, bool), AwsError> {
    if let Some(id) = spec.user_zone_id.as_deref().filter(|s| !s.is_empty()) {
        let id = short_zone_id(id);
        let (name, private, vpcs) = describe_zone(rc, &id).await?;
        if !private {
            return Err(AwsError::Invalid(format!(
                "{}: dns_zone_id {id} ({name}) is a public zone; the endpoints need a private \
                 hosted zone",
                spec.resource
            )));
        }
        if !vpcs.iter().any(|(v, _)| *v == spec.vpc_id) {
            associate_vpc(rc, &id, &spec.vpc_id, &spec.vpc_region).await?;
        }
        return Ok((
            Zone {
                zone_id: id,
                base: base_name(&spec.cluster, &name),
                owned: false,
            },
            false,
        ));
    }
    let name = base_name(&spec.cluster, &spec.domain);
    let zone = |id: String| Zone {
        zone_id: id,
        base: name.clone(),
        owned: true,
    };
    if let Some(id) = find_zone(rc, &name, &spec.vpc_id, &spec.cluster).await? {
        tag_zone(rc, &id, &spec.tags).await?;
        return Ok((zone(id), false));
    }
    // The caller reference must be unique per request even after a delete: the lookup above,
    // not the reference, is what makes a retry find the first zone.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let reference: String = format!("{}-{nanos:x}", spec.creation_token)
        .chars()
        .rev()
        .take(128)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let out = rc
        .route53
        .create_hosted_zone()
        .name(&name)
        .caller_reference(reference)
        .vpc(zone_vpc(&spec.vpc_id, &spec.vpc_region))
        // LocalStack requires a comment; it is also the marker find_zone trusts untagged.
        .hosted_zone_config(
            HostedZoneConfig::builder()
                .comment(zone_comment(&spec.cluster))
                .private_zone(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| r53_err(e, "route53:CreateHostedZone", &name))?;
    let id = out
        .hosted_zone()
        .map(|z| short_zone_id(z.id()))
        .ok_or_else(|| AwsError::missing("route53:CreateHostedZone", &name, "HostedZone"))?;
    tracing::info!(zone_id = %id, %name, cluster = %spec.cluster, "hosted zone created");
    tag_zone(rc, &id, &spec.tags).await?;
    Ok((zone(id), true))
}

pub async fn associate_vpc(
    rc: &RegionClients,
    zone_id: &str,
    vpc_id: &str,
    vpc_region: &str,
) -> Result<(), AwsError> {
    let what = format!("hosted zone {zone_id} and VPC {vpc_id}");
    match rc
        .route53
        .associate_vpc_with_hosted_zone()
        .hosted_zone_id(short_zone_id(zone_id))
        .vpc(zone_vpc(vpc_id, vpc_region))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = r53_err(e, "route53:AssociateVPCWithHostedZone", &what);
            match &e {
                AwsError::Api { code, .. } if code == "ConflictingDomainExists" => Ok(()),
                _ if e.is_kind(ErrorKind::AlreadyExists) => Ok(()),
                _ => Err(e),
            }
        }
    }
}

fn zone_vpc(vpc_id: &str, vpc_region: &str) -> Vpc {
    Vpc::builder()
        .vpc_id(vpc_id)
        .vpc_region(VpcRegion::from(vpc_region))
        .build()
}

/// Removes a VPC from the zone; a VPC that is not associated (or a zone that is gone) is
/// success. The zone's last VPC cannot be removed: that one goes with the zone.
pub async fn disassociate_vpc(
    rc: &RegionClients,
    zone_id: &str,
    vpc_id: &str,
    vpc_region: &str,
) -> Result<(), AwsError> {
    let vpcs = match describe_zone(rc, zone_id).await {
        Ok((_, _, v)) => v,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    if !vpcs.iter().any(|(v, _)| v == vpc_id) || vpcs.len() < 2 {
        return Ok(());
    }
    rc.route53
        .disassociate_vpc_from_hosted_zone()
        .hosted_zone_id(short_zone_id(zone_id))
        .vpc(zone_vpc(vpc_id, vpc_region))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            r53_err(
                e,
                "route53:DisassociateVPCFromHostedZone",
                &format!("hosted zone {zone_id} and VPC {vpc_id}"),
            )
        })
}

/// Every record set of the zone (Route 53 pages by name).
pub async fn list_records(
    rc: &RegionClients,
    zone_id: &str,
) -> Result<Vec<ResourceRecordSet>, AwsError> {
    let what = format!("records of hosted zone {zone_id}");
    let mut out = Vec::new();
    let mut next: Option<(String, Option<RrType>, Option<String>)> = None;
    loop {
        let mut req = rc
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(short_zone_id(zone_id));
        if let Some((name, ty, ident)) = next.take() {
            req = req
                .start_record_name(name)
                .set_start_record_type(ty)
                .set_start_record_identifier(ident);
        }
        let page = req
            .send()
            .await
            .map_err(|e| r53_err(e, "route53:ListResourceRecordSets", &what))?;
        out.extend(page.resource_record_sets().iter().cloned());
        if !page.is_truncated() {
            break;
        }
        match page.next_record_name() {
            Some(n) => {
                next = Some((
                    n.to_string(),
                    page.next_record_type().cloned(),
                    page.next_record_identifier().map(str::to_string),
                ))
            }
            None => break,
        }
    }
    Ok(out)
}

/// The values of the simple record `name`/`ty`; `None` when there is none.
pub fn record_values(sets: &[ResourceRecordSet], name: &str, ty: &RrType) -> Option<Vec<String>> {
    sets.iter()
        .find(|s| same_name(s.name(), name) && s.r#type() == ty && s.set_identifier().is_none())
        .map(|s| {
            s.resource_records()
                .iter()
                .map(|r| r.value().to_string())
                .collect()
        })
}

fn record_set(
    name: &str,
    ty: RrType,
    values: &[String],
    ttl: u32,
) -> Result<ResourceRecordSet, AwsError> {
    let records = values
        .iter()
        .map(|v| ResourceRecord::builder().value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AwsError::Invalid(format!("record {name}: {e}")))?;
    ResourceRecordSet::builder()
        .name(fqdn(name))
        .r#type(ty)
        .ttl(i64::from(ttl))
        .set_resource_records(Some(records))
        .build()
        .map_err(|e| AwsError::Invalid(format!("record {name}: {e}")))
}

fn change(action: ChangeAction, set: ResourceRecordSet) -> Result<Change, AwsError> {
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(|e| AwsError::Invalid(format!("record change: {e}")))
}

async fn submit(
    rc: &RegionClients,
    zone_id: &str,
    changes: Vec<Change>,
    what: &str,
) -> Result<(), AwsError> {
    if changes.is_empty() {
        return Ok(());
    }
    let batch = ChangeBatch::builder()
        .set_changes(Some(changes))
        .comment("strata provider")
        .build()
        .map_err(|e| AwsError::Invalid(format!("change batch: {e}")))?;
    rc.route53
        .change_resource_record_sets()
        .hosted_zone_id(short_zone_id(zone_id))
        .change_batch(batch)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| r53_err(e, "route53:ChangeResourceRecordSets", what))
}

/// The records a cluster starts with, each made only when absent: the writer (A, the
/// source), its epoch TXT (`epoch=0 node=<source node id>`), and the home reader (A, the
/// source until replicas publish themselves). Existing values are the agents' and stay.
/// Returns the names it created.
pub async fn ensure_initial_records(
    rc: &RegionClients,
    zone: &Zone,
    source_ip: &str,
    source_node_id: &str,
    ttl: u32,
) -> Result<Vec<String>, AwsError> {
    Ok(initial_records(rc, zone, source_ip, source_node_id, ttl)
        .await?
        .0)
}

/// [`ensure_initial_records`], answering with the endpoints as they are after it (what
/// [`read_endpoints`] would read right then), without listing the zone again. `zone_made`:
/// the caller created the zone just now, so it holds no record of ours and is not listed
/// first (if one appeared meanwhile, the create fails and the listing decides after all).
pub async fn ensure_initial_endpoints(
    rc: &RegionClients,
    zone: &Zone,
    source_ip: &str,
    source_node_id: &str,
    ttl: u32,
    zone_made: bool,
) -> Result<EndpointsState, AwsError> {
    if zone_made {
        match initial_records_from(rc, zone, source_ip, source_node_id, ttl, Vec::new()).await {
            Ok((_, after)) => return Ok(after),
            Err(e) => {
                tracing::info!(error = %e, zone_id = %zone.zone_id, "the new zone's records changed meanwhile: listing it");
            }
        }
    }
    Ok(initial_records(rc, zone, source_ip, source_node_id, ttl)
        .await?
        .1)
}

async fn initial_records(
    rc: &RegionClients,
    zone: &Zone,
    source_ip: &str,
    source_node_id: &str,
    ttl: u32,
) -> Result<(Vec<String>, EndpointsState), AwsError> {
    let sets = list_records(rc, &zone.zone_id).await?;
    initial_records_from(rc, zone, source_ip, source_node_id, ttl, sets).await
}

/// [`initial_records`] against the zone's record sets `sets` as known.
async fn initial_records_from(
    rc: &RegionClients,
    zone: &Zone,
    source_ip: &str,
    source_node_id: &str,
    ttl: u32,
    sets: Vec<ResourceRecordSet>,
) -> Result<(Vec<String>, EndpointsState), AwsError> {
    let w = writer_name(&zone.base);
    let epoch = strata_topology::failover::writer_epoch_record_name(&w);
    let r = reader_name(&zone.base);
    let ip = vec![source_ip.to_string()];
    let mut changes = Vec::new();
    let mut made = Vec::new();
    let writer_now =
        record_values(&sets, &w, &RrType::A).or_else(|| record_values(&sets, &w, &RrType::Cname));
    let after = EndpointsState {
        zone_present: true,
        writer_present: true,
        writer_values: writer_now.clone().unwrap_or_else(|| ip.clone()),
        reader_values: record_values(&sets, &r, &RrType::A).unwrap_or_else(|| ip.clone()),
    };
    if writer_now.is_none() {
        changes.push(change(
            ChangeAction::Create,
            record_set(&w, RrType::A, &ip, ttl)?,
        )?);
        made.push(w.clone());
        // The epoch TXT is the agents' fencing record: made only when absent. A writer
        // repaired after a failover keeps the higher epoch already there.
        if record_values(&sets, &epoch, &RrType::Txt).is_none() {
            let txt = vec![strata_topology::failover::render_writer_epoch_txt(
                0,
                source_node_id,
            )];
            changes.push(change(
                ChangeAction::Create,
                record_set(&epoch, RrType::Txt, &txt, ttl)?,
            )?);
            made.push(epoch);
        }
    }
    if record_values(&sets, &r, &RrType::A).is_none() {
        changes.push(change(
            ChangeAction::Create,
            record_set(&r, RrType::A, &ip, ttl)?,
        )?);
        made.push(r);
    }
    submit(
        rc,
        &zone.zone_id,
        changes,
        &format!("endpoints in zone {}", zone.zone_id),
    )
    .await?;
    Ok((made, after))
}

/// Writes `name` = `ips` (A, several values), or deletes it when `ips` is empty. For the
/// records the provider fills at create (a region's reader); not for the writer.
pub async fn put_reader(
    rc: &RegionClients,
    zone_id: &str,
    name: &str,
    ips: &[String],
    ttl: u32,
) -> Result<(), AwsError> {
    if ips.is_empty() {
        return delete_names(rc, zone_id, &[name.to_string()]).await;
    }
    submit(
        rc,
        zone_id,
        vec![change(
            ChangeAction::Upsert,
            record_set(name, RrType::A, ips, ttl)?,
        )?],
        name,
    )
    .await
}

/// One lock per record name: the replicas of one apply (run in parallel by Terraform, in this
/// one provider process) edit the reader record one after another.
fn record_lock(name: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let map = LOCKS.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(name.to_ascii_lowercase()).or_default().clone()
}

/// Adds `ip` to a reader record (made if absent) or removes it, read-modify-write under a
/// per-name lock (UPSERT: Route 53 emulators refuse a DELETE and CREATE of one name in one
/// batch). `fallback` is what an emptied record holds instead (the home reader points at the
/// source when no replica publishes it); when adding, it is dropped. The source's agent
/// rewrites the record from its members anyway, so a race with it only lasts a heartbeat.
pub async fn edit_reader(
    rc: &RegionClients,
    zone_id: &str,
    name: &str,
    ip: &str,
    add: bool,
    fallback: Option<&str>,
    ttl: u32,
) -> Result<(), AwsError> {
    let lock = record_lock(name);
    let _held = lock.lock().await;
    let sets = list_records(rc, zone_id).await?;
    let old = record_values(&sets, name, &RrType::A).unwrap_or_default();
    let new = edited_values(&old, ip, add, fallback);
    let mut sorted_old = old.clone();
    sorted_old.sort();
    if new == sorted_old {
        return Ok(());
    }
    put_reader(rc, zone_id, name, &new, ttl).await
}

/// Addresses waiting to go into a reader record, by record name: the replicas of one apply
/// queue theirs, and whoever holds the record's lock writes all queued so far in one edit.
fn pending_adds() -> &'static std::sync::Mutex<BTreeMap<String, Vec<String>>> {
    static PENDING: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, Vec<String>>>> =
        std::sync::OnceLock::new();
    PENDING.get_or_init(Default::default)
}

fn take_pending(key: &str) -> Vec<String> {
    let mut m = pending_adds().lock().unwrap_or_else(|p| p.into_inner());
    m.remove(key).unwrap_or_default()
}

fn queue_pending(key: &str, ips: impl IntoIterator<Item = String>) {
    let mut m = pending_adds().lock().unwrap_or_else(|p| p.into_inner());
    m.entry(key.to_string()).or_default().extend(ips);
}

/// The longest a new replica waits for the others of its wave before editing the reader
/// record.
const READER_GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// Replica creates that will add an address to a home reader record ([`expect_reader_add`]).
static READER_ADDS: std::sync::LazyLock<super::coalesce::Pending> =
    std::sync::LazyLock::new(super::coalesce::Pending::default);

/// Says that this replica create will add an address to a home reader record: held until it
/// has ([`add_to_home_reader`]), the first of a wave's edits waits for it, within
/// READER_GATHER.
pub fn expect_reader_add() -> super::coalesce::Expected {
    READER_ADDS.enter()
}

fn queued(key: &str) -> usize {
    let m = pending_adds().lock().unwrap_or_else(|p| p.into_inner());
    m.get(key).map_or(0, Vec::len)
}

/// A new home replica's address into the home reader record: [`edit_reader`] adding `ip`
/// with the writer's address as the fallback it replaces, both from one listing of the zone.
/// Replicas created together share edits: ten replicas make two or three edits, not ten in a
/// row. Returns once `ip` is written (by this call or an earlier lock holder's), or with the
/// error of the edit that tried to write it.
pub async fn add_to_home_reader(
    rc: &RegionClients,
    zone: &Zone,
    ip: &str,
    ttl: u32,
) -> Result<(), AwsError> {
    let name = reader_name(&zone.base);
    let key = format!("{}/{}", zone.zone_id, name.to_ascii_lowercase());
    queue_pending(&key, [ip.to_string()]);
    // The replicas of one wave get here within moments of each other (their launch waits
    // share polls: `coalesce`): the first waits, at most READER_GATHER, until every replica
    // create in progress has queued its address, so they share one edit.
    let start = std::time::Instant::now();
    while queued(&key) < READER_ADDS.count() && start.elapsed() < READER_GATHER {
        // Cancelled: the edit below is refused at once.
        if !crate::cancel::sleep(std::time::Duration::from_millis(2)).await {
            break;
        }
    }
    let lock = record_lock(&name);
    let _held = lock.lock().await;
    let ips = take_pending(&key);
    if ips.is_empty() {
        // An earlier holder wrote ours (a failed edit puts its addresses back).
        return Ok(());
    }
    let r = add_all(rc, zone, &name, &ips, ttl).await;
    if r.is_err() {
        // Ours fails with this error; the others' go to the next holder.
        queue_pending(&key, ips.into_iter().filter(|i| i != ip));
    }
    r
}

async fn add_all(
    rc: &RegionClients,
    zone: &Zone,
    name: &str,
    ips: &[String],
    ttl: u32,
) -> Result<(), AwsError> {
    let sets = list_records(rc, &zone.zone_id).await?;
    let w = writer_name(&zone.base);
    let writer = record_values(&sets, &w, &RrType::A)
        .or_else(|| record_values(&sets, &w, &RrType::Cname))
        .unwrap_or_default();
    let old = record_values(&sets, name, &RrType::A).unwrap_or_default();
    let new = ips.iter().fold(old.clone(), |acc, ip| {
        edited_values(&acc, ip, true, writer.first().map(String::as_str))
    });
    let mut sorted_old = old;
    sorted_old.sort();
    if new == sorted_old {
        return Ok(());
    }
    put_reader(rc, &zone.zone_id, name, &new, ttl).await
}

/// Pure: the reader's values after adding or removing `ip`.
pub fn edited_values(old: &[String], ip: &str, add: bool, fallback: Option<&str>) -> Vec<String> {
    let mut new: Vec<String> = old
        .iter()
        .filter(|v| v.as_str() != ip && !(add && Some(v.as_str()) == fallback))
        .cloned()
        .collect();
    if add {
        new.push(ip.to_string());
    }
    if new.is_empty()
        && let Some(f) = fallback
    {
        new.push(f.to_string());
    }
    new.sort();
    new.dedup();
    new
}

/// Deletes the record sets (every type) with these names; absent ones are skipped.
pub async fn delete_names(
    rc: &RegionClients,
    zone_id: &str,
    names: &[String],
) -> Result<(), AwsError> {
    let sets = match list_records(rc, zone_id).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    let changes = sets
        .into_iter()
        .filter(|s| names.iter().any(|n| same_name(s.name(), n)))
        .map(|s| change(ChangeAction::Delete, s))
        .collect::<Result<Vec<_>, _>>()?;
    submit(rc, zone_id, changes, &format!("records of zone {zone_id}")).await
}

/// Deletes every record under the cluster's base name, then the zone when Strata made it and
/// it carries this cluster's tag. A zone already gone is success. An agent whose instance is
/// still shutting down may write a reader record between the two steps (HostedZoneNotEmpty):
/// both are retried for up to a minute.
pub async fn delete_endpoints(
    rc: &RegionClients,
    zone: &Zone,
    cluster: &str,
) -> Result<(), AwsError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match delete_endpoints_once(rc, zone, cluster).await {
            Err(e)
                if e.code() == Some("HostedZoneNotEmpty")
                    && std::time::Instant::now() < deadline =>
            {
                tracing::info!(zone_id = %zone.zone_id, "a record was written after the cleanup (an agent shutting down): deleting again");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}

async fn delete_endpoints_once(
    rc: &RegionClients,
    zone: &Zone,
    cluster: &str,
) -> Result<(), AwsError> {
    let sets = match list_records(rc, &zone.zone_id).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    let suffix = format!(".{}", zone.base.trim_end_matches('.'));
    let changes = sets
        .into_iter()
        .filter(|s| {
            let n = s.name().trim_end_matches('.');
            n.to_ascii_lowercase()
                .ends_with(&suffix.to_ascii_lowercase())
                && !matches!(s.r#type(), RrType::Ns | RrType::Soa)
        })
        .map(|s| change(ChangeAction::Delete, s))
        .collect::<Result<Vec<_>, _>>()?;
    submit(
        rc,
        &zone.zone_id,
        changes,
        &format!("records of zone {}", zone.zone_id),
    )
    .await?;
    if !zone.owned {
        return Ok(());
    }
    let tags = match zone_tags(rc, &zone.zone_id).await {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    if tags.get(TAG_CLUSTER).map(String::as_str) != Some(cluster) {
        return Err(AwsError::Invalid(format!(
            "hosted zone {} is not tagged as cluster {cluster:?}'s; not deleting it",
            zone.zone_id
        )));
    }
    match rc
        .route53
        .delete_hosted_zone()
        .id(&zone.zone_id)
        .send()
        .await
    {
        Ok(_) => {
            tracing::info!(zone_id = %zone.zone_id, %cluster, "hosted zone deleted");
            Ok(())
        }
        Err(e) => {
            let e = r53_err(
                e,
                "route53:DeleteHostedZone",
                &format!("hosted zone {}", zone.zone_id),
            );
            if e.is_not_found() { Ok(()) } else { Err(e) }
        }
    }
}

/// Is the zone there, and does the writer record exist (whatever it points at)?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointsState {
    pub zone_present: bool,
    pub writer_present: bool,
    /// Where the writer points now (an agent may have moved it).
    pub writer_values: Vec<String>,
    pub reader_values: Vec<String>,
}

impl EndpointsState {
    pub fn healthy(&self) -> bool {
        self.zone_present && self.writer_present
    }
}

pub async fn read_endpoints(rc: &RegionClients, zone: &Zone) -> Result<EndpointsState, AwsError> {
    let sets = match list_records(rc, &zone.zone_id).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            return Ok(EndpointsState {
                zone_present: false,
                writer_present: false,
                writer_values: vec![],
                reader_values: vec![],
            });
        }
        Err(e) => return Err(e),
    };
    let w = writer_name(&zone.base);
    let writer =
        record_values(&sets, &w, &RrType::A).or_else(|| record_values(&sets, &w, &RrType::Cname));
    Ok(EndpointsState {
        zone_present: true,
        writer_present: writer.is_some(),
        writer_values: writer.unwrap_or_default(),
        reader_values: record_values(&sets, &reader_name(&zone.base), &RrType::A)
            .unwrap_or_default(),
    })
}

/// The zone's tags: the cluster's object tags with the zone's role.
pub fn zone_object_tags(
    default_tags: &BTreeMap<String, String>,
    user_tags: &BTreeMap<String, String>,
    cluster: &str,
    resource: &str,
    creation_token: &str,
) -> BTreeMap<String, String> {
    let mut t = super::tags::build_tags(
        default_tags,
        user_tags,
        &super::tags::ObjectTags {
            cluster,
            resource,
            role: Some(ROLE_ZONE),
            creation_token,
            name: None,
        },
    );
    // Make sure the three that find it again are there whatever build_tags does with roles.
    t.insert(TAG_CLUSTER.into(), cluster.into());
    t.insert(TAG_RESOURCE.into(), resource.into());
    t.insert(TAG_ROLE.into(), ROLE_ZONE.into());
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let b = base_name("orders", "strata.internal.");
        assert_eq!(b, "orders.strata.internal");
        assert_eq!(writer_name(&b), "writer.orders.strata.internal");
        assert_eq!(reader_name(&b), "reader.orders.strata.internal");
        assert_eq!(
            region_reader_name(&b, "eu-west-1"),
            "reader-eu-west-1.orders.strata.internal"
        );
        assert_eq!(
            endpoint(&writer_name(&b), 3306),
            "writer.orders.strata.internal:3306"
        );
        assert_eq!(short_zone_id("/hostedzone/Z123"), "Z123");
        assert_eq!(short_zone_id("Z123"), "Z123");
        assert!(same_name("Writer.X.", "writer.x"));
    }

    #[test]
    fn reader_edits() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The first replica replaces the source placeholder.
        assert_eq!(
            edited_values(&v(&["10.0.0.1"]), "10.0.0.2", true, Some("10.0.0.1")),
            v(&["10.0.0.2"])
        );
        assert_eq!(
            edited_values(&v(&["10.0.0.2"]), "10.0.0.3", true, Some("10.0.0.1")),
            v(&["10.0.0.2", "10.0.0.3"])
        );
        // The last replica leaves the source behind.
        assert_eq!(
            edited_values(&v(&["10.0.0.2"]), "10.0.0.2", false, Some("10.0.0.1")),
            v(&["10.0.0.1"])
        );
        assert_eq!(
            edited_values(
                &v(&["10.0.0.2", "10.0.0.3"]),
                "10.0.0.2",
                false,
                Some("10.0.0.1")
            ),
            v(&["10.0.0.3"])
        );
        assert_eq!(
            edited_values(&[], "10.0.0.2", false, None),
            Vec::<String>::new()
        );
    }

    #[test]
    fn zone_round_trips_through_group_tags() {
        let z = Zone {
            zone_id: "Z1".into(),
            base: "orders.strata.internal".into(),
            owned: false,
        };
        assert_eq!(Zone::from_group_tags(&z.group_tags()), Some(z));
        assert_eq!(Zone::from_group_tags(&BTreeMap::new()), None);
    }

    #[test]
    fn values_of_simple_records_only() {
        let a = record_set(
            "reader.x",
            RrType::A,
            &["10.0.0.1".into(), "10.0.0.2".into()],
            5,
        )
        .unwrap();
        let weighted = ResourceRecordSet::builder()
            .name("writer.x.")
            .r#type(RrType::A)
            .set_identifier("one")
            .ttl(5)
            .resource_records(ResourceRecord::builder().value("10.0.0.9").build().unwrap())
            .build()
            .unwrap();
        let sets = vec![a, weighted];
        assert_eq!(
            record_values(&sets, "reader.x", &RrType::A),
            Some(vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()])
        );
        assert_eq!(record_values(&sets, "writer.x", &RrType::A), None);
        assert_eq!(record_values(&sets, "reader.x", &RrType::Txt), None);
    }
}
