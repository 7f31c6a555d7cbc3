//! The provider with the test-only resource (`strata_test_widget`), for the provider's own
//! protocol tests. A binary of its own, so the packaged `terraform-provider-strata` (which
//! `scripts/package` rebuilds in the same target dir, without the feature) never overwrites it.

use std::process::ExitCode;

#[path = "../main.rs"]
mod provider_main;

fn main() -> ExitCode {
    provider_main::main()
}
