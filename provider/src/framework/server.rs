//! `ProviderServer`: the thin tfplugin6 adapter. It implements the generated gRPC `Provider`
//! service by converting each request (msgpack/JSON `DynamicValue`s to `cty::Value`s), calling
//! the logic in `fwserver` and converting back (values, diagnostics and schemas to protobuf,
//! in `convert`). Each RPC runs in a tracing span carrying the RPC name, the type name and a
//! request id, so every log line under it says which request it belongs to.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::cty::{self, Type, Value};
use crate::tfplugin::proto::tfplugin6 as pb;
use crate::tfplugin::proto::tfplugin6::provider_server::Provider as GrpcProvider;

use super::diag::{Diagnostic, Diagnostics};
use super::fwserver::{ConfigOf, FrameworkServer, unknown_type};
use super::resource::{Context, Provider};

mod convert;
pub use convert::ToProto;
// Where callers (the validation table test) have always found it; it lives with the logic.
pub use super::fwserver::validate_block;

/// Serves a framework `Provider` as the tfplugin6 gRPC service. Cheap to clone.
#[derive(Clone)]
pub struct ProviderServer {
    inner: Arc<FrameworkServer>,
}

fn decode(
    dv: Option<&pb::DynamicValue>,
    ty: &Type,
    rpc: &str,
    field: &str,
    type_name: &str,
) -> Result<Value, Diagnostic> {
    let Some(dv) = dv else { return Ok(Value::Null) };
    let result = if !dv.msgpack.is_empty() {
        cty::msgpack::decode(&dv.msgpack, ty)
    } else if !dv.json.is_empty() {
        cty::json::decode(&dv.json, ty)
    } else {
        return Ok(Value::Null);
    };
    result.map_err(|e| {
        Diagnostic::error(
            format!("Could not decode {field} of the {rpc} request"),
            format!("The {field} value sent for {type_name} is malformed: {e}"),
        )
    })
}

fn encode(
    v: &Value,
    ty: &Type,
    what: &str,
    type_name: &str,
) -> Result<pb::DynamicValue, Diagnostic> {
    cty::msgpack::encode(v, ty)
        .map(|msgpack| pb::DynamicValue {
            msgpack,
            json: Vec::new(),
        })
        .map_err(|e| {
            Diagnostic::error(
                format!("Could not encode the {what} of {type_name}"),
                format!("The value does not match the schema: {e}. This is a bug in the Strata provider."),
            )
        })
}

/// The span one RPC runs in. At error level so its fields reach every line, whatever level
/// TF_LOG lets through.
fn rpc_span(rpc: &'static str, type_name: &str) -> tracing::Span {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let request_id = NEXT.fetch_add(1, Ordering::Relaxed);
    tracing::error_span!("rpc", rpc, type_name, request_id)
}

impl ProviderServer {
    pub fn new(provider: impl Provider) -> ProviderServer {
        Self::from_arc(Arc::new(provider))
    }

    pub fn from_arc(provider: Arc<dyn Provider>) -> ProviderServer {
        ProviderServer {
            inner: Arc::new(FrameworkServer::new(provider)),
        }
    }

    /// The context every resource call gets: the configured data and the current token.
    pub fn context(&self) -> Context {
        self.inner.context()
    }

    /// Cancels everything in flight; later requests get a fresh token.
    pub fn stop(&self) {
        self.inner.stop();
    }

    fn server_capabilities() -> pb::ServerCapabilities {
        pb::ServerCapabilities {
            plan_destroy: true,
            get_provider_schema_optional: true,
            move_resource_state: false,
        }
    }

    /// Decodes a configuration and runs the one validate flow over it.
    fn validate_config(
        &self,
        of: ConfigOf<'_>,
        config: Option<&pb::DynamicValue>,
        rpc: &str,
    ) -> Diagnostics {
        let ty = match self.inner.value_type(of) {
            Ok(t) => t,
            Err(d) => return d.into(),
        };
        match decode(config, ty, rpc, "config", of.name()) {
            Ok(config) => self.inner.validate(of, &config),
            Err(d) => d.into(),
        }
    }

    // The RPC bodies, in plain Rust (no tonic types around them), so tests can call them.

