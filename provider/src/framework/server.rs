//! `ProviderServer`: the generated tfplugin6 `Provider` service on top of a framework
//! `Provider`. Decodes and encodes values, routes by type name, runs the generic planner,
//! turns every panic in provider or resource code into an error diagnostic naming the type and
//! operation, and hands each request a cancellation token that StopProvider cancels.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::cty::{self, AttributePath, PathStep, Type, Value};
use crate::tfplugin::proto::tfplugin6 as pb;
use crate::tfplugin::proto::tfplugin6::provider_server::Provider as GrpcProvider;

use super::diag::{Diagnostic, Diagnostics};
use super::planner;
use super::resource::{
    ApplyFailure, Context, CreateRequest, DataSource, DeleteRequest, ImportRequest, PlanChange,
    Provider, ProviderData, ReadRequest, Resource, UpdateRequest,
};
use super::schema::{Block, Schema};

struct ResourceEntry {
    resource: Arc<dyn Resource>,
    schema: Schema,
    ty: Type,
}

struct DataSourceEntry {
    data_source: Arc<dyn DataSource>,
    schema: Schema,
    ty: Type,
}

struct Inner {
    provider: Arc<dyn Provider>,
    provider_schema: Schema,
    provider_ty: Type,
    resources: HashMap<String, ResourceEntry>,
    data_sources: HashMap<String, DataSourceEntry>,
    /// Problems found while building the server (a panicking `schema()`), reported by
    /// GetProviderSchema and GetMetadata.
    setup_diagnostics: Diagnostics,
    data: RwLock<Option<ProviderData>>,
    cancel: Mutex<CancellationToken>,
}

/// Serves a framework `Provider` as the tfplugin6 gRPC service. Cheap to clone.
#[derive(Clone)]
pub struct ProviderServer {
    inner: Arc<Inner>,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

fn panic_diagnostic(
    type_name: &str,
    operation: &str,
    payload: &(dyn std::any::Any + Send),
) -> Diagnostic {
    let msg = panic_message(payload);
    tracing::error!(type_name, operation, panic = %msg, "provider code panicked");
    Diagnostic::error(
        format!("The Strata provider crashed in {type_name} {operation}"),
        format!(
            "{msg}\n\nThis is a bug in the Strata provider. The operation was stopped; the \
             provider process keeps running. Please report this with the log (TF_LOG=debug)."
        ),
    )
}

/// Runs `f`, turning a panic into an error diagnostic.
fn guard_sync<T>(type_name: &str, operation: &str, f: impl FnOnce() -> T) -> Result<T, Diagnostic> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| panic_diagnostic(type_name, operation, p.as_ref()))
}

/// Awaits `fut`, turning a panic into an error diagnostic.
pub async fn guard<T>(
    type_name: &str,
    operation: &str,
    fut: impl Future<Output = T>,
) -> Result<T, Diagnostic> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|p| panic_diagnostic(type_name, operation, p.as_ref()))
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

fn unknown_type(kind: &str, type_name: &str) -> Diagnostic {
    Diagnostic::error(
        format!("Unknown {kind} type"),
        format!("The Strata provider has no {kind} type named {type_name:?}."),
    )
}

/// Runs every attribute validator of `block` over `config`, and warns on deprecated
/// attributes that are set.
pub fn validate_block(
    block: &Block,
    config: &Value,
    path: &AttributePath,
    diags: &mut Diagnostics,
) {
    if config.is_null() || !config.is_known() {
        return;
    }
    for a in &block.attributes {
        let v = config.get_attr(&a.name).unwrap_or(&Value::Null);
        let p = path.clone().attribute(&a.name);
        if v.is_null() {
            continue;
        }
        if let Some(msg) = &a.deprecation {
            diags.warning_at(p.clone(), format!("\"{p}\" is deprecated"), msg.clone());
        }
        for validator in &a.validators {
            if let Some(d) = validator.check(v, &p) {
                diags.push(d);
            }
        }
        if let Some((_, nb)) = a.nested_block() {
            validate_children(&nb, v, &p, diags);
        }
    }
    for nb in &block.blocks {
        let v = config.get_attr(&nb.name).unwrap_or(&Value::Null);
        validate_children(&nb.block, v, &path.clone().attribute(&nb.name), diags);
    }
}

