//! Shared steps of the `acc_*` acceptance tests: one [`Acc`] per test owns a scratch folder, a
//! unique cluster name, the SDK clients for both LocalStack regions, and the apply/plan/destroy
//! cycle with its checks (every apply is followed by an empty plan; every test ends with a
//! destroy and an SDK sweep for anything still tagged with its cluster).

#![allow(dead_code)]

use anyhow::{Context, Result};
use aws_sdk_ec2::types::Filter;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use strata_acceptance_tests::network::{self, Network};
use strata_acceptance_tests::{Tofu, localstack_endpoint, localstack_lock, require_localstack};

pub(crate) const HOME: &str = network::HOME_REGION;
pub(crate) const EU: &str = network::READ_ONLY_REGION;

/// Panics with a clear message unless `TF_ACC=1`, as Terraform acceptance tests do.
pub(crate) fn require_tf_acc() {
    if std::env::var("TF_ACC").ok().as_deref() != Some("1") {
        panic!(
            "acceptance test: set TF_ACC=1 (it creates objects in LocalStack with the real tofu); \
             run via scripts/test"
        );
    }
}

/// A cluster name no other test (or earlier run) uses: `acc-<label>-<pid><n><time>`.
fn unique_name(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!(
        "acc-{label}-{:x}{n}{:x}",
        std::process::id() & 0xfff,
        nanos & 0xffff
    );
    assert!(name.len() <= 40, "cluster name too long: {name}");
    name
}

pub(crate) struct Acc {
    pub name: String,
    pub scratch: tempfile::TempDir,
    pub dir: PathBuf,
    pub tofu: Tofu,
    pub net: Network,
    pub endpoint: String,
    pub rt: tokio::runtime::Runtime,
    pub ec2: aws_sdk_ec2::Client,
    pub ec2_eu: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub iam: aws_sdk_iam::Client,
    pub s3: aws_sdk_s3::Client,
    pub route53: aws_sdk_route53::Client,
    initialised: bool,
    destroyed: bool,
}

fn sdk_config(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
            aws_sdk_ec2::config::Credentials::new("test", "test", None, None, "strata-acc"),
        ))
        .build()
}

impl Acc {
    pub(crate) fn new(label: &str) -> Self {
        require_tf_acc();
        require_localstack().unwrap();
        let endpoint = localstack_endpoint();
        let net = {
            let _g = localstack_lock();
            network::ensure_blocking(&endpoint, network::DEFAULT_NETWORK_NAME).unwrap()
        };
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("config");
        std::fs::create_dir_all(&dir).unwrap();
        let tofu = Tofu::setup(scratch.path()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let home = sdk_config(&endpoint, HOME);
        let eu = sdk_config(&endpoint, EU);
        Self {
            name: unique_name(label),
            dir,
            tofu,
            net,
            ec2: aws_sdk_ec2::Client::new(&home),
            ec2_eu: aws_sdk_ec2::Client::new(&eu),
            ssm: aws_sdk_ssm::Client::new(&home),
            iam: aws_sdk_iam::Client::new(&home),
            // LocalStack answers on one host name: path-style bucket addressing.
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&home)
                    .force_path_style(true)
                    .build(),
            ),
            route53: aws_sdk_route53::Client::new(&home),
            endpoint,
            rt,
            scratch,
            initialised: false,
            destroyed: false,
        }
    }

    /// The `terraform` and `provider` blocks every config starts with.
    pub(crate) fn provider_hcl(&self) -> String {
        self.provider_hcl_waiting("0s")
    }

    /// [`Acc::provider_hcl`] with another `node_ready_timeout` (LocalStack's instances never
    /// boot: "0s" unless the test plays the node and tags the instance itself).
    pub(crate) fn provider_hcl_waiting(&self, node_ready_timeout: &str) -> String {
        format!(
            r#"terraform {{
  required_providers {{
    strata = {{ source = "strata/strata" }}
  }}
}}

