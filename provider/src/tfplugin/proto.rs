//! Rust types generated at build time from `provider/proto/*.proto`.

/// Terraform plugin protocol 6 (minor 9): messages, the `Provider` server trait
/// (`provider_server::Provider`) and a client (`provider_client::ProviderClient`).
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// go-plugin's own services: `GRPCController`, `GRPCStdio`, `GRPCBroker`.
pub mod plugin {
    tonic::include_proto!("plugin");
}