fn validate_children(block: &Block, v: &Value, path: &AttributePath, diags: &mut Diagnostics) {
    match v.unwrap_dynamic() {
        Value::Object(_) => validate_block(block, v, path, diags),
        Value::List(e) | Value::Set(e) => {
            for (i, e) in e.iter().enumerate() {
                validate_block(block, e, &path.clone().index(i as i64), diags);
            }
        }
        Value::Map(m) => {
            for (k, e) in m {
                validate_block(block, e, &path.clone().key(k.clone()), diags);
            }
        }
        _ => {}
    }
}

fn step_name(path: &AttributePath) -> String {
    path.steps
        .iter()
        .map(|s| match s {
            PathStep::Attribute(a) => a.clone(),
            PathStep::ElementKeyString(k) => format!("[{k:?}]"),
            PathStep::ElementKeyInt(i) => format!("[{i}]"),
        })
        .collect()
}

impl ProviderServer {
    pub fn new(provider: impl Provider) -> ProviderServer {
        Self::from_arc(Arc::new(provider))
    }

    pub fn from_arc(provider: Arc<dyn Provider>) -> ProviderServer {
        let mut setup_diagnostics = Diagnostics::new();
        let provider_schema = guard_sync("provider", "schema", || provider.schema())
            .unwrap_or_else(|d| {
                setup_diagnostics.push(d);
                Schema::default()
            });
        let provider_ty = provider_schema.implied_type();
        let mut resources = HashMap::new();
        let list =
            guard_sync("provider", "resources", || provider.resources()).unwrap_or_else(|d| {
                setup_diagnostics.push(d);
                Vec::new()
            });
        for resource in list {
            let name = resource.type_name();
            match guard_sync(name, "schema", || resource.schema()) {
                Ok(schema) => {
                    let ty = schema.implied_type();
                    resources.insert(
                        name.to_string(),
                        ResourceEntry {
                            resource,
                            schema,
                            ty,
                        },
                    );
                }
                Err(d) => setup_diagnostics.push(d),
            }
        }
        let mut data_sources = HashMap::new();
        let list = guard_sync("provider", "data_sources", || provider.data_sources())
            .unwrap_or_else(|d| {
                setup_diagnostics.push(d);
                Vec::new()
            });
        for data_source in list {
            let name = data_source.type_name();
            match guard_sync(name, "schema", || data_source.schema()) {
                Ok(schema) => {
                    let ty = schema.implied_type();
                    data_sources.insert(
                        name.to_string(),
                        DataSourceEntry {
                            data_source,
                            schema,
                            ty,
                        },
                    );
                }
                Err(d) => setup_diagnostics.push(d),
            }
        }
        ProviderServer {
            inner: Arc::new(Inner {
                provider,
                provider_schema,
                provider_ty,
                resources,
                data_sources,
                setup_diagnostics,
                data: RwLock::new(None),
                cancel: Mutex::new(CancellationToken::new()),
            }),
        }
    }

    /// The context every resource call gets: the configured data and the current token.
    pub fn context(&self) -> Context {
        let data = self
            .inner
            .data
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let cancel = self
            .inner
            .cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Context::new(data, cancel)
    }

    /// Cancels everything in flight; later requests get a fresh token.
    pub fn stop(&self) {
        let mut token = self
            .inner
            .cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        token.cancel();
        *token = CancellationToken::new();
    }

    fn resource(&self, type_name: &str) -> Result<&ResourceEntry, Diagnostic> {
        self.inner
            .resources
            .get(type_name)
            .ok_or_else(|| unknown_type("resource", type_name))
    }

    fn server_capabilities() -> pb::ServerCapabilities {
        pb::ServerCapabilities {
            plan_destroy: true,
            get_provider_schema_optional: true,
            move_resource_state: false,
        }
    }

    // The RPC bodies, in plain Rust (no tonic types around them), so tests can call them.