    pub async fn validate_resource(
        &self,
        type_name: &str,
        config: Option<&pb::DynamicValue>,
    ) -> Diagnostics {
        self.validate_config(
            ConfigOf::Resource(type_name),
            config,
            "ValidateResourceConfig",
        )
    }

    pub async fn plan_change(
        &self,
        req: pb::plan_resource_change::Request,
    ) -> pb::plan_resource_change::Response {
        let mut resp = pb::plan_resource_change::Response::default();
        let type_name = req.type_name.as_str();
        let result: Result<(), Diagnostics> = async {
            let ty = self.inner.value_type(ConfigOf::Resource(type_name))?;
            const RPC: &str = "PlanResourceChange";
            let prior = decode(req.prior_state.as_ref(), ty, RPC, "prior_state", type_name)?;
            let proposed = decode(
                req.proposed_new_state.as_ref(),
                ty,
                RPC,
                "proposed_new_state",
                type_name,
            )?;
            let config = decode(req.config.as_ref(), ty, RPC, "config", type_name)?;
            let change = self
                .inner
                .plan(
                    type_name,
                    prior,
                    config,
                    proposed,
                    req.prior_private.clone(),
                )
                .await?;
            resp.planned_state = Some(encode(&change.planned, ty, "planned state", type_name)?);
            resp.requires_replace = change
                .requires_replace
                .iter()
                .map(|p| p.to_proto())
                .collect();
            resp.planned_private = change.private;
            resp.diagnostics.extend(change.diagnostics.to_proto());
            Ok(())
        }
        .await;
        if let Err(d) = result {
            resp.diagnostics.extend(d.to_proto());
        }
        resp
    }

    pub async fn apply_change(
        &self,
        req: pb::apply_resource_change::Request,
    ) -> pb::apply_resource_change::Response {
        let mut resp = pb::apply_resource_change::Response::default();
        let type_name = req.type_name.as_str();
        let ty = match self.inner.value_type(ConfigOf::Resource(type_name)) {
            Ok(t) => t,
            Err(d) => {
                resp.diagnostics.push(d.to_proto());
                return resp;
            }
        };
        const RPC: &str = "ApplyResourceChange";
        let decoded = (|| {
            Ok::<_, Diagnostic>((
                decode(req.prior_state.as_ref(), ty, RPC, "prior_state", type_name)?,
                decode(
                    req.planned_state.as_ref(),
                    ty,
                    RPC,
                    "planned_state",
                    type_name,
                )?,
                decode(req.config.as_ref(), ty, RPC, "config", type_name)?,
            ))
        })();
        let (prior, planned, config) = match decoded {
            Ok(v) => v,
            Err(d) => {
                resp.diagnostics.push(d.to_proto());
                // Keep what Terraform has: an empty new state would drop it.
                resp.new_state = req.prior_state.clone();
                return resp;
            }
        };
        let (new_state, new_private, mut diags) = self
            .inner
            .apply(
                type_name,
                prior,
                planned,
                config,
                req.planned_private.clone(),
            )
            .await;
        match encode(&new_state, ty, "new state", type_name) {
            Ok(v) => resp.new_state = Some(v),
            Err(d) => {
                diags.push(d);
                resp.new_state = req.prior_state.clone();
            }
        }
        resp.private = new_private;
        resp.diagnostics = diags.to_proto();
        resp
    }

    pub async fn read(&self, req: pb::read_resource::Request) -> pb::read_resource::Response {
        let mut resp = pb::read_resource::Response::default();
        let type_name = req.type_name.as_str();
        let result: Result<(), Diagnostics> = async {
            let ty = self.inner.value_type(ConfigOf::Resource(type_name))?;
            let state = decode(
                req.current_state.as_ref(),
                ty,
                "ReadResource",
                "current_state",
                type_name,
            )?;
            if state.is_null() {
                resp.new_state = req.current_state.clone();
                return Ok(());
            }
            match self
                .inner
                .read(type_name, state, req.private.clone())
                .await?
            {
                Some(s) => {
                    resp.new_state = Some(encode(&s.state, ty, "state", type_name)?);
                    resp.private = s.private;
                    resp.diagnostics.extend(s.warnings.to_proto());
                }
                None => {
                    resp.new_state = Some(encode(&Value::Null, ty, "state", type_name)?);
                }
            }
            Ok(())
        }
        .await;
        if let Err(d) = result {
            resp.diagnostics.extend(d.to_proto());
            if resp.new_state.is_none() {
                resp.new_state = req.current_state.clone();
            }
        }
        resp
    }

