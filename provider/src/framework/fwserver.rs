//! The logic behind the tfplugin6 adapter (`server`): routing by type name, the one validate
//! flow, the generic planner around `modify_plan`, apply and read with their invariants, and a
//! guard that turns every panic in provider or resource code into an error diagnostic naming
//! the type and operation. Everything here speaks `cty::Value`; protobuf stays in the adapter.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::cty::{self, AttributePath, PathStep, Type, Value};

use super::diag::{Diagnostic, Diagnostics};
use super::planner;
use super::resource::{
    ApplyFailure, Context, CreateRequest, DataSource, DeleteRequest, ImportRequest, NewState,
    PlanChange, Provider, ProviderData, ReadRequest, Resource, UpdateRequest,
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

/// Registers resources or data sources by type name with their schemas, in one pass for
/// both: a schema that panics becomes a diagnostic and its type is left out.
fn register<T, E>(
    list: Vec<T>,
    type_name: impl Fn(&T) -> &'static str,
    schema: impl Fn(&T) -> Schema,
    entry: impl Fn(T, Schema, Type) -> E,
    diagnostics: &mut Diagnostics,
) -> HashMap<String, E> {
    let mut out = HashMap::new();
    for item in list {
        let name = type_name(&item);
        match guard_sync(name, "schema", || schema(&item)) {
            Ok(schema) => {
                let ty = schema.implied_type();
                out.insert(name.to_string(), entry(item, schema, ty));
            }
            Err(d) => diagnostics.push(d),
        }
    }
    out
}

/// What a configuration belongs to: the provider block, a resource or a data source.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConfigOf<'a> {
    Provider,
    Resource(&'a str),
    DataSource(&'a str),
}

impl ConfigOf<'_> {
    /// The name diagnostics use for it.
    pub(crate) fn name(&self) -> &str {
        match self {
            ConfigOf::Provider => "the provider",
            ConfigOf::Resource(n) | ConfigOf::DataSource(n) => n,
        }
    }

    /// The name the panic guard reports.
    fn guard_name(&self) -> &str {
        match self {
            ConfigOf::Provider => "provider",
            ConfigOf::Resource(n) | ConfigOf::DataSource(n) => n,
        }
    }
}

/// A framework `Provider` with its schemas resolved once, its configured data and the
/// cancellation token StopProvider cancels.
pub(crate) struct FrameworkServer {
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
pub(super) async fn guard<T>(
    type_name: &str,
    operation: &str,
    fut: impl Future<Output = T>,
) -> Result<T, Diagnostic> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|p| panic_diagnostic(type_name, operation, p.as_ref()))
}

