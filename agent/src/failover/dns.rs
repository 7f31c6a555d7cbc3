//! The writer and reader records in the cluster's Route 53 private zone. Only agents change
//! them: the node that takes the lease moves the writer, the source keeps the readers.
//!
//! The writer carries a fencing token of its own: the TXT record `_epoch.<writer>` holds the
//! epoch of the node it points at, and a promoter's change batch DELETEs exactly the TXT value
//! it read (Route 53 refuses the whole batch when that value is no longer there) and refuses
//! to act when it already holds an epoch at least as new as its own. A stale promoter cannot
//! move the writer back.

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use std::net::Ipv4Addr;
use std::time::Duration;
use strata_topology::DnsRecords;
use strata_topology::failover::{
    parse_writer_epoch_txt, render_writer_epoch_txt, writer_epoch_record_name,
};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("route53: {0}")]
    Api(String),
    /// The writer already names epoch `current`, at least as new as ours.
    #[error("writer record already at epoch {current} (ours {ours})")]
    Stale { current: u64, ours: u64 },
}

#[derive(Clone)]
pub struct Dns {
    r53: aws_sdk_route53::Client,
    zone: String,
    ttl: i64,
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn api<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_route53::error::SdkError<E, R>,
) -> DnsError {
    DnsError::Api(aws_sdk_route53::error::DisplayErrorContext(&e).to_string())
}

impl Dns {
    pub async fn connect(records: &DnsRecords, timeout: Duration, endpoint: Option<&str>) -> Dns {
        // Route 53 is a global service signed in us-east-1.
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(timeout)
                    .operation_timeout(timeout)
                    .build(),
            );
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        let conf = loader.load().await;
        Dns {
            r53: aws_sdk_route53::Client::new(&conf),
            zone: records
                .zone_id
                .trim_start_matches("/hostedzone/")
                .to_string(),
            ttl: i64::from(records.ttl),
        }
    }

    /// Values of the record set `name`/`kind`, None when there is none.
    pub async fn read(&self, name: &str, kind: RrType) -> Result<Option<Vec<String>>, DnsError> {
        let want = fqdn(name);
        let out = self
            .r53
            .list_resource_record_sets()
            .hosted_zone_id(&self.zone)
            .start_record_name(&want)
            .start_record_type(kind.clone())
            .max_items(4)
            .send()
            .await
            .map_err(api)?;
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|r| fqdn(r.name()).eq_ignore_ascii_case(&want) && *r.r#type() == kind)
            .map(|r| {
                r.resource_records()
                    .iter()
                    .map(|v| v.value().to_string())
                    .collect()
            }))
    }

    /// The writer's target and epoch as Route 53 holds them.
    pub async fn read_writer(
        &self,
        writer_name: &str,
    ) -> Result<(Option<String>, Option<(u64, String)>), DnsError> {
        let target = match self.read(writer_name, RrType::A).await? {
            Some(v) => v.into_iter().next(),
            None => self
                .read(writer_name, RrType::Cname)
                .await?
                .and_then(|v| v.into_iter().next())
                .map(|c| c.trim_end_matches('.').to_string()),
        };
        let epoch = self
            .read(&writer_epoch_record_name(writer_name), RrType::Txt)
            .await?
            .and_then(|v| v.first().and_then(|t| parse_writer_epoch_txt(t)));
        Ok((target, epoch))
    }

    fn record(
        &self,
        name: &str,
        kind: RrType,
        values: &[String],
    ) -> Result<ResourceRecordSet, DnsError> {
        let mut b = ResourceRecordSet::builder()
            .name(fqdn(name))
            .r#type(kind)
            .ttl(self.ttl);
        for v in values {
            let rr = ResourceRecord::builder()
                .value(v)
                .build()
                .map_err(|e| DnsError::Api(e.to_string()))?;
            b = b.resource_records(rr);
        }
        b.build().map_err(|e| DnsError::Api(e.to_string()))
    }

    async fn apply(&self, changes: Vec<(ChangeAction, ResourceRecordSet)>) -> Result<(), DnsError> {
        let mut batch = ChangeBatch::builder();
        for (action, set) in changes {
            let c = Change::builder()
                .action(action)
                .resource_record_set(set)
                .build()
                .map_err(|e| DnsError::Api(e.to_string()))?;
            batch = batch.changes(c);
        }
        let batch = batch.build().map_err(|e| DnsError::Api(e.to_string()))?;
        self.r53
            .change_resource_record_sets()
            .hosted_zone_id(&self.zone)
            .change_batch(batch)
            .send()
            .await
            .map_err(api)?;
        Ok(())
    }

    /// Points the writer at `host` for `epoch`, fenced by the epoch TXT record.
    pub async fn move_writer(
        &self,
        writer_name: &str,
        epoch: u64,
        node_id: &str,
        host: &str,
    ) -> Result<(), DnsError> {
        let txt_name = writer_epoch_record_name(writer_name);
        let current = self.read(&txt_name, RrType::Txt).await?;
        let mut changes = Vec::new();
        let mine = current
            .as_ref()
            .and_then(|v| v.first().and_then(|t| parse_writer_epoch_txt(t)))
            == Some((epoch, node_id.to_string()));
        if !mine {
            if let Some(values) = current {
                if let Some((e, node)) = values.first().and_then(|v| parse_writer_epoch_txt(v))
                    && (e > epoch || (e == epoch && node != node_id))
                {
                    return Err(DnsError::Stale {
                        current: e,
                        ours: epoch,
                    });
                }
                changes.push((
                    ChangeAction::Delete,
                    self.record(&txt_name, RrType::Txt, &values)?,
                ));
            }
            changes.push((
                ChangeAction::Create,
                self.record(
                    &txt_name,
                    RrType::Txt,
                    &[render_writer_epoch_txt(epoch, node_id)],
                )?,
            ));
        }
        let kind = if host.parse::<Ipv4Addr>().is_ok() {
            RrType::A
        } else {
            RrType::Cname
        };
        changes.push((
            ChangeAction::Upsert,
            self.record(writer_name, kind, &[host.to_string()])?,
        ));
        self.apply(changes).await
    }

    /// Sets a reader record to `hosts` (A values when they are addresses, else a CNAME to
    /// the first).
    pub async fn set_readers(&self, reader_name: &str, hosts: &[String]) -> Result<(), DnsError> {
        if hosts.is_empty() {
            return Ok(());
        }
        let set = if hosts.iter().all(|h| h.parse::<Ipv4Addr>().is_ok()) {
            self.record(reader_name, RrType::A, hosts)?
        } else {
            self.record(reader_name, RrType::Cname, &hosts[..1])?
        };
        self.apply(vec![(ChangeAction::Upsert, set)]).await
    }
}