    pub async fn upgrade(
        &self,
        req: pb::upgrade_resource_state::Request,
    ) -> pb::upgrade_resource_state::Response {
        let mut resp = pb::upgrade_resource_state::Response::default();
        let type_name = req.type_name.as_str();
        let result: Result<(), Diagnostics> = (|| {
            let ty = self.inner.value_type(ConfigOf::Resource(type_name))?;
            let raw = req.raw_state.clone().unwrap_or_default();
            if raw.json.is_empty() {
                if !raw.flatmap.is_empty() {
                    return Err(Diagnostic::error(
                        "Unsupported state format",
                        format!(
                            "The stored state of {type_name} is in the flatmap format of \
                             Terraform 0.11 and earlier, which the Strata provider cannot read. \
                             Remove it from state and import it again."
                        ),
                    )
                    .into());
                }
                resp.upgraded_state = Some(encode(&Value::Null, ty, "state", type_name)?);
                return Ok(());
            }
            let value = self.inner.upgrade(type_name, req.version, &raw.json)?;
            resp.upgraded_state = Some(encode(&value, ty, "upgraded state", type_name)?);
            Ok(())
        })();
        if let Err(d) = result {
            resp.diagnostics = d.to_proto();
        }
        resp
    }
}

#[tonic::async_trait]
impl GrpcProvider for ProviderServer {
    async fn get_metadata(
        &self,
        _request: Request<pb::get_metadata::Request>,
    ) -> Result<Response<pb::get_metadata::Response>, Status> {
        let mut resources: Vec<_> = self
            .inner
            .resource_schemas()
            .map(|(k, _)| k.clone())
            .collect();
        resources.sort();
        let mut data_sources: Vec<_> = self
            .inner
            .data_source_schemas()
            .map(|(k, _)| k.clone())
            .collect();
        data_sources.sort();
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(Self::server_capabilities()),
            diagnostics: self.inner.setup_diagnostics().to_proto(),
            data_sources: data_sources
                .into_iter()
                .map(|type_name| pb::get_metadata::DataSourceMetadata { type_name })
                .collect(),
            resources: resources
                .into_iter()
                .map(|type_name| pb::get_metadata::ResourceMetadata { type_name })
                .collect(),
            functions: Vec::new(),
            ephemeral_resources: Vec::new(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<pb::get_provider_schema::Request>,
    ) -> Result<Response<pb::get_provider_schema::Response>, Status> {
        let _span = rpc_span("GetProviderSchema", "").entered();
        tracing::debug!(
            resources = self.inner.resource_schemas().count(),
            "serving the provider schema"
        );
        Ok(Response::new(pb::get_provider_schema::Response {
            provider: Some(self.inner.provider_schema().to_proto()),
            resource_schemas: self
                .inner
                .resource_schemas()
                .map(|(k, s)| (k.clone(), s.to_proto()))
                .collect(),
            data_source_schemas: self
                .inner
                .data_source_schemas()
                .map(|(k, s)| (k.clone(), s.to_proto()))
                .collect(),
            diagnostics: self.inner.setup_diagnostics().to_proto(),
            provider_meta: None,
            server_capabilities: Some(Self::server_capabilities()),
            functions: HashMap::new(),
            ephemeral_resource_schemas: HashMap::new(),
        }))
    }

    async fn get_resource_identity_schemas(
        &self,
        _request: Request<pb::get_resource_identity_schemas::Request>,
    ) -> Result<Response<pb::get_resource_identity_schemas::Response>, Status> {
        Ok(Response::new(
            pb::get_resource_identity_schemas::Response::default(),
        ))
    }

    async fn validate_provider_config(
        &self,
        request: Request<pb::validate_provider_config::Request>,
    ) -> Result<Response<pb::validate_provider_config::Response>, Status> {
        let req = request.into_inner();
        let _span = rpc_span("ValidateProviderConfig", "").entered();
        let diags = self.validate_config(
            ConfigOf::Provider,
            req.config.as_ref(),
            "ValidateProviderConfig",
        );
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<pb::validate_resource_config::Request>,
    ) -> Result<Response<pb::validate_resource_config::Response>, Status> {
        let req = request.into_inner();
        let diags = self
            .validate_resource(&req.type_name, req.config.as_ref())
            .instrument(rpc_span("ValidateResourceConfig", &req.type_name))
            .await;
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<pb::validate_data_resource_config::Request>,
    ) -> Result<Response<pb::validate_data_resource_config::Response>, Status> {
        let req = request.into_inner();
        let _span = rpc_span("ValidateDataResourceConfig", &req.type_name).entered();
        let diags = self.validate_config(
            ConfigOf::DataSource(&req.type_name),
            req.config.as_ref(),
            "ValidateDataResourceConfig",
        );
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<pb::upgrade_resource_state::Request>,
    ) -> Result<Response<pb::upgrade_resource_state::Response>, Status> {
        let req = request.into_inner();
        let span = rpc_span("UpgradeResourceState", &req.type_name);
        Ok(Response::new(self.upgrade(req).instrument(span).await))
    }

    async fn upgrade_resource_identity(
        &self,
        request: Request<pb::upgrade_resource_identity::Request>,
    ) -> Result<Response<pb::upgrade_resource_identity::Response>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::upgrade_resource_identity::Response {
            upgraded_identity: None,
            diagnostics: vec![
                Diagnostic::error(
                    "Resource identity not supported",
                    format!("{} has no resource identity schema.", req.type_name),
                )
                .to_proto(),
            ],
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<pb::configure_provider::Request>,
    ) -> Result<Response<pb::configure_provider::Response>, Status> {
        let req = request.into_inner();
        let diags = async {
            let of = ConfigOf::Provider;
            let ty = match self.inner.value_type(of) {
                Ok(t) => t,
                Err(d) => return Diagnostics::from(d),
            };
            match decode(
                req.config.as_ref(),
                ty,
                "ConfigureProvider",
                "config",
                of.name(),
            ) {
                Ok(config) => {
                    self.inner
                        .configure(config, req.terraform_version.clone())
                        .await
                }
                Err(d) => d.into(),
            }
        }
        .instrument(rpc_span("ConfigureProvider", ""))
        .await;
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn read_resource(
        &self,
        request: Request<pb::read_resource::Request>,
    ) -> Result<Response<pb::read_resource::Response>, Status> {
        let req = request.into_inner();
        let span = rpc_span("ReadResource", &req.type_name);
        Ok(Response::new(self.read(req).instrument(span).await))
    }

    async fn plan_resource_change(
        &self,
        request: Request<pb::plan_resource_change::Request>,
    ) -> Result<Response<pb::plan_resource_change::Response>, Status> {
        let req = request.into_inner();
        let span = rpc_span("PlanResourceChange", &req.type_name);
        Ok(Response::new(self.plan_change(req).instrument(span).await))
    }

    async fn apply_resource_change(
        &self,
        request: Request<pb::apply_resource_change::Request>,
    ) -> Result<Response<pb::apply_resource_change::Response>, Status> {
        let req = request.into_inner();
        let span = rpc_span("ApplyResourceChange", &req.type_name);
        Ok(Response::new(self.apply_change(req).instrument(span).await))
    }

    async fn import_resource_state(
        &self,
        request: Request<pb::import_resource_state::Request>,
    ) -> Result<Response<pb::import_resource_state::Response>, Status> {
        let req = request.into_inner();
        let type_name = req.type_name.as_str();
        let mut resp = pb::import_resource_state::Response::default();
        let result: Result<(), Diagnostics> = async {
            let ty = self.inner.value_type(ConfigOf::Resource(type_name))?;
            let imported = self.inner.import(type_name, req.id.clone()).await?;
            resp.imported_resources
                .push(pb::import_resource_state::ImportedResource {
                    type_name: type_name.to_string(),
                    state: Some(encode(&imported.state, ty, "imported state", type_name)?),
                    private: imported.private,
                    identity: None,
                });
            resp.diagnostics.extend(imported.warnings.to_proto());
            Ok(())
        }
        .instrument(rpc_span("ImportResourceState", type_name))
        .await;
        if let Err(d) = result {
            resp.diagnostics.extend(d.to_proto());
        }
        Ok(Response::new(resp))
    }

    async fn move_resource_state(
        &self,
        request: Request<pb::move_resource_state::Request>,
    ) -> Result<Response<pb::move_resource_state::Response>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::move_resource_state::Response {
            diagnostics: vec![
                Diagnostic::error(
                    "Moving resource state is not supported",
                    format!(
                        "The Strata provider cannot move state from {} ({}) to {}. Remove the old \
                     resource from state and import the object as {} instead.",
                        req.source_type_name,
                        req.source_provider_address,
                        req.target_type_name,
                        req.target_type_name
                    ),
                )
                .to_proto(),
            ],
            ..Default::default()
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<pb::read_data_source::Request>,
    ) -> Result<Response<pb::read_data_source::Response>, Status> {
        let req = request.into_inner();
        let type_name = req.type_name.as_str();
        let mut resp = pb::read_data_source::Response::default();
        let result: Result<(), Diagnostics> = async {
            let ty = self.inner.value_type(ConfigOf::DataSource(type_name))?;
            let config = decode(
                req.config.as_ref(),
                ty,
                "ReadDataSource",
                "config",
                type_name,
            )?;
            let state = self.inner.read_data_source(type_name, config).await?;
            resp.state = Some(encode(&state, ty, "state", type_name)?);
            Ok(())
        }
        .instrument(rpc_span("ReadDataSource", type_name))
        .await;
        if let Err(d) = result {
            resp.diagnostics = d.to_proto();
        }
        Ok(Response::new(resp))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        request: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> Result<Response<pb::validate_ephemeral_resource_config::Response>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            pb::validate_ephemeral_resource_config::Response {
                diagnostics: vec![unknown_type("ephemeral resource", &req.type_name).to_proto()],
            },
        ))
    }