pub(crate) fn unknown_type(kind: &str, type_name: &str) -> Diagnostic {
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

impl FrameworkServer {
    pub(crate) fn new(provider: Arc<dyn Provider>) -> FrameworkServer {
        let mut setup_diagnostics = Diagnostics::new();
        let provider_schema = guard_sync("provider", "schema", || provider.schema())
            .unwrap_or_else(|d| {
                setup_diagnostics.push(d);
                Schema::default()
            });
        let provider_ty = provider_schema.implied_type();
        let list =
            guard_sync("provider", "resources", || provider.resources()).unwrap_or_else(|d| {
                setup_diagnostics.push(d);
                Vec::new()
            });
        let resources = register(
            list,
            |r| r.type_name(),
            |r| r.schema(),
            |resource, schema, ty| ResourceEntry {
                resource,
                schema,
                ty,
            },
            &mut setup_diagnostics,
        );
        let list = guard_sync("provider", "data_sources", || provider.data_sources())
            .unwrap_or_else(|d| {
                setup_diagnostics.push(d);
                Vec::new()
            });
        let data_sources = register(
            list,
            |d| d.type_name(),
            |d| d.schema(),
            |data_source, schema, ty| DataSourceEntry {
                data_source,
                schema,
                ty,
            },
            &mut setup_diagnostics,
        );
        FrameworkServer {
            provider,
            provider_schema,
            provider_ty,
            resources,
            data_sources,
            setup_diagnostics,
            data: RwLock::new(None),
            cancel: Mutex::new(CancellationToken::new()),
        }
    }

    /// The context every resource call gets: the configured data and the current token.
    pub(crate) fn context(&self) -> Context {
        let data = self
            .data
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let cancel = self
            .cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Context::new(data, cancel)
    }

    /// Cancels everything in flight; later requests get a fresh token.
    pub(crate) fn stop(&self) {
        let mut token = self.cancel.lock().unwrap_or_else(PoisonError::into_inner);
        token.cancel();
        *token = CancellationToken::new();
    }

    pub(crate) fn setup_diagnostics(&self) -> &Diagnostics {
        &self.setup_diagnostics
    }

    pub(crate) fn provider_schema(&self) -> &Schema {
        &self.provider_schema
    }

    pub(crate) fn resource_schemas(&self) -> impl Iterator<Item = (&String, &Schema)> {
        self.resources.iter().map(|(k, e)| (k, &e.schema))
    }

    pub(crate) fn data_source_schemas(&self) -> impl Iterator<Item = (&String, &Schema)> {
        self.data_sources.iter().map(|(k, e)| (k, &e.schema))
    }

    fn resource(&self, type_name: &str) -> Result<&ResourceEntry, Diagnostic> {
        self.resources
            .get(type_name)
            .ok_or_else(|| unknown_type("resource", type_name))
    }

    fn data_source(&self, type_name: &str) -> Result<&DataSourceEntry, Diagnostic> {
        self.data_sources
            .get(type_name)
            .ok_or_else(|| unknown_type("data source", type_name))
    }

    /// The type of the configuration and state values of `of`; an unknown type name is the
    /// error diagnostic the user sees.
    pub(crate) fn value_type(&self, of: ConfigOf<'_>) -> Result<&Type, Diagnostic> {
        match of {
            ConfigOf::Provider => Ok(&self.provider_ty),
            ConfigOf::Resource(n) => self.resource(n).map(|e| &e.ty),
            ConfigOf::DataSource(n) => self.data_source(n).map(|e| &e.ty),
        }
    }

    /// The one validate flow: the schema's validators and deprecations, then the provider's,
    /// resource's or data source's own check (guarded).
    pub(crate) fn validate(&self, of: ConfigOf<'_>, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        let (block, check): (&Block, &dyn Fn(&Value) -> Diagnostics) = match of {
            ConfigOf::Provider => (&self.provider_schema.block, &|c| self.provider.validate(c)),
            ConfigOf::Resource(n) => match self.resource(n) {
                Ok(e) => (&e.schema.block, &|c| e.resource.validate(c)),
                Err(d) => return d.into(),
            },
            ConfigOf::DataSource(n) => match self.data_source(n) {
                Ok(e) => (&e.schema.block, &|c| e.data_source.validate(c)),
                Err(d) => return d.into(),
            },
        };
        validate_block(block, config, &AttributePath::root(), &mut diags);
        match guard_sync(of.guard_name(), "validate", || check(config)) {
            Ok(d) => diags.extend(d),
            Err(d) => diags.push(d),
        }
        diags
    }

    pub(crate) async fn configure(&self, config: Value, terraform_version: String) -> Diagnostics {
        tracing::debug!(terraform_version = %terraform_version, "configuring the provider");
        match guard(
            "provider",
            "configure",
            self.provider.configure(config, terraform_version),
        )
        .await
        {
            Ok(Ok(data)) => {
                *self.data.write().unwrap_or_else(PoisonError::into_inner) = Some(data);
                Diagnostics::new()
            }
            Ok(Err(d)) => d,
            Err(d) => d.into(),
        }
    }

    /// The generic plan, refined by the resource's `modify_plan` (not for a destroy), and
    /// checked against what Terraform accepts.
    pub(crate) async fn plan(
        &self,
        type_name: &str,
        prior: Value,
        config: Value,
        proposed: Value,
        prior_private: Vec<u8>,
    ) -> Result<PlanChange, Diagnostics> {
        let entry = self.resource(type_name)?;
        let generic = planner::plan(&entry.schema.block, &prior, &config, &proposed);
        let mut change = PlanChange {
            ctx: self.context(),
            config,
            prior,
            planned: generic.planned,
            requires_replace: generic.requires_replace,
            private: prior_private,
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
        tracing::debug!(
            type_name,
            replace = ?change.requires_replace.iter().map(step_name).collect::<Vec<_>>(),
            "planned a change"
        );
        Ok(change)
    }

    /// Delete, create or update, by which of `prior` and `planned` is null. Returns the new
    /// state, its private data and the diagnostics; on failure the state Terraform should
    /// keep (the prior one, or what a failed create left).
    pub(crate) async fn apply(
        &self,
        type_name: &str,
        prior: Value,
        planned: Value,
        config: Value,
        private: Vec<u8>,
    ) -> (Value, Vec<u8>, Diagnostics) {
        let resource = match self.resource(type_name) {
            Ok(e) => &e.resource,
            Err(d) => return (prior, private, d.into()),
        };
        let ctx = self.context();
        // Every wait and SDK retry under this change obeys StopProvider (crate::cancel).
        let token = ctx.cancel.clone();
        let (new_state, new_private, mut diags) = if planned.is_null() {
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
        if !new_state.is_wholly_known() {
            diags.error(
                format!("{type_name} returned unknown values after apply"),
                "Every value must be known once a change is applied. This is a bug in the Strata provider.",
            );
        }
        (new_state, new_private, diags)
    }

    /// The object as it is now; None when it is gone (Terraform drops it from state).
    pub(crate) async fn read(
        &self,
        type_name: &str,
        state: Value,
        private: Vec<u8>,
    ) -> Result<Option<NewState>, Diagnostics> {
        let entry = self.resource(type_name)?;
        let read = guard(type_name, "read", {
            let ctx = self.context();
            crate::cancel::scope(
                ctx.cancel.clone(),
                entry.resource.read(ReadRequest {
                    ctx,
                    state,
                    private,
                }),
            )
        })
        .await??;
        if read.is_none() {
            tracing::info!(type_name, "the object is gone; removing it from state");
        }
        Ok(read)
    }

    pub(crate) async fn import(
        &self,
        type_name: &str,
        id: String,
    ) -> Result<NewState, Diagnostics> {
        let entry = self.resource(type_name)?;
        tracing::info!(type_name, id = %id, "importing");
        guard(
            type_name,
            "import",
            entry.resource.import(ImportRequest {
                ctx: self.context(),
                id,
            }),
        )
        .await?
    }

    /// Stored state (its JSON) written with schema `version`, as a value of the current schema.
    pub(crate) fn upgrade(
        &self,
        type_name: &str,
        version: i64,
        raw_json: &[u8],
    ) -> Result<Value, Diagnostics> {
        let entry = self.resource(type_name)?;
        let current = entry.schema.version;
        if version == current {
            cty::json::decode_state(raw_json, &entry.ty).map_err(|e| {
                Diagnostic::error(
                    format!("Could not decode the stored state of {type_name}"),
                    format!("raw_state of the UpgradeResourceState request: {e}"),
                )
                .into()
            })
        } else if version > current {
            Err(Diagnostic::error(
                "State written by a newer provider",
                format!(
                    "The state of {type_name} was written with schema version {version}, newer \
                     than this provider's {current}. Use the newer provider version."
                ),
            )
            .into())
        } else {
            let json: serde_json::Value = serde_json::from_slice(raw_json).map_err(|e| {
                Diagnostic::error(
                    format!("Could not decode the stored state of {type_name}"),
                    format!("raw_state of the UpgradeResourceState request is not JSON: {e}"),
                )
            })?;
            Ok(guard_sync(type_name, "upgrade_state", || {
                entry.resource.upgrade_state(version, &json)
            })??)
        }
    }

    pub(crate) async fn read_data_source(
        &self,
        type_name: &str,
        config: Value,
    ) -> Result<Value, Diagnostics> {
        let entry = self.data_source(type_name)?;
        guard(
            type_name,
            "read",
            entry.data_source.read(self.context(), config),
        )
        .await?
    }
}