    pub async fn validate_resource(
        &self,
        type_name: &str,
        config: Option<&pb::DynamicValue>,
    ) -> Diagnostics {
        let mut diags = Diagnostics::new();
        let entry = match self.resource(type_name) {
            Ok(e) => e,
            Err(d) => return d.into(),
        };
        let config = match decode(
            config,
            &entry.ty,
            "ValidateResourceConfig",
            "config",
            type_name,
        ) {
            Ok(v) => v,
            Err(d) => return d.into(),
        };
        validate_block(
            &entry.schema.block,
            &config,
            &AttributePath::root(),
            &mut diags,
        );
        match guard_sync(type_name, "validate", || entry.resource.validate(&config)) {
            Ok(d) => diags.extend(d),
            Err(d) => diags.push(d),
        }
        diags
    }

    pub async fn plan_change(
        &self,
        req: pb::plan_resource_change::Request,
    ) -> pb::plan_resource_change::Response {
        let mut resp = pb::plan_resource_change::Response::default();
        let type_name = req.type_name.as_str();
        let result: Result<(), Diagnostics> = async {
            let entry = self.resource(type_name)?;
            let ty = &entry.ty;
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
            let generic = planner::plan(&entry.schema.block, &prior, &config, &proposed);
            let mut change = PlanChange {
                ctx: self.context(),
                config,
                prior,
                planned: generic.planned,
                requires_replace: generic.requires_replace,
                private: req.prior_private.clone(),
                diagnostics: Diagnostics::new(),
            };
            if !change.is_destroy() {
                let token = change.ctx.cancel.clone();
                guard(
                    type_name,
                    "plan",
                    crate::cancel::scope(token, entry.resource.modify_plan(&mut change)),
                )
                .await??;
                let problems = planner::check_plan_valid(
                    &entry.schema.block,
                    &change.prior,
                    &change.config,
                    &change.planned,
                );
                if !problems.is_empty() {
                    return Err(Diagnostic::error(
                        format!("The Strata provider planned an invalid change for {type_name}"),
                        format!(
                            "{}. This is a bug in the Strata provider.",
                            problems.join("; ")
                        ),
                    )
                    .into());
                }
            }
            resp.planned_state = Some(encode(&change.planned, ty, "planned state", type_name)?);
            resp.requires_replace = change
                .requires_replace
                .iter()
                .map(super::diag::path_to_proto)
                .collect();
            resp.planned_private = change.private;
            resp.diagnostics.extend(change.diagnostics.to_proto());
            tracing::debug!(
                type_name,
                replace = ?change.requires_replace.iter().map(step_name).collect::<Vec<_>>(),
                "planned a change"
            );
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
        let entry = match self.resource(type_name) {
            Ok(e) => e,
            Err(d) => {
                resp.diagnostics.push(d.to_proto());
                return resp;
            }
        };
        let ty = &entry.ty;
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
        let ctx = self.context();
        // Every wait and SDK retry under this change obeys StopProvider (crate::cancel).
        let token = ctx.cancel.clone();
        let private = req.planned_private.clone();
        let resource = &entry.resource;
        let (new_state, new_private, diags) = if planned.is_null() {
            tracing::info!(type_name, "deleting");
            match guard(
                type_name,
                "delete",
                crate::cancel::scope(
                    token.clone(),
                    resource.delete(DeleteRequest {
                        ctx,
                        prior: prior.clone(),
                        private: private.clone(),
                    }),
                ),
            )
            .await
            {
                Ok(Ok(())) => (Value::Null, Vec::new(), Diagnostics::new()),
                Ok(Err(d)) => (prior, private, d),
                Err(d) => (prior, private, d.into()),
            }
        } else if prior.is_null() {
            tracing::info!(type_name, "creating");
            match guard(
                type_name,
                "create",
                crate::cancel::scope(
                    token.clone(),
                    resource.create(CreateRequest {
                        ctx,
                        config,
                        planned,
                        private: private.clone(),
                    }),
                ),
            )
            .await
            {
                Ok(Ok(s)) => (s.state, s.private, s.warnings),
                Ok(Err(ApplyFailure {
                    diagnostics,
                    partial_state,
                })) => (partial_state.unwrap_or(Value::Null), private, diagnostics),
                Err(d) => (Value::Null, private, d.into()),
            }
        } else {
            tracing::info!(type_name, "updating");
            match guard(
                type_name,
                "update",
                crate::cancel::scope(
                    token.clone(),
                    resource.update(UpdateRequest {
                        ctx,
                        config,
                        prior: prior.clone(),
                        planned,
                        private: private.clone(),
                    }),
                ),
            )
            .await
            {
                Ok(Ok(s)) => (s.state, s.private, s.warnings),
                Ok(Err(ApplyFailure {
                    diagnostics,
                    partial_state,
                })) => (partial_state.unwrap_or(prior), private, diagnostics),
                Err(d) => (prior, private, d.into()),
            }
        };
        let mut diags = diags;
        if !new_state.is_wholly_known() {
            diags.error(
                format!("{type_name} returned unknown values after apply"),
                "Every value must be known once a change is applied. This is a bug in the Strata provider.",
            );
        }
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
            let entry = self.resource(type_name)?;
            let state = decode(
                req.current_state.as_ref(),
                &entry.ty,
                "ReadResource",
                "current_state",
                type_name,
            )?;
            if state.is_null() {
                resp.new_state = req.current_state.clone();
                return Ok(());
            }
            let read = guard(type_name, "read", {
                let ctx = self.context();
                crate::cancel::scope(
                    ctx.cancel.clone(),
                    entry.resource.read(ReadRequest {
                        ctx,
                        state,
                        private: req.private.clone(),
                    }),
                )
            })
            .await??;
            match read {
                Some(s) => {
                    resp.new_state = Some(encode(&s.state, &entry.ty, "state", type_name)?);
                    resp.private = s.private;
                    resp.diagnostics.extend(s.warnings.to_proto());
                }
                None => {
                    tracing::info!(type_name, "the object is gone; removing it from state");
                    resp.new_state = Some(encode(&Value::Null, &entry.ty, "state", type_name)?);
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
            let entry = self.resource(type_name)?;
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
                resp.upgraded_state = Some(encode(&Value::Null, &entry.ty, "state", type_name)?);
                return Ok(());
            }
            let current = entry.schema.version;
            let value = if req.version == current {
                cty::json::decode_state(&raw.json, &entry.ty).map_err(|e| {
                    Diagnostic::error(
                        format!("Could not decode the stored state of {type_name}"),
                        format!("raw_state of the UpgradeResourceState request: {e}"),
                    )
                })?
            } else if req.version > current {
                return Err(Diagnostic::error(
                    "State written by a newer provider",
                    format!(
                        "The state of {type_name} was written with schema version {}, newer \
                         than this provider's {current}. Use the newer provider version.",
                        req.version
                    ),
                )
                .into());
            } else {
                let json: serde_json::Value = serde_json::from_slice(&raw.json).map_err(|e| {
                    Diagnostic::error(
                        format!("Could not decode the stored state of {type_name}"),
                        format!("raw_state of the UpgradeResourceState request is not JSON: {e}"),
                    )
                })?;
                let version = req.version;
                guard_sync(type_name, "upgrade_state", || {
                    entry.resource.upgrade_state(version, &json)
                })??
            };
            resp.upgraded_state = Some(encode(&value, &entry.ty, "upgraded state", type_name)?);
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
        let mut resources: Vec<_> = self.inner.resources.keys().cloned().collect();
        resources.sort();
        let mut data_sources: Vec<_> = self.inner.data_sources.keys().cloned().collect();
        data_sources.sort();
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(Self::server_capabilities()),
            diagnostics: self.inner.setup_diagnostics.to_proto(),
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
        tracing::debug!(
            resources = self.inner.resources.len(),
            "serving the provider schema"
        );
        Ok(Response::new(pb::get_provider_schema::Response {
            provider: Some(self.inner.provider_schema.to_proto()),
            resource_schemas: self
                .inner
                .resources
                .iter()
                .map(|(k, e)| (k.clone(), e.schema.to_proto()))
                .collect(),
            data_source_schemas: self
                .inner
                .data_sources
                .iter()
                .map(|(k, e)| (k.clone(), e.schema.to_proto()))
                .collect(),
            diagnostics: self.inner.setup_diagnostics.to_proto(),
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
        let mut diags = Diagnostics::new();
        match decode(
            req.config.as_ref(),
            &self.inner.provider_ty,
            "ValidateProviderConfig",
            "config",
            "the provider",
        ) {
            Ok(config) => {
                validate_block(
                    &self.inner.provider_schema.block,
                    &config,
                    &AttributePath::root(),
                    &mut diags,
                );
                match guard_sync("provider", "validate", || {
                    self.inner.provider.validate(&config)
                }) {
                    Ok(d) => diags.extend(d),
                    Err(d) => diags.push(d),
                }
            }
            Err(d) => diags.push(d),
        }
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
        let type_name = req.type_name.as_str();
        let mut diags = Diagnostics::new();
        match self.inner.data_sources.get(type_name) {
            None => diags.push(unknown_type("data source", type_name)),
            Some(entry) => match decode(
                req.config.as_ref(),
                &entry.ty,
                "ValidateDataResourceConfig",
                "config",
                type_name,
            ) {
                Ok(config) => {
                    validate_block(
                        &entry.schema.block,
                        &config,
                        &AttributePath::root(),
                        &mut diags,
                    );
                    match guard_sync(type_name, "validate", || {
                        entry.data_source.validate(&config)
                    }) {
                        Ok(d) => diags.extend(d),
                        Err(d) => diags.push(d),
                    }
                }
                Err(d) => diags.push(d),
            },
        }
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<pb::upgrade_resource_state::Request>,
    ) -> Result<Response<pb::upgrade_resource_state::Response>, Status> {
        Ok(Response::new(self.upgrade(request.into_inner()).await))
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
        let mut diags = Diagnostics::new();
        match decode(
            req.config.as_ref(),
            &self.inner.provider_ty,
            "ConfigureProvider",
            "config",
            "the provider",
        ) {
            Ok(config) => {
                tracing::debug!(terraform_version = %req.terraform_version, "configuring the provider");
                match guard(
                    "provider",
                    "configure",
                    self.inner
                        .provider
                        .configure(config, req.terraform_version.clone()),
                )
                .await
                {
                    Ok(Ok(data)) => {
                        *self
                            .inner
                            .data
                            .write()
                            .unwrap_or_else(PoisonError::into_inner) = Some(data);
                    }
                    Ok(Err(d)) => diags.extend(d),
                    Err(d) => diags.push(d),
                }
            }
            Err(d) => diags.push(d),
        }
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn read_resource(
        &self,
        request: Request<pb::read_resource::Request>,
    ) -> Result<Response<pb::read_resource::Response>, Status> {
        Ok(Response::new(self.read(request.into_inner()).await))
    }

    async fn plan_resource_change(
        &self,
        request: Request<pb::plan_resource_change::Request>,
    ) -> Result<Response<pb::plan_resource_change::Response>, Status> {
        Ok(Response::new(self.plan_change(request.into_inner()).await))
    }

    async fn apply_resource_change(
        &self,
        request: Request<pb::apply_resource_change::Request>,
    ) -> Result<Response<pb::apply_resource_change::Response>, Status> {
        Ok(Response::new(self.apply_change(request.into_inner()).await))
    }

    async fn import_resource_state(
        &self,
        request: Request<pb::import_resource_state::Request>,
    ) -> Result<Response<pb::import_resource_state::Response>, Status> {
        let req = request.into_inner();
        let type_name = req.type_name.as_str();
        let mut resp = pb::import_resource_state::Response::default();
        let result: Result<(), Diagnostics> = async {
            let entry = self.resource(type_name)?;
            tracing::info!(type_name, id = %req.id, "importing");
            let imported = guard(
                type_name,
                "import",
                entry.resource.import(ImportRequest {
                    ctx: self.context(),
                    id: req.id.clone(),
                }),
            )
            .await??;
            resp.imported_resources
                .push(pb::import_resource_state::ImportedResource {
                    type_name: type_name.to_string(),
                    state: Some(encode(
                        &imported.state,
                        &entry.ty,
                        "imported state",
                        type_name,
                    )?),
                    private: imported.private,
                    identity: None,
                });
            resp.diagnostics.extend(imported.warnings.to_proto());
            Ok(())
        }
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
            let entry = self
                .inner
                .data_sources
                .get(type_name)
                .ok_or_else(|| unknown_type("data source", type_name))?;
            let config = decode(
                req.config.as_ref(),
                &entry.ty,
                "ReadDataSource",
                "config",
                type_name,
            )?;
            let state = guard(
                type_name,
                "read",
                entry.data_source.read(self.context(), config),
            )
            .await??;
            resp.state = Some(encode(&state, &entry.ty, "state", type_name)?);
            Ok(())
        }
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
