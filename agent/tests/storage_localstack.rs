//! The agent's own EC2 storage code against LocalStack's EC2: ModifyVolume with its wait and
//! tag, CreateVolume + AttachVolume of a new segment with its tags, and one loop round trip
//! with a fake BlockStorage. Needs LocalStack at $LOCALSTACK_ENDPOINT (default
//! http://127.0.0.1:4566).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification, VolumeType};
use strata_agent::storage::ec2::{
    TAG_AT_MAXIMUM, TAG_AUTOSCALED_FROM, TAG_CLUSTER, TAG_LAST_GROW, TAG_LAST_SEGMENT,
    TAG_RESOURCE, TAG_ROLE,
};
use strata_agent::storage::{
    AutoscaleConfig, AutoscaleStatus, Autoscaler, BlockError, BlockStorage, Bounds, Decision,
    Ec2Client, Ec2Volumes, FsUsage, SystemClock, WaitPolicy,
};
use tokio::sync::watch;

fn endpoint() -> String {
    std::env::var("LOCALSTACK_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}
const AMI: &str = "ami-03cf127a";
const G: u64 = 1024 * 1024 * 1024;

fn raw_client() -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

async fn require_localstack() {
    let up = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(
            endpoint()
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
        ),
    )
    .await;
    assert!(
        matches!(up, Ok(Ok(_))),
        "LocalStack is not reachable at {}: start it with `scripts/localstack start`",
        endpoint()
    );
}

fn fast_wait() -> WaitPolicy {
    WaitPolicy {
        first_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        timeout: Duration::from_secs(90),
    }
}

struct Fixture {
    raw: aws_sdk_ec2::Client,
    cluster: String,
    instance_id: String,
    az: String,
    volumes: Vec<String>,
}

impl Fixture {
    async fn new() -> Self {
        require_localstack().await;
        let raw = raw_client();
        let cluster = format!(
            "storage-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let run = raw
            .run_instances()
            .image_id(AMI)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key(TAG_CLUSTER).value(&cluster).build())
                    .build(),
            )
            .send()
            .await
            .expect("RunInstances");
        let inst = &run.instances()[0];
        let instance_id = inst.instance_id().unwrap().to_owned();
        let az = inst
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or("us-east-1a")
            .to_owned();
        Self {
            raw,
            cluster,
            instance_id,
            az,
            volumes: vec![],
        }
    }

    /// What the provider would have made: an encrypted gp3 data segment attached at `device`.
    async fn data_volume(&mut self, size: i32, device: &str, resource: &str) -> String {
        let out = self
            .raw
            .create_volume()
            .availability_zone(&self.az)
            .size(size)
            .volume_type(VolumeType::Gp3)
            .encrypted(true)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .tags(Tag::builder().key(TAG_CLUSTER).value(&self.cluster).build())
                    .tags(Tag::builder().key(TAG_RESOURCE).value(resource).build())
                    .tags(Tag::builder().key(TAG_ROLE).value("data-segment").build())
                    .build(),
            )
            .send()
            .await
            .expect("CreateVolume");
        let id = out.volume_id().unwrap().to_owned();
        self.volumes.push(id.clone());
        self.raw
            .attach_volume()
            .volume_id(&id)
            .instance_id(&self.instance_id)
            .device(device)
            .send()
            .await
            .expect("AttachVolume");
        id
    }

    fn agent(&self) -> Ec2Client {
        Ec2Client::new(self.raw.clone(), &self.cluster).with_wait(fast_wait())
    }

    async fn cleanup(&self, extra: &[String]) {
        for v in self.volumes.iter().chain(extra) {
            let _ = self
                .raw
                .detach_volume()
                .volume_id(v)
                .force(true)
                .send()
                .await;
            let _ = self.raw.delete_volume().volume_id(v).send().await;
        }
        let _ = self
            .raw
            .terminate_instances()
            .instance_ids(&self.instance_id)
            .send()
            .await;
    }
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn grow_and_add_segment_against_localstack() {
    let mut fx = Fixture::new().await;
    let vol = fx.data_volume(20, "/dev/sdf", "seg-a").await;
    let ec2 = fx.agent();

    let before = ec2.describe(std::slice::from_ref(&vol)).await.unwrap();
    assert_eq!(before.len(), 1);
    let before = &before[0];
    assert_eq!(before.size_gib, 20);
    assert_eq!(
        before.attached_instance.as_deref(),
        Some(fx.instance_id.as_str())
    );
    assert_eq!(before.attached_as.as_deref(), Some("/dev/sdf"));

    // ModifyVolume, wait for optimizing/completed, tag.
    ec2.grow_volume(&vol, 20, 25).await.unwrap();
    let after = ec2
        .describe(std::slice::from_ref(&vol))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(after.size_gib, 25, "EBS size after ModifyVolume");
    let tag = after.tags.get(TAG_LAST_GROW).expect("last-grow tag");
    assert!(tag.ends_with(" 20->25 GiB"), "{tag}");
    let m = after
        .last_modification
        .as_ref()
        .expect("modification record");
    assert_eq!(m.target_size_gib, Some(25));
    let st = after.to_state();
    assert!(st.last_modified.is_some() && !st.modification_in_progress);
    // The decision sees the volume in its six-hour cooldown now.
    assert!(st.cooldown_until(std::time::SystemTime::now()).is_some());

    // CreateVolume + AttachVolume of a new segment shaped like the original.
    let seg = ec2.add_segment(&after, 7).await.unwrap();
    assert_ne!(seg.volume_id, vol);
    assert_eq!(seg.size_gib, 7);
    assert_ne!(seg.attached_as, "/dev/sdf", "a free device name");
    let new = ec2
        .describe(std::slice::from_ref(&seg.volume_id))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(new.availability_zone, fx.az);
    assert_eq!(new.volume_type.as_deref(), Some("gp3"));
    assert!(new.encrypted);
    assert_eq!(new.state.as_deref(), Some("in-use"));
    assert_eq!(
        new.attached_instance.as_deref(),
        Some(fx.instance_id.as_str())
    );
    assert_eq!(new.tags.get(TAG_CLUSTER), Some(&fx.cluster));
    assert_eq!(
        new.tags.get(TAG_RESOURCE).map(String::as_str),
        Some("seg-a")
    );
    assert_eq!(
        new.tags.get(TAG_ROLE).map(String::as_str),
        Some("data-segment")
    );
    assert_eq!(new.tags.get(TAG_AUTOSCALED_FROM), Some(&vol));
    let orig = ec2
        .describe(std::slice::from_ref(&vol))
        .await
        .unwrap()
        .remove(0);
    let t = orig
        .tags
        .get(TAG_LAST_SEGMENT)
        .expect("last-add-segment tag");
    assert!(t.contains(&seg.volume_id) && t.contains("7 GiB"), "{t}");

    // A restarted agent finds the segment it added.
    let found = ec2
        .find_autoscaled(std::slice::from_ref(&vol))
        .await
        .unwrap();
    assert_eq!(
        found
            .iter()
            .map(|v| v.volume_id.as_str())
            .collect::<Vec<_>>(),
        [seg.volume_id.as_str()]
    );

    ec2.mark_at_maximum(&[vol.clone(), seg.volume_id.clone()], true)
        .await
        .unwrap();
    let tagged = ec2
        .describe(&[vol.clone(), seg.volume_id.clone()])
        .await
        .unwrap();
    for v in &tagged {
        assert!(
            v.tags
                .get(TAG_AT_MAXIMUM)
                .is_some_and(|t| t.starts_with("true")),
            "{:?}",
            v.tags
        );
    }

    fx.cleanup(&[seg.volume_id]).await;
}