provider "strata" {{
  region     = "{HOME}"
  access_key = "test"
  secret_key = "test"
  # LocalStack's instances never boot: no node reports ready unless a test tags it.
  node_ready_timeout = "{node_ready_timeout}"
  endpoints {{
    ec2 = "{e}"
    ssm = "{e}"
    iam = "{e}"
    sts = "{e}"
    s3      = "{e}"
    route53 = "{e}"
  }}
}}
"#,
            e = self.endpoint
        )
    }

    /// Where a name of a Route 53 private zone points (`A` values), as the VPC's resolver
    /// would answer: this machine cannot resolve the cluster's private zone.
    pub(crate) fn resolve(&self, zone_id: &str, name: &str) -> Vec<String> {
        self.records(zone_id, name, aws_sdk_route53::types::RrType::A)
    }

    /// The values of the record `name` of type `ty` in the zone (empty when there is none).
    pub(crate) fn records(
        &self,
        zone_id: &str,
        name: &str,
        ty: aws_sdk_route53::types::RrType,
    ) -> Vec<String> {
        let out = self
            .block(
                self.route53
                    .list_resource_record_sets()
                    .hosted_zone_id(zone_id)
                    .send(),
            )
            .unwrap();
        let want = format!("{}.", name.trim_end_matches('.'));
        out.resource_record_sets()
            .iter()
            .filter(|s| s.name().eq_ignore_ascii_case(&want) && *s.r#type() == ty)
            .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_string()))
            .collect()
    }

    pub(crate) fn subnet(&self, i: usize) -> &str {
        &self.net.home_subnet_ids[i]
    }

    pub(crate) fn eu_subnet(&self) -> &str {
        &self.net.read_only_subnet_id
    }

    /// Writes `main.tf` = provider blocks + `body` into this test's config folder.
    pub(crate) fn write(&self, body: &str) {
        write_config(&self.dir, &self.provider_hcl(), body);
    }

    pub(crate) fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.tofu.run(dir, args).unwrap()
    }

    pub(crate) fn run_ok(&self, dir: &Path, args: &[&str]) -> String {
        self.tofu.run_ok(dir, args).unwrap()
    }

    /// `get`, `providers lock` against the mirror, `init` (see [`Tofu::lock_and_init`]); init
    /// must print no warning.
    pub(crate) fn init_in(&self, dir: &Path) {
        let out = self.tofu.lock_and_init(dir, &[]).unwrap();
        assert!(!out.contains("Warning:"), "init printed a warning:\n{out}");
    }

    fn ensure_init(&mut self) {
        if !self.initialised {
            let d = self.dir.clone();
            self.init_in(&d);
            self.initialised = true;
        }
    }

    /// `apply`, then a plan that must be empty.
    pub(crate) fn apply(&mut self) -> String {
        let out = self.apply_only();
        let d = self.dir.clone();
        self.assert_plan_empty_in(&d);
        out
    }

    /// `apply` alone (init first if needed).
    pub(crate) fn apply_only(&mut self) -> String {
        self.ensure_init();
        let d = self.dir.clone();
        self.run_ok(&d, &["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `plan -detailed-exitcode`: returns tofu's exit code and both streams.
    pub(crate) fn plan_in(&self, dir: &Path) -> (i32, String, String) {
        let out = self.run(
            dir,
            &["plan", "-detailed-exitcode", "-input=false", "-no-color"],
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) fn plan(&mut self) -> (i32, String, String) {
        self.ensure_init();
        let d = self.dir.clone();
        self.plan_in(&d)
    }

    pub(crate) fn assert_plan_empty_in(&self, dir: &Path) {
        let (code, out, err) = self.plan_in(dir);
        assert_eq!(
            code, 0,
            "plan right after apply/import is not empty (exit {code}):\n--- stdout\n{out}\n--- stderr\n{err}"
        );
    }

    /// The resources in state, from `tofu show -json`.
    pub(crate) fn state_in(&self, dir: &Path) -> Value {
        let s = self.run_ok(dir, &["show", "-json", "-no-color"]);
        serde_json::from_str(&s).unwrap()
    }

    /// The attribute values of one resource in state (`strata_cluster.c`).
    pub(crate) fn resource(&self, address: &str) -> Value {
        resource_in(&self.state_in(&self.dir), address)
    }

    pub(crate) fn attr(&self, address: &str, attr: &str) -> Value {
        let r = self.resource(address);
        r.get(attr)
            .cloned()
            .unwrap_or_else(|| panic!("{address} has no {attr} in state: {r}"))
    }

    pub(crate) fn attr_str(&self, address: &str, attr: &str) -> String {
        let v = self.attr(address, attr);
        v.as_str()
            .unwrap_or_else(|| panic!("{address}.{attr} is not a string: {v}"))
            .to_string()
    }

    pub(crate) fn destroy_in(&self, dir: &Path) {
        self.run_ok(
            dir,
            &["destroy", "-auto-approve", "-input=false", "-no-color"],
        );
    }

    /// Destroys, then checks through the SDK that nothing tagged with the cluster is left.
    pub(crate) fn destroy_and_check(&mut self) {
        if self.initialised {
            let d = self.dir.clone();
            self.destroy_in(&d);
        }
        self.destroyed = true;
        let left = self.block(leftovers(self));
        assert!(
            left.is_empty(),
            "after destroy, objects of cluster {} are left: {left:#?}",
            self.name
        );
    }

    /// Marks the config folder as already destroyed elsewhere (import test: another folder owns
    /// the objects now).
    pub(crate) fn forget(&mut self) {
        self.destroyed = true;
        self.initialised = false;
    }

    pub(crate) fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    // ---- SDK views -------------------------------------------------------------------------

    pub(crate) fn instance(
        &self,
        region_client: &aws_sdk_ec2::Client,
        id: &str,
    ) -> aws_sdk_ec2::types::Instance {
        let out = self
            .block(region_client.describe_instances().instance_ids(id).send())
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .cloned()
            .unwrap_or_else(|| panic!("instance {id} not found"))
    }

    /// Instances of this cluster in a region that are not terminated.
    pub(crate) fn live_instances(
        &self,
        region_client: &aws_sdk_ec2::Client,
    ) -> Vec<aws_sdk_ec2::types::Instance> {
        self.block(live_instances(region_client, &self.name))
            .unwrap()
    }

    /// The NodeConfig in an instance's user-data, as EC2 returns it (base64).
    pub(crate) fn user_data(&self, id: &str) -> (String, strata_topology::NodeConfig) {
        self.user_data_in(&self.ec2, id)
    }

    /// [`Acc::user_data`] of an instance in the region `client` talks to.
    pub(crate) fn user_data_in(
        &self,
        client: &aws_sdk_ec2::Client,
        id: &str,
    ) -> (String, strata_topology::NodeConfig) {
        let out = self
            .block(
                client
                    .describe_instance_attribute()
                    .instance_id(id)
                    .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                    .send(),
            )
            .unwrap();
        let b64 = out
            .user_data()
            .and_then(|u| u.value())
            .unwrap_or_else(|| panic!("instance {id} has no user-data"))
            .to_string();
        let cfg = strata_topology::parse_user_data(&b64)
            .unwrap_or_else(|e| panic!("user-data of {id} does not parse: {e}"));
        let script = strata_topology::decode_user_data(&b64)
            .unwrap_or_else(|e| panic!("user-data of {id} does not decode: {e}"));
        (script, cfg)
    }

    pub(crate) fn volume(&self, id: &str) -> aws_sdk_ec2::types::Volume {
        let out = self
            .block(self.ec2.describe_volumes().volume_ids(id).send())
            .unwrap();
        out.volumes()
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("volume {id} not found"))
    }

    pub(crate) fn security_group(
        &self,
        client: &aws_sdk_ec2::Client,
        id: &str,
    ) -> aws_sdk_ec2::types::SecurityGroup {
        let out = self
            .block(client.describe_security_groups().group_ids(id).send())
            .unwrap();
        out.security_groups()
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("security group {id} not found"))
    }

    pub(crate) fn subnet_cidr(&self, client: &aws_sdk_ec2::Client, id: &str) -> String {
        let out = self
            .block(client.describe_subnets().subnet_ids(id).send())
            .unwrap();
        out.subnets()
            .first()
            .and_then(|s| s.cidr_block())
            .unwrap_or_else(|| panic!("subnet {id} has no CIDR"))
            .to_string()
    }
}

impl Drop for Acc {
    /// A failed test still tries to destroy what it made, so LocalStack does not fill up.
    fn drop(&mut self) {
        if !self.destroyed && self.initialised {
            let _ = self.tofu.run(
                &self.dir,
                &["destroy", "-auto-approve", "-input=false", "-no-color"],
            );
        }
    }
}

pub(crate) fn write_config(dir: &Path, provider: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("main.tf"), format!("{provider}\n{body}")).unwrap();
}

