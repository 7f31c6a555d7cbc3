//! `strata_test_widget`: a test-only resource that exercises the framework end to end with
//! the real Terraform CLI: unknown computed values, a set, a default, a nested block list,
//! requires-replace, import and deletion outside Terraform. Registered only when
//! `STRATA_TEST_RESOURCES=1`; its objects are JSON files in `STRATA_TEST_STORE_DIR` (the
//! plugin process does not outlive one CLI command).

use std::path::PathBuf;

use crate::cty::{self, Type, Value};
use crate::framework::{
    ApplyFailure, Attr, Block, CreateRequest, DeleteRequest, Diagnostic, Diagnostics,
    ImportRequest, NestedBlock, NewState, ReadRequest, Resource, Schema, UpdateRequest,
    async_trait, validators,
};

pub const TYPE_NAME: &str = super::TEST_WIDGET_TYPE;

/// Whether the test resources are switched on in this process.
pub fn enabled() -> bool {
    std::env::var("STRATA_TEST_RESOURCES").as_deref() == Ok("1")
}

pub struct TestWidget;

fn store_dir() -> Result<PathBuf, Diagnostic> {
    std::env::var_os("STRATA_TEST_STORE_DIR")
        .map(PathBuf::from)
        .ok_or_else(|| {
            Diagnostic::error(
                "STRATA_TEST_STORE_DIR is not set",
                "strata_test_widget keeps its objects in that directory.",
            )
        })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn file_of(id: &str) -> Result<PathBuf, Diagnostic> {
    if !valid_id(id) {
        return Err(Diagnostic::error(
            "Invalid widget id",
            format!("{id:?} is not a widget id"),
        ));
    }
    Ok(store_dir()?.join(format!("{id}.json")))
}

fn io_error(what: &str, e: std::io::Error) -> Diagnostic {
    Diagnostic::error(format!("Could not {what}"), e.to_string())
}

impl TestWidget {
    fn ty(&self) -> Type {
        self.schema().implied_type()
    }

    async fn load(&self, id: &str) -> Result<Option<Value>, Diagnostic> {
        let path = file_of(id)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read the widget", e)),
        };
        cty::json::decode_state(&bytes, &self.ty())
            .map(Some)
            .map_err(|e| {
                Diagnostic::error("Corrupt widget file", format!("{}: {e}", path.display()))
            })
    }

    async fn store(&self, v: &Value) -> Result<(), Diagnostic> {
        let id = v.get_attr("id").and_then(Value::as_str).unwrap_or_default();
        let path = file_of(id)?;
        let json = cty::json::encode(v, &self.ty())
            .map_err(|e| Diagnostic::error("Could not encode the widget", e.to_string()))?;
        let dir = store_dir()?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("create the store directory", e))?;
        tokio::fs::write(&path, json)
            .await
            .map_err(|e| io_error("write the widget", e))
    }
}

fn set(v: &mut Value, name: &str, to: Value) {
    if let Some(slot) = v.get_attr_mut(name) {
        *slot = to;
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_string())
}

#[async_trait]
impl Resource for TestWidget {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::builder(1)
            .description("A test-only widget stored as a JSON file (`STRATA_TEST_STORE_DIR`).")
            .attribute(
                Attr::string("name")
                    .required()
                    .requires_replace()
                    .description("Name; changing it replaces the widget.")
                    .validate(validators::length(1, 63)),
            )
            .attribute(
                Attr::number("size")
                    .optional()
                    .description("Size, updated in place.")
                    .validate(validators::int_range(0, 1000)),
            )
            .attribute(
                Attr::set("labels", Type::String)
                    .optional()
                    .description("Labels."),
            )
            .attribute(
                Attr::string("mode")
                    .default(Value::string("standard"))
                    .description("`standard` or `fast`.")
                    .validate(validators::one_of(&["standard", "fast"])),
            )
            .attribute(
                Attr::string("id")
                    .computed_only()
                    .use_state_for_unknown()
                    .description("Identifier, known after create."),
            )
            .attribute(
                Attr::string("created_at")
                    .computed_only()
                    .use_state_for_unknown()
                    .description("Creation time (RFC 3339)."),
            )
            .attribute(Attr::number("revision").computed_only().description(
                "Bumped by every update: unknown in any plan that changes the widget.",
            ))
            .block(
                NestedBlock::list(
                    "rule",
                    Block::new()
                        .description("A rule.")
                        .attribute(
                            Attr::number("port")
                                .required()
                                .validate(validators::int_range(1, 65535)),
                        )
                        .attribute(Attr::string("protocol").default(Value::string("tcp"))),
                )
                .max_items(5),
            )
            .build()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        let mut d = Diagnostics::new();
        if let Some(labels) = config.get_attr("labels").and_then(Value::as_elements)
            && labels.iter().any(|l| l.as_str() == Some(""))
        {
            d.error_at(
                crate::cty::AttributePath::attr("labels"),
                "Empty label",
                "labels must not be empty strings",
            );
        }
        d
    }

    async fn create(&self, req: CreateRequest) -> Result<NewState, ApplyFailure> {
        let mut v = req.planned;
        if v.get_attr("name").and_then(Value::as_str) == Some("panic-please") {
            panic!("strata_test_widget was asked to panic");
        }
        let id = format!("w-{:016x}", rand::random::<u64>());
        set(&mut v, "id", Value::string(id));
        set(&mut v, "created_at", Value::string(now()));
        set(&mut v, "revision", Value::number_i64(1));
        self.store(&v).await?;
        tracing::info!(name = ?v.get_attr("name"), "created a test widget");
        Ok(NewState::new(v))
    }

    async fn read(&self, req: ReadRequest) -> Result<Option<NewState>, Diagnostics> {
        let id = req
            .state
            .get_attr("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(self.load(id).await?.map(NewState::new))
    }

    async fn update(&self, req: UpdateRequest) -> Result<NewState, ApplyFailure> {
        let mut v = req.planned;
        let revision = req
            .prior
            .get_attr("revision")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        set(&mut v, "revision", Value::number_i64(revision + 1));
        self.store(&v).await?;
        Ok(NewState::new(v))
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), Diagnostics> {
        let id = req
            .prior
            .get_attr("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match tokio::fs::remove_file(file_of(id)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete the widget", e).into()),
        }
    }

    async fn import(&self, req: ImportRequest) -> Result<NewState, Diagnostics> {
        match self.load(&req.id).await? {
            Some(v) => Ok(NewState::new(v)),
            None => Err(Diagnostic::error(
                "Cannot import a widget that does not exist",
                format!("no widget with id {:?}", req.id),
            )
            .into()),
        }
    }

    fn upgrade_state(
        &self,
        from_version: i64,
        raw: &serde_json::Value,
    ) -> Result<Value, Diagnostics> {
        // Version 0 had no `mode`; decoding as the current type leaves it null, so set the
        // default it would have been planned with.
        if from_version != 0 {
            return Err(Diagnostic::error(
                "Cannot upgrade state",
                format!("no upgrade from schema version {from_version}"),
            )
            .into());
        }
        let mut v = cty::json::decode_value(raw, &self.ty(), true)
            .map_err(|e| Diagnostic::error("Could not decode version 0 state", e.to_string()))?;
        if v.get_attr("mode").is_none_or(Value::is_null) {
            set(&mut v, "mode", Value::string("standard"));
        }
        Ok(v)
    }
}
