use super::*;
use crate::framework::resource::{
    ApplyFailure, CreateRequest, DeleteRequest, NewState, ProviderData, ReadRequest, Resource,
    UpdateRequest,
};
use crate::framework::schema::{Attr, Schema};

struct Boom;

#[async_trait::async_trait]
impl Resource for Boom {
    fn type_name(&self) -> &'static str {
        "strata_boom"
    }
    fn schema(&self) -> Schema {
        Schema::builder(0)
            .attribute(Attr::string("name").required())
            .attribute(Attr::string("id").computed_only())
    }
    async fn create(&self, _req: CreateRequest) -> Result<NewState, ApplyFailure> {
        panic!("boom in create");
    }
    async fn read(&self, req: ReadRequest) -> Result<Option<NewState>, Diagnostics> {
        req.ctx.cancel.cancelled().await;
        Ok(None)
    }
    async fn update(&self, _req: UpdateRequest) -> Result<NewState, ApplyFailure> {
        unreachable!()
    }
    async fn delete(&self, _req: DeleteRequest) -> Result<(), Diagnostics> {
        Ok(())
    }
}

struct P;

#[async_trait::async_trait]
impl Provider for P {
    fn schema(&self) -> Schema {
        Schema::builder(0)
    }
    async fn configure(&self, _c: Value, _v: String) -> Result<ProviderData, Diagnostics> {
        Ok(Arc::new(()))
    }
    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(Boom)]
    }
}

mod async_trait {
    pub(super) use tonic::async_trait;
}

fn ty() -> Type {
    Boom.schema().implied_type()
}

fn dv(v: &Value) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: cty::msgpack::encode(v, &ty()).unwrap(),
        json: vec![],
    })
}

#[tokio::test]
async fn panic_in_create_becomes_a_diagnostic_naming_the_resource() {
    let s = ProviderServer::new(P);
    let planned = Value::object([("name", Value::string("a")), ("id", Value::unknown())]);
    let resp = s
        .apply_change(pb::apply_resource_change::Request {
            type_name: "strata_boom".into(),
            prior_state: dv(&Value::Null),
            planned_state: dv(&planned),
            config: dv(&Value::object([
                ("name", Value::string("a")),
                ("id", Value::Null),
            ])),
            ..Default::default()
        })
        .await;
    assert_eq!(resp.diagnostics.len(), 1);
    assert!(
        resp.diagnostics[0].summary.contains("strata_boom create"),
        "{:?}",
        resp.diagnostics
    );
    assert!(resp.diagnostics[0].detail.contains("boom in create"));
}

#[tokio::test]
async fn malformed_dynamic_value_names_the_field() {
    let s = ProviderServer::new(P);
    let resp = s
        .plan_change(pb::plan_resource_change::Request {
            type_name: "strata_boom".into(),
            prior_state: dv(&Value::Null),
            proposed_new_state: Some(pb::DynamicValue {
                msgpack: vec![0x85, 0x01],
                json: vec![],
            }),
            config: dv(&Value::Null),
            ..Default::default()
        })
        .await;
    assert_eq!(resp.diagnostics.len(), 1);
    assert!(
        resp.diagnostics[0].summary.contains("proposed_new_state"),
        "{:?}",
        resp.diagnostics
    );
    assert!(resp.diagnostics[0].summary.contains("PlanResourceChange"));
}

#[tokio::test]
async fn unknown_type_is_a_diagnostic() {
    let s = ProviderServer::new(P);
    let d = s.validate_resource("strata_nope", None).await;
    assert!(d.has_errors());
    assert!(d.to_string().contains("strata_nope"));
}

#[tokio::test]
async fn stop_cancels_in_flight_reads_and_later_requests_get_a_fresh_token() {
    let s = ProviderServer::new(P);
    let s2 = s.clone();
    let state = Value::object([("name", Value::string("a")), ("id", Value::string("x"))]);
    let read = tokio::spawn(async move {
        s2.read(pb::read_resource::Request {
            type_name: "strata_boom".into(),
            current_state: dv(&state),
            ..Default::default()
        })
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    s.stop();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("the read should end after StopProvider")
        .unwrap();
    assert!(resp.diagnostics.is_empty());
    assert!(!s.context().is_cancelled());
}

#[tokio::test]
async fn plan_of_create_returns_unknown_id() {
    let s = ProviderServer::new(P);
    let config = Value::object([("name", Value::string("a")), ("id", Value::Null)]);
    let resp = s
        .plan_change(pb::plan_resource_change::Request {
            type_name: "strata_boom".into(),
            prior_state: dv(&Value::Null),
            proposed_new_state: dv(&config),
            config: dv(&config),
            ..Default::default()
        })
        .await;
    assert!(resp.diagnostics.is_empty(), "{:?}", resp.diagnostics);
    let planned = cty::msgpack::decode(&resp.planned_state.unwrap().msgpack, &ty()).unwrap();
    assert_eq!(planned.get_attr("id"), Some(&Value::unknown()));
}
