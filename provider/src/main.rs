//! terraform-provider-strata: the process Terraform/OpenTofu start. Parses the one flag,
//! sets up logging, and serves the provider until the client is done with it.

use std::process::ExitCode;

use strata_provider::tfplugin::{self, ServeMode, ServeOptions};

const USAGE: &str = "usage: terraform-provider-strata [--debug]";

#[tokio::main]
pub(crate) async fn main() -> ExitCode {
    let mut mode = ServeMode::Managed;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--debug" | "-debug" => mode = ServeMode::Debug,
            "--help" | "-h" => {
                eprintln!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("terraform-provider-strata: unknown argument {other:?}\n{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = tfplugin::logging::init() {
        eprintln!("terraform-provider-strata: {e}");
        return ExitCode::FAILURE;
    }

    let provider =
        strata_provider::framework::ProviderServer::new(strata_provider::provider::StrataProvider);

    let options = ServeOptions {
        mode,
        ..ServeOptions::default()
    };
    match tfplugin::serve_with(provider, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ tfplugin::ServeError::NotStartedByTerraform) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = %e, "the provider could not be served");
            eprintln!("terraform-provider-strata: {e}");
            ExitCode::FAILURE
        }
    }
}