    async fn open_ephemeral_resource(
        &self,
        request: Request<pb::open_ephemeral_resource::Request>,
    ) -> Result<Response<pb::open_ephemeral_resource::Response>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::open_ephemeral_resource::Response {
            diagnostics: vec![unknown_type("ephemeral resource", &req.type_name).to_proto()],
            ..Default::default()
        }))
    }

    async fn renew_ephemeral_resource(
        &self,
        request: Request<pb::renew_ephemeral_resource::Request>,
    ) -> Result<Response<pb::renew_ephemeral_resource::Response>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::renew_ephemeral_resource::Response {
            diagnostics: vec![unknown_type("ephemeral resource", &req.type_name).to_proto()],
            ..Default::default()
        }))
    }

    async fn close_ephemeral_resource(
        &self,
        request: Request<pb::close_ephemeral_resource::Request>,
    ) -> Result<Response<pb::close_ephemeral_resource::Response>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::close_ephemeral_resource::Response {
            diagnostics: vec![unknown_type("ephemeral resource", &req.type_name).to_proto()],
        }))
    }

    async fn get_functions(
        &self,
        _request: Request<pb::get_functions::Request>,
    ) -> Result<Response<pb::get_functions::Response>, Status> {
        Ok(Response::new(pb::get_functions::Response::default()))
    }

    async fn call_function(
        &self,
        request: Request<pb::call_function::Request>,
    ) -> Result<Response<pb::call_function::Response>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::call_function::Response {
            result: None,
            error: Some(pb::FunctionError {
                text: format!("The Strata provider has no function named {:?}.", req.name),
                function_argument: None,
            }),
        }))
    }

    async fn stop_provider(
        &self,
        _request: Request<pb::stop_provider::Request>,
    ) -> Result<Response<pb::stop_provider::Response>, Status> {
        tracing::info!("StopProvider: cancelling in-flight operations");
        self.stop();
        Ok(Response::new(pb::stop_provider::Response::default()))
    }
}

#[cfg(test)]
mod tests;
