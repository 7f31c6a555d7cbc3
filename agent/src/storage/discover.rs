//! Finding what the autoscaler watches on a real node: the instance's own id (IMDSv2), the
//! storage segments Terraform attached to it (role `segment`, found by attachment), and the
//! bounds the provider wrote on them as the `strata:autoscale` tag
//! (`max=2000,at=80,by=20,step=10`). Segments are created after the node boots, so the agent
//! keeps looking until one appears.

use aws_sdk_ec2::types::Filter;

use super::decide::{Bounds, BoundsError};

use strata_topology::tags::AutoscaleTag;
pub use strata_topology::tags::{ROLE_SEGMENT, TAG_AUTOSCALE, TAG_ROLE};

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("instance metadata (IMDSv2): {0}")]
    Imds(String),
    #[error("ec2:DescribeVolumes for instance {instance}: {message}")]
    Describe { instance: String, message: String },
    #[error("volume {volume}: tag {TAG_AUTOSCALE}={value:?} is not max=N,at=N,by=N,step=N")]
    BadTag { volume: String, value: String },
    #[error("volume {volume}: {source}")]
    Bounds {
        volume: String,
        #[source]
        source: BoundsError,
    },
}

/// Parses `max=2000,at=80,by=20,step=10` into bounds. Every key is required.
pub fn parse_autoscale_tag(volume: &str, value: &str) -> Result<Bounds, DiscoverError> {
    let bad = || DiscoverError::BadTag {
        volume: volume.to_string(),
        value: value.to_string(),
    };
    let t = AutoscaleTag::parse(value).map_err(|_| bad())?;
    let at = u8::try_from(t.grow_at_percent).map_err(|_| bad())?;
    let by = u32::try_from(t.grow_by_percent).map_err(|_| bad())?;
    Bounds::new(at, by, t.min_step_gib, t.max_size_gib).map_err(|source| DiscoverError::Bounds {
        volume: volume.to_string(),
        source,
    })
}

/// This instance's id, from IMDSv2.
pub async fn own_instance_id() -> Result<String, DiscoverError> {
    let imds = aws_config::imds::Client::builder().build();
    imds.get("/latest/meta-data/instance-id")
        .await
        .map(|s| s.as_ref().to_string())
        .map_err(|e| DiscoverError::Imds(e.to_string()))
}

/// The segments attached to `instance_id`, in volume-id order, and the bounds of the first.
/// `Ok(None)` while Terraform has attached none yet.
pub async fn segments_of(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> Result<Option<(Vec<String>, Bounds)>, DiscoverError> {
    let out = ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance_id)
                .build(),
        )
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_ROLE}"))
                .values(ROLE_SEGMENT)
                .build(),
        )
        .send()
        .await
        .map_err(|e| DiscoverError::Describe {
            instance: instance_id.to_string(),
            message: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
        })?;
    let mut found: Vec<(String, Option<String>)> = out
        .volumes()
        .iter()
        .filter_map(|v| {
            let id = v.volume_id()?.to_string();
            let tag = v
                .tags()
                .iter()
                .find(|t| t.key() == Some(TAG_AUTOSCALE))
                .and_then(|t| t.value().map(str::to_string));
            Some((id, tag))
        })
        .collect();
    found.sort();
    let Some((first, Some(tag))) = found.iter().find(|(_, t)| t.is_some()).cloned() else {
        return Ok(None);
    };
    let bounds = parse_autoscale_tag(&first, &tag)?;
    Ok(Some((
        found.into_iter().map(|(id, _)| id).collect(),
        bounds,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_providers_tag() {
        let b = parse_autoscale_tag("vol-1", "max=2000,at=80,by=20,step=10").unwrap();
        assert_eq!(b.max_size_gib, 2000);
        assert_eq!(b.grow_at_percent, 80);
        assert_eq!(b.grow_by_percent, 20);
        assert_eq!(b.min_step_gib, 10);
    }

    #[test]
    fn refuses_incomplete_or_garbled_tags() {
        for bad in [
            "",
            "max=2000",
            "max=2000,at=80,by=20",
            "max=x,at=80,by=20,step=10",
            "max=1,at=80,by=20,step=10,zz=1",
            "at=300,max=1,by=1,step=1",
        ] {
            assert!(
                parse_autoscale_tag("vol-1", bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