pub(crate) fn resource_in(state: &Value, address: &str) -> Value {
    let mut all = Vec::new();
    collect_resources(state.pointer("/values/root_module"), &mut all);
    all.into_iter()
        .find(|r| r.get("address").and_then(Value::as_str) == Some(address))
        .and_then(|r| r.get("values").cloned())
        .unwrap_or_else(|| panic!("{address} not in state: {state}"))
}

fn collect_resources(module: Option<&Value>, out: &mut Vec<Value>) {
    let Some(m) = module else { return };
    if let Some(rs) = m.get("resources").and_then(Value::as_array) {
        out.extend(rs.iter().cloned());
    }
    if let Some(children) = m.get("child_modules").and_then(Value::as_array) {
        for c in children {
            collect_resources(Some(c), out);
        }
    }
}

fn cluster_filter(name: &str) -> Filter {
    Filter::builder()
        .name("tag:strata:cluster")
        .values(name)
        .build()
}

pub(crate) async fn live_instances(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
) -> Result<Vec<aws_sdk_ec2::types::Instance>> {
    let out = ec2
        .describe_instances()
        .filters(cluster_filter(name))
        .send()
        .await
        .context("DescribeInstances")?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            i.state().and_then(|s| s.name())
                != Some(&aws_sdk_ec2::types::InstanceStateName::Terminated)
        })
        .cloned()
        .collect())
}

