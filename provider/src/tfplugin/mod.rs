//! The Terraform plugin protocol, as a process speaks it to Terraform/OpenTofu.
//!
//! Owns the generated tfplugin6 and go-plugin types (`proto`), the go-plugin handshake
//! (`handshake`), AutoMTLS (`automtls`), the listener and the side services go-plugin expects
//! (controller, stdio, broker, health), the `serve` entry point, and hclog-style logging.
//! It knows nothing about resources: whatever implements the generated `Provider` trait is
//! served as is.

pub mod automtls;
pub mod handshake;
mod listener;
pub mod logging;
pub mod proto;
mod serve;
mod services;
mod unimplemented;

pub use listener::{PluginConn, Transport};
pub use serve::{
    DEFAULT_PROVIDER_ADDRESSES, PluginServer, ServeError, ServeMode, ServeOptions, serve,
    serve_with,
};
pub use unimplemented::UnimplementedProvider;
