//! The traits resource and provider authors implement, and the typed requests they receive.
//! Nothing here is protobuf: values are `cty::Value`s of the schema's implied type.

use std::any::Any;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cty::{AttributePath, Value};

use super::diag::{Diagnostic, Diagnostics};
use super::schema::Schema;

pub use tonic::async_trait;

/// Whatever `Provider::configure` built (AWS clients, settings), shared by every request.
pub type ProviderData = Arc<dyn Any + Send + Sync>;

/// What every resource call gets besides its values.
#[derive(Clone)]
pub struct Context {
    /// `None` before ConfigureProvider (validation, and plans with unknown provider config).
    pub provider_data: Option<ProviderData>,
    /// Cancelled when Terraform sends StopProvider: long waits should select on it.
    pub cancel: CancellationToken,
}

impl Context {
    pub fn new(provider_data: Option<ProviderData>, cancel: CancellationToken) -> Self {
        Context {
            provider_data,
            cancel,
        }
    }

    /// The provider data as `T`, or an error diagnostic saying the provider is not
    /// configured (or configured with something else).
    pub fn data<T: Any + Send + Sync>(&self) -> Result<&T, Diagnostics> {
        self.provider_data
            .as_deref()
            .and_then(|d| d.downcast_ref::<T>())
            .ok_or_else(|| {
                Diagnostic::error(
                    "Provider not configured",
                    "this operation needs the provider's configuration, which Terraform has not \
                     sent yet (is the provider block's configuration unknown until apply?)",
                )
                .into()
            })
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("configured", &self.provider_data.is_some())
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// The plan as the generic planner left it; `Resource::modify_plan` may change `planned`
/// (only computed attributes!), add `requires_replace` paths and set `private`.
#[derive(Debug)]
pub struct PlanChange {
    pub ctx: Context,
    pub config: Value,
    /// Null when creating.
    pub prior: Value,
    /// Null when destroying.
    pub planned: Value,
    pub requires_replace: Vec<AttributePath>,
    pub private: Vec<u8>,
    /// Warnings to show with the plan.
    pub diagnostics: Diagnostics,
}

impl PlanChange {
    pub fn is_create(&self) -> bool {
        self.prior.is_null()
    }

    pub fn is_destroy(&self) -> bool {
        self.planned.is_null()
    }

    /// A plan for a unit test of `modify_plan`: configuration equal to the plan, and no
    /// provider data, so every AWS check is skipped, as without credentials.
    #[cfg(test)]
    pub(crate) fn for_test(prior: Value, planned: Value) -> PlanChange {
        PlanChange {
            ctx: Context::new(None, CancellationToken::new()),
            config: planned.clone(),
            prior,
            planned,
            requires_replace: Vec::new(),
            private: Vec::new(),
            diagnostics: Diagnostics::new(),
        }
    }
}

#[derive(Debug)]
pub struct CreateRequest {
    pub ctx: Context,
    pub config: Value,
    pub planned: Value,
    pub private: Vec<u8>,
}

#[derive(Debug)]
pub struct ReadRequest {
    pub ctx: Context,
    pub state: Value,
    pub private: Vec<u8>,
}

#[derive(Debug)]
pub struct UpdateRequest {
    pub ctx: Context,
    pub config: Value,
    pub prior: Value,
    pub planned: Value,
    pub private: Vec<u8>,
}

#[derive(Debug)]
pub struct DeleteRequest {
    pub ctx: Context,
    pub prior: Value,
    pub private: Vec<u8>,
}

#[derive(Debug)]
pub struct ImportRequest {
    pub ctx: Context,
    pub id: String,
}

/// A new state with its private bytes and any warnings.
#[derive(Debug, Clone)]
pub struct NewState {
    pub state: Value,
    pub private: Vec<u8>,
    pub warnings: Diagnostics,
}

impl NewState {
    pub fn new(state: Value) -> Self {
        NewState {
            state,
            private: Vec::new(),
            warnings: Diagnostics::new(),
        }
    }

    #[must_use]
    pub fn with_private(mut self, private: Vec<u8>) -> Self {
        self.private = private;
        self
    }
}

/// A failed create/update: the errors, and what exists now when something was made before
/// the failure (stored as tainted on create, so the next apply replaces it).
#[derive(Debug, Clone, Default)]
pub struct ApplyFailure {
    pub diagnostics: Diagnostics,
    pub partial_state: Option<Value>,
}

impl From<Diagnostics> for ApplyFailure {
    fn from(diagnostics: Diagnostics) -> Self {
        ApplyFailure {
            diagnostics,
            partial_state: None,
        }
    }
}

impl From<Diagnostic> for ApplyFailure {
    fn from(d: Diagnostic) -> Self {
        ApplyFailure::from(Diagnostics::from(d))
    }
}

/// A managed resource type. Stored as `Arc<dyn Resource>`; methods are `async` through
/// `#[async_trait]` (re-exported as `framework::async_trait`).
#[async_trait]
pub trait Resource: Send + Sync + 'static {
    /// `strata_<noun>`.
    fn type_name(&self) -> &'static str;

    fn schema(&self) -> Schema;

    /// Cross-attribute checks on configuration (may contain unknowns). Attribute validators
    /// from the schema run before this.
    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Runs after the generic planner on creates and updates (not destroys).
    async fn modify_plan(&self, _plan: &mut PlanChange) -> Result<(), Diagnostics> {
        Ok(())
    }

    async fn create(&self, req: CreateRequest) -> Result<NewState, ApplyFailure>;

    /// The current state; `Ok(None)` when the object is gone (removed from state).
    async fn read(&self, req: ReadRequest) -> Result<Option<NewState>, Diagnostics>;

    async fn update(&self, req: UpdateRequest) -> Result<NewState, ApplyFailure>;

    async fn delete(&self, req: DeleteRequest) -> Result<(), Diagnostics>;

    /// State for `tofu import`; Terraform reads it right after, so attributes `read` fills
    /// may stay null.
    async fn import(&self, _req: ImportRequest) -> Result<NewState, Diagnostics> {
        Err(Diagnostic::error(
            "Import not supported",
            format!("{} cannot be imported", self.type_name()),
        )
        .into())
    }

    /// State written by schema `from_version` (older than the current one), as its raw JSON,
    /// to a value of the current schema's type.
    fn upgrade_state(
        &self,
        from_version: i64,
        _raw: &serde_json::Value,
    ) -> Result<Value, Diagnostics> {
        Err(Diagnostic::error(
            "Cannot upgrade state",
            format!(
                "{} has no upgrade from schema version {from_version} to {}",
                self.type_name(),
                self.schema().version
            ),
        )
        .into())
    }
}

/// A data source: reads something that exists (see `framework::datasource` for data sources
/// built on a resource's read). `config` is wholly known when Terraform calls `read`.
#[async_trait]
pub trait DataSource: Send + Sync + 'static {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }
    async fn read(&self, ctx: Context, config: Value) -> Result<Value, Diagnostics>;
}

/// The provider: its own configuration and the types it serves.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider's local name: resource types are `<type_name>_<noun>`.
    fn type_name(&self) -> &'static str {
        "strata"
    }

    fn schema(&self) -> Schema;

    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Builds what resources share (clients). `terraform_version` as the client reports it.
    async fn configure(
        &self,
        config: Value,
        terraform_version: String,
    ) -> Result<ProviderData, Diagnostics>;

    fn resources(&self) -> Vec<Arc<dyn Resource>>;

    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        Vec::new()
    }
}
