//! strata-nodehost: turns LocalStack's EC2 instances (records only) into real Debian 12 nodes on
//! this machine. One systemd-nspawn container per running instance that carries a
//! `strata:cluster` tag, each in its own network namespace with the instance's private IP, all
//! joined through one router namespace that also serves IMDSv2 and forwards AWS calls to
//! LocalStack. See docs/local-nodes.md.

pub mod cloud;
pub mod cmd;
pub mod daemon;
pub mod error;
pub mod forward;
pub mod imds;
pub mod net;
pub mod node;
pub mod state;

pub use error::{Error, Result};

/// The link-local address of IMDS and of the AWS forwarder, as on EC2.
pub const IMDS_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);
/// Port of the AWS endpoint forwarder on [`IMDS_ADDR`] (LocalStack's usual port).
pub const FORWARD_PORT: u16 = 4566;
/// The tag that makes an instance one of ours.
pub use strata_topology::tags::TAG_CLUSTER as CLUSTER_TAG;
/// Default name of the router network namespace.
pub const DEFAULT_ROUTER_NETNS: &str = "strata-net";

/// The `AWS_ENDPOINT_URL` every process in a node sees.
pub fn node_aws_endpoint() -> String {
    format!("http://{IMDS_ADDR}:{FORWARD_PORT}")
}