/// Stands in for the disks: reports a fixed use, grows its size to what EC2 says.
#[derive(Clone)]
struct FakeDisks {
    size_gib: Arc<Mutex<u64>>,
    used: u64,
    log: Arc<Mutex<Vec<String>>>,
    ec2: Ec2Client,
    ids: Arc<Mutex<Vec<String>>>,
}

impl FakeDisks {
    async fn resync(&self) {
        let ids = self.ids.lock().unwrap().clone();
        let vols = self.ec2.describe(&ids).await.unwrap();
        *self.size_gib.lock().unwrap() = vols.iter().map(|v| v.size_gib).sum();
    }
}

impl BlockStorage for FakeDisks {
    async fn usage(&self) -> Result<FsUsage, BlockError> {
        Ok(FsUsage {
            size_bytes: *self.size_gib.lock().unwrap() * G,
            used_bytes: self.used,
        })
    }
    fn supports_segments(&self) -> bool {
        true
    }
    async fn grow_after_volume_resize(
        &self,
        volume_id: &str,
        _: Option<&str>,
    ) -> Result<(), BlockError> {
        self.log.lock().unwrap().push(format!("grow {volume_id}"));
        self.resync().await;
        Ok(())
    }
    async fn add_segment(&self, volume_id: &str, dev: &str) -> Result<(), BlockError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("join {volume_id} {dev}"));
        self.ids.lock().unwrap().push(volume_id.to_owned());
        self.resync().await;
        Ok(())
    }
    async fn reconcile(&self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[tokio::test]
#[ignore = "needs LocalStack: run via scripts/test"]
async fn autoscaler_loop_grows_then_adds_segment_against_localstack() {
    let mut fx = Fixture::new().await;
    let vol = fx.data_volume(20, "/dev/sdf", "seg-b").await;
    let ec2 = fx.agent();
    let disks = FakeDisks {
        size_gib: Arc::new(Mutex::new(20)),
        used: 19 * G,
        log: Arc::default(),
        ec2: ec2.clone(),
        ids: Arc::new(Mutex::new(vec![vol.clone()])),
    };
    let cfg = AutoscaleConfig {
        data_mount: "/var/lib/mysql".into(),
        volume_ids: vec![vol.clone()],
        bounds: Bounds::new(80, 20, 5, 100).unwrap(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint()),
        cluster_id: fx.cluster.clone(),
        interval: Duration::from_secs(60),
    };
    let (tx, rx) = watch::channel(AutoscaleStatus::default());
    let mut scaler = Autoscaler::new(cfg, ec2.clone(), disks.clone(), SystemClock, tx).unwrap();

    // 95% full: grow 20 -> 25 through the real ModifyVolume.
    let d = scaler.tick().await.unwrap();
    assert_eq!(
        d,
        Decision::GrowVolume {
            volume_id: vol.clone(),
            from_gib: 20,
            to_gib: 25
        }
    );
    let v = ec2
        .describe(std::slice::from_ref(&vol))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(v.size_gib, 25);
    assert!(v.tags.contains_key(TAG_LAST_GROW));
    let s = rx.borrow().clone();
    let a = s.last_action.clone().expect("an action");
    assert!(a.ok && a.action.contains("20->25"), "{a:?}");

    // Full again, seen by a fresh agent (as after a restart): it learns the cooldown from
    // EBS itself (DescribeVolumesModifications start time), not from memory, and so adds a
    // segment instead of growing.
    let mut disks_full = disks.clone();
    disks_full.used = 24 * G;
    drop(scaler);
    let (tx, rx) = watch::channel(AutoscaleStatus::default());
    let cfg = AutoscaleConfig {
        data_mount: "/var/lib/mysql".into(),
        volume_ids: vec![vol.clone()],
        bounds: Bounds::new(80, 20, 5, 100).unwrap(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint()),
        cluster_id: fx.cluster.clone(),
        interval: Duration::from_secs(60),
    };
    let mut scaler = Autoscaler::new(cfg, ec2.clone(), disks_full, SystemClock, tx).unwrap();
    let d = scaler.tick().await.unwrap();
    assert_eq!(d, Decision::AddSegment { size_gib: 5 });
    assert_eq!(scaler.volume_ids().len(), 2);
    let new_id = scaler.volume_ids()[1].clone();
    let log = disks.log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0] == format!("grow {vol}") && log[1].starts_with(&format!("join {new_id} /dev/sd")),
        "{log:?}"
    );
    let s = rx.borrow().clone();
    assert!(
        s.last_action
            .as_ref()
            .is_some_and(|a| a.ok && a.action.contains(&new_id)),
        "{s:?}"
    );
    assert_eq!(*disks.size_gib.lock().unwrap(), 30);

    // Next round: status shows both segments and the total.
    scaler.tick().await.unwrap();
    let s = rx.borrow().clone();
    assert_eq!(s.segments.len(), 2);
    assert_eq!(s.total_gib, 30);
    assert!(!s.at_maximum);

    fx.cleanup(&[new_id]).await;
}
