//! The Strata provider: the tfplugin6 server that Terraform and OpenTofu start, and everything
//! between the protocol and AWS.
//!
//! It owns the wire protocol (`tfplugin`), the value model Terraform speaks (`cty`), the
//! resource framework (`framework`), the four resource types (`resources`), the data sources
//! that read what they manage (`datasources`) and the AWS clients
//! (`aws`). It must not know engine SQL or what happens on a node: that is the agent's, and the
//! two meet only through `strata_topology::NodeConfig`.

pub mod aws;
pub mod cancel;
pub mod cty;
pub mod datasources;
pub mod framework;
pub mod provider;
pub mod resources;
pub mod tfplugin;
