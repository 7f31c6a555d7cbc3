//! The resource framework: the one place where the tfplugin6 protocol meets resources.
//!
//! Owns the schema model and builder (`schema`), plan modifiers and validators, diagnostics
//! with attribute paths, the `Resource`/`Provider` traits resources implement, the generic
//! planner, the logic that serves them (`fwserver`: routing, the validate flow, plan and apply)
//! and `server::ProviderServer`, the thin adapter that implements the generated gRPC
//! `Provider` service on top of it (protobuf in and out, `ToProto`). Resources never see
//! protobuf types; only `server` does. This module never talks to AWS.

pub mod datasource;
pub mod diag;
mod fwserver;
pub mod modifiers;
pub mod planner;
pub mod resource;
pub mod schema;
pub mod server;
pub mod validators;

pub use crate::cty::{AttributePath, PathStep, Type, Value};
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use modifiers::PlanModifier;
pub use resource::{
    ApplyFailure, Context, CreateRequest, DataSource, DeleteRequest, ImportRequest, NewState,
    PlanChange, Provider, ProviderData, ReadRequest, Resource, UpdateRequest, async_trait,
};
pub use schema::{Attr, AttrType, Attribute, Block, NestedBlock, Nesting, Schema};
pub use server::ProviderServer;
pub use tokio_util::sync::CancellationToken;
