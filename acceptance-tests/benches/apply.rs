//! Benchmark: wall time of `tofu apply` (and of the `plan` after it) against LocalStack for
//! three shapes: one source; source + 2 replicas + a region of 2; source + 10 replicas.
//! Independent resources must not be serialized by the provider: ten replicas should cost
//! about what one costs, not ten times as much.
//!
//! Run: `TOFU=$(scripts/install-tofu) cargo test -p strata-acceptance-tests --bench apply`
//! (LocalStack running: `scripts/localstack start`). `STRATA_BENCH_RUNS` sets the runs per
//! shape (default 3). Each run applies into a fresh state and destroys afterwards.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use strata_acceptance_tests::{Tofu, localstack_endpoint, network, require_localstack};

fn provider_block(endpoint: &str) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    strata = {{ source = "strata/strata" }}
  }}
}}
provider "strata" {{
  region     = "us-east-1"
  access_key = "test"
  secret_key = "test"
  endpoints {{
    ec2 = "{endpoint}"
    ssm = "{endpoint}"
    iam = "{endpoint}"
    sts = "{endpoint}"
  }}
}}
"#
    )
}

fn shape(name: &str, net: &network::Network, replicas: usize, region_replicas: usize) -> String {
    let a = &net.home_subnet_ids[0];
    let b = net.home_subnet_ids.get(1).unwrap_or(a);
    let mut hcl = format!(
        r#"resource "strata_cluster" "c" {{
  name          = "{name}"
  instance_type = "t3.medium"
  subnet_id     = "{a}"
}}
"#
    );
    if replicas > 0 {
        hcl += &format!(
            r#"resource "strata_replica" "r" {{
  count      = {replicas}
  cluster_id = strata_cluster.c.id
  subnet_id  = count.index % 2 == 0 ? "{a}" : "{b}"
}}
"#
        );
    }
    if region_replicas > 0 {
        hcl += &format!(
            r#"resource "strata_region" "eu" {{
  cluster_id    = strata_cluster.c.id
  region        = "eu-west-1"
  subnet_id     = "{}"
  replica_count = {region_replicas}
}}
"#,
            net.read_only_subnet_id
        );
    }
    hcl
}

fn timed(tofu: &Tofu, dir: &Path, args: &[&str]) -> Result<Duration> {
    let t = Instant::now();
    tofu.run_ok(dir, args)?;
    Ok(t.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    require_localstack()?;
    let endpoint = localstack_endpoint();
    let net = network::ensure_blocking(&endpoint, network::DEFAULT_NETWORK_NAME)?;
    let scratch = tempfile::tempdir()?;
    let tofu = Tofu::setup(scratch.path())?;
    let runs: usize = std::env::var("STRATA_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let shapes = [
        ("one source", 0, 0),
        ("source + 2 replicas + region of 2", 2, 2),
        ("source + 10 replicas", 10, 0),
    ];
    println!("tofu apply against LocalStack, {runs} run(s) per shape (median, min, max):");
    println!("| shape | resources | apply median | apply min | apply max | plan after |");
    println!("|---|---|---|---|---|---|");
    for (i, (label, replicas, region)) in shapes.iter().enumerate() {
        let mut applies = Vec::new();
        let mut plans = Vec::new();
        for run in 0..runs {
            let dir = scratch.path().join(format!("s{i}-{run}"));
            std::fs::create_dir_all(&dir)?;
            let name = format!("bench{i}r{run}{}", std::process::id() % 10_000);
            std::fs::write(
                dir.join("main.tf"),
                provider_block(&endpoint) + &shape(&name, &net, *replicas, *region),
            )?;
            tofu.run_ok(&dir, &["init", "-input=false", "-no-color"])
                .context("tofu init")?;
            applies.push(timed(
                &tofu,
                &dir,
                &["apply", "-auto-approve", "-input=false", "-no-color"],
            )?);
            plans.push(timed(
                &tofu,
                &dir,
                &["plan", "-detailed-exitcode", "-input=false", "-no-color"],
            )?);
            tofu.run_ok(
                &dir,
                &["destroy", "-auto-approve", "-input=false", "-no-color"],
            )
            .context("tofu destroy")?;
        }
        let resources = 1 + replicas + usize::from(*region > 0);
        println!(
            "| {label} | {resources} | {:.2} s | {:.2} s | {:.2} s | {:.2} s |",
            median(applies.clone()).as_secs_f64(),
            applies.iter().min().map_or(0.0, |d| d.as_secs_f64()),
            applies.iter().max().map_or(0.0, |d| d.as_secs_f64()),
            median(plans).as_secs_f64(),
        );
    }
    Ok(())
}
