//! Finds or creates the LocalStack network Strata's examples deploy into and prints it as JSON.
//!
//!   localstack-network              # full description (VPCs, subnets, AZs)
//!   localstack-network --tfvars     # just the variables examples/complete takes
//!
//! Endpoint: `$LOCALSTACK_ENDPOINT` (default http://127.0.0.1:4566); name: `$STRATA_NETWORK_NAME`.

use anyhow::{Context, Result, bail};
use strata_acceptance_tests::{localstack_endpoint, network};

fn main() -> Result<()> {
    let mut tfvars = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--tfvars" => tfvars = true,
            "-h" | "--help" => {
                println!("usage: localstack-network [--tfvars]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (usage: localstack-network [--tfvars])"),
        }
    }
    let endpoint = localstack_endpoint();
    let name = std::env::var("STRATA_NETWORK_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| network::DEFAULT_NETWORK_NAME.to_string());
    let net = network::ensure_blocking(&endpoint, &name).with_context(|| {
        format!("could not find or create the network in LocalStack at {endpoint} (is it running? scripts/localstack start)")
    })?;
    let value = if tfvars {
        net.tfvars_json()
    } else {
        serde_json::to_value(&net)?
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