/// Everything of cluster `acc.name` still in LocalStack, described for the failure message.
async fn leftovers(acc: &Acc) -> Vec<String> {
    let mut left = Vec::new();
    match sweep(acc, &mut left).await {
        Ok(()) => left,
        Err(e) => vec![format!("the sweep itself failed: {e:#}")],
    }
}

async fn sweep(acc: &Acc, left: &mut Vec<String>) -> Result<()> {
    let name = &acc.name;
    for (region, ec2) in [(HOME, &acc.ec2), (EU, &acc.ec2_eu)] {
        for i in live_instances(ec2, name).await? {
            left.push(format!(
                "{region} instance {} ({:?})",
                i.instance_id().unwrap_or("?"),
                i.state().and_then(|s| s.name())
            ));
        }
        let vols = ec2
            .describe_volumes()
            .filters(cluster_filter(name))
            .send()
            .await
            .context("DescribeVolumes")?;
        for v in vols.volumes() {
            left.push(format!(
                "{region} volume {} ({:?})",
                v.volume_id().unwrap_or("?"),
                v.state()
            ));
        }
        let sgs = ec2
            .describe_security_groups()
            .filters(cluster_filter(name))
            .send()
            .await
            .context("DescribeSecurityGroups")?;
        for g in sgs.security_groups() {
            left.push(format!(
                "{region} security group {} {}",
                g.group_id().unwrap_or("?"),
                g.group_name().unwrap_or("?")
            ));
        }
    }
    let params = acc
        .ssm
        .get_parameters_by_path()
        .path(format!("/strata/{name}/"))
        .recursive(true)
        .send()
        .await
        .context("GetParametersByPath")?;
    for p in params.parameters() {
        left.push(format!("SSM parameter {}", p.name().unwrap_or("?")));
    }
    // The agent bucket: `strata-<cluster>-<account>-<region>` (see agent_bucket_name).
    let buckets = acc.s3.list_buckets().send().await.context("ListBuckets")?;
    for b in buckets.buckets() {
        let n = b.name().unwrap_or_default();
        if n.starts_with(&format!("strata-{name}-")) {
            left.push(format!("S3 bucket {n}"));
        }
    }
    let prefix = format!("strata-{name}-");
    let profiles = acc
        .iam
        .list_instance_profiles()
        .max_items(1000)
        .send()
        .await
        .context("ListInstanceProfiles")?;
    for p in profiles.instance_profiles() {
        if p.instance_profile_name().starts_with(&prefix) {
            left.push(format!("instance profile {}", p.instance_profile_name()));
        }
    }
    let roles = acc
        .iam
        .list_roles()
        .max_items(1000)
        .send()
        .await
        .context("ListRoles")?;
    for r in roles.roles() {
        if r.role_name().starts_with(&prefix) {
            left.push(format!("IAM role {}", r.role_name()));
        }
    }
    Ok(())
}

/// Tag value of an EC2 object.
pub(crate) fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}
