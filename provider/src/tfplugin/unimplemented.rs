//! A provider that answers every RPC with `Unimplemented`: lets the protocol layer be served
//! and tested before (and without) the real framework server.

use tonic::{Request, Response, Status};

use super::proto::tfplugin6 as pb;
use super::proto::tfplugin6::provider_server::Provider;

/// Answers every tfplugin6 RPC with `Status::unimplemented`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnimplementedProvider;

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc} is not implemented by this build of the Strata provider"
    ))
}

#[tonic::async_trait]
impl Provider for UnimplementedProvider {
    async fn get_metadata(
        &self,
        _request: Request<pb::get_metadata::Request>,
    ) -> Result<Response<pb::get_metadata::Response>, Status> {
        Err(unimplemented("GetMetadata"))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<pb::get_provider_schema::Request>,
    ) -> Result<Response<pb::get_provider_schema::Response>, Status> {
        Err(unimplemented("GetProviderSchema"))
    }

    async fn get_resource_identity_schemas(
        &self,
        _request: Request<pb::get_resource_identity_schemas::Request>,
    ) -> Result<Response<pb::get_resource_identity_schemas::Response>, Status> {
        Err(unimplemented("GetResourceIdentitySchemas"))
    }

    async fn validate_provider_config(
        &self,
        _request: Request<pb::validate_provider_config::Request>,
    ) -> Result<Response<pb::validate_provider_config::Response>, Status> {
        Err(unimplemented("ValidateProviderConfig"))
    }

    async fn validate_resource_config(
        &self,
        _request: Request<pb::validate_resource_config::Request>,
    ) -> Result<Response<pb::validate_resource_config::Response>, Status> {
        Err(unimplemented("ValidateResourceConfig"))
    }

    async fn validate_data_resource_config(
        &self,
        _request: Request<pb::validate_data_resource_config::Request>,
    ) -> Result<Response<pb::validate_data_resource_config::Response>, Status> {
        Err(unimplemented("ValidateDataResourceConfig"))
    }

    async fn upgrade_resource_state(
        &self,
        _request: Request<pb::upgrade_resource_state::Request>,
    ) -> Result<Response<pb::upgrade_resource_state::Response>, Status> {
        Err(unimplemented("UpgradeResourceState"))
    }

    async fn upgrade_resource_identity(
        &self,
        _request: Request<pb::upgrade_resource_identity::Request>,
    ) -> Result<Response<pb::upgrade_resource_identity::Response>, Status> {
        Err(unimplemented("UpgradeResourceIdentity"))
    }

    async fn configure_provider(
        &self,
        _request: Request<pb::configure_provider::Request>,
    ) -> Result<Response<pb::configure_provider::Response>, Status> {
        Err(unimplemented("ConfigureProvider"))
    }

    async fn read_resource(
        &self,
        _request: Request<pb::read_resource::Request>,
    ) -> Result<Response<pb::read_resource::Response>, Status> {
        Err(unimplemented("ReadResource"))
    }

    async fn plan_resource_change(
        &self,
        _request: Request<pb::plan_resource_change::Request>,
    ) -> Result<Response<pb::plan_resource_change::Response>, Status> {
        Err(unimplemented("PlanResourceChange"))
    }

    async fn apply_resource_change(
        &self,
        _request: Request<pb::apply_resource_change::Request>,
    ) -> Result<Response<pb::apply_resource_change::Response>, Status> {
        Err(unimplemented("ApplyResourceChange"))
    }

    async fn import_resource_state(
        &self,
        _request: Request<pb::import_resource_state::Request>,
    ) -> Result<Response<pb::import_resource_state::Response>, Status> {
        Err(unimplemented("ImportResourceState"))
    }

    async fn move_resource_state(
        &self,
        _request: Request<pb::move_resource_state::Request>,
    ) -> Result<Response<pb::move_resource_state::Response>, Status> {
        Err(unimplemented("MoveResourceState"))
    }

    async fn read_data_source(
        &self,
        _request: Request<pb::read_data_source::Request>,
    ) -> Result<Response<pb::read_data_source::Response>, Status> {
        Err(unimplemented("ReadDataSource"))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        _request: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> Result<Response<pb::validate_ephemeral_resource_config::Response>, Status> {
        Err(unimplemented("ValidateEphemeralResourceConfig"))
    }

    async fn open_ephemeral_resource(
        &self,
        _request: Request<pb::open_ephemeral_resource::Request>,
    ) -> Result<Response<pb::open_ephemeral_resource::Response>, Status> {
        Err(unimplemented("OpenEphemeralResource"))
    }

    async fn renew_ephemeral_resource(
        &self,
        _request: Request<pb::renew_ephemeral_resource::Request>,
    ) -> Result<Response<pb::renew_ephemeral_resource::Response>, Status> {
        Err(unimplemented("RenewEphemeralResource"))
    }

    async fn close_ephemeral_resource(
        &self,
        _request: Request<pb::close_ephemeral_resource::Request>,
    ) -> Result<Response<pb::close_ephemeral_resource::Response>, Status> {
        Err(unimplemented("CloseEphemeralResource"))
    }

    async fn get_functions(
        &self,
        _request: Request<pb::get_functions::Request>,
    ) -> Result<Response<pb::get_functions::Response>, Status> {
        Err(unimplemented("GetFunctions"))
    }

    async fn call_function(
        &self,
        _request: Request<pb::call_function::Request>,
    ) -> Result<Response<pb::call_function::Response>, Status> {
        Err(unimplemented("CallFunction"))
    }

    async fn stop_provider(
        &self,
        _request: Request<pb::stop_provider::Request>,
    ) -> Result<Response<pb::stop_provider::Response>, Status> {
        Err(unimplemented("StopProvider"))
    }
}
