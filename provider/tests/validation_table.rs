//! Every configurable attribute of every resource, fed a value outside its domain: the
//! diagnostic must be an error at that attribute's path (so the user is told which line of
//! their configuration is wrong), and a valid baseline must pass. A new attribute without a
//! row here fails the test.

use strata_provider::cty::{AttributePath, Value};
use strata_provider::framework::server::validate_block;
use strata_provider::framework::{Diagnostics, Resource};
use strata_provider::resources;

fn s(v: &str) -> Value {
    Value::string(v)
}
fn n(v: i64) -> Value {
    Value::number_i64(v)
}
fn set(v: &[&str]) -> Value {
    Value::set(v.iter().map(|x| Value::string(*x)))
}
fn map(k: &str, v: &str) -> Value {
    Value::map([(k.to_string(), Value::string(v))])
}

/// A configuration every validator accepts.
fn baseline(type_name: &str) -> Vec<(&'static str, Value)> {
    match type_name {
        "strata_cluster" => vec![
            ("name", s("orders")),
            ("instance_type", s("t3.medium")),
            ("subnet_id", s("subnet-0abc")),
        ],
        "strata_replica" => vec![("cluster_id", s("orders")), ("subnet_id", s("subnet-0abc"))],
        "strata_region" => vec![
            ("cluster_id", s("orders")),
            ("region", s("eu-west-1")),
            ("subnet_id", s("subnet-0abc")),
        ],
        "strata_storage_segment" => vec![("node_id", s("i-0abc")), ("size_gib", n(20))],
        "strata_test_widget" => vec![],
        other => panic!("no baseline for {other}: add one"),
    }
}

/// (attribute, a value outside its domain). `None`: every value of its type is valid (bools).
fn bad_values(type_name: &str) -> Vec<(&'static str, Option<Value>)> {
    let common = |v: &mut Vec<(&'static str, Option<Value>)>| {
        v.push(("tags", Some(map("strata:cluster", "x"))));
    };
    let mut v: Vec<(&'static str, Option<Value>)> = match type_name {
        "strata_cluster" => vec![
            ("name", Some(s("2orders"))),
            ("engine", Some(s("postgres"))),
            ("engine_version", Some(s("11.4"))),
            ("instance_type", Some(s("large"))),
            ("ami_id", Some(s("image-1"))),
            ("subnet_id", Some(s("sg-0abc"))),
            ("allowed_cidr_blocks", Some(set(&["10.0.0.1/16"]))),
            ("allowed_security_group_ids", Some(set(&["subnet-1"]))),
            ("replication_mode", Some(s("sync"))),
            ("semi_sync_wait_for_replica_count", Some(n(0))),
            ("semi_sync_timeout_ms", Some(n(0))),
            ("instance_profile_name", Some(s("my profile"))),
            ("dns_domain", Some(s("Strata.Internal."))),
            ("dns_zone_id", Some(s("/hostedzone/Z123"))),
            ("engine_settings", Some(map("sync_binlog", "0"))),
        ],
        "strata_replica" => vec![
            ("cluster_id", Some(s("Orders"))),
            ("subnet_id", Some(s("subnet"))),
            ("instance_type", Some(s("t3"))),
        ],
        "strata_region" => vec![
            ("cluster_id", Some(s("-orders"))),
            ("region", Some(s("eu-west-9"))),
            ("subnet_id", Some(s("vpc-0abc"))),
            ("replica_count", Some(n(0))),
            ("instance_type", Some(s("m7i"))),
        ],
        "strata_storage_segment" => vec![
            ("node_id", Some(s("vol-0abc"))),
            ("size_gib", Some(n(0))),
            ("max_size_gib", Some(n(0))),
            ("grow_at_percent", Some(n(10))),
            ("grow_by_percent", Some(n(1))),
            ("min_grow_step_gib", Some(n(0))),
            ("volume_type", Some(s("st1"))),
            ("iops", Some(n(1))),
            ("throughput", Some(n(1))),
            ("encrypted", None),
            ("kms_key_id", Some(s("my-key"))),
            ("device_name", Some(s("/dev/sdz"))),
        ],
        _ => return Vec::new(),
    };
    common(&mut v);
    v
}

fn config(r: &dyn Resource, set: &[(&str, Value)]) -> Value {
    r.schema()
        .null_object_with(set.iter().map(|(k, v)| (*k, v.clone())))
}

fn validate(r: &dyn Resource, cfg: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    validate_block(&r.schema().block, cfg, &AttributePath::root(), &mut d);
    d.extend(r.validate(cfg));
    d
}

#[test]
fn every_attribute_outside_its_domain_is_refused_at_that_attribute() {
    let mut checked = 0;
    for r in resources::all() {
        let name = r.type_name();
        let base = baseline(name);
        let ok = validate(r.as_ref(), &config(r.as_ref(), &base));
        assert!(!ok.has_errors(), "{name}: the baseline is refused: {ok:?}");
        let table = bad_values(name);
        for a in &r.schema().block.attributes {
            if !(a.required || a.optional) {
                continue; // computed only: Terraform refuses it in configuration itself
            }
            let row = table.iter().find(|(n, _)| *n == a.name).unwrap_or_else(|| {
                panic!("{name}.{}: no out-of-domain value in the table", a.name)
            });
            let Some(bad) = &row.1 else { continue };
            let mut cfg = base.clone();
            cfg.retain(|(k, _)| *k != a.name);
            cfg.push((row.0, bad.clone()));
            let d = validate(r.as_ref(), &config(r.as_ref(), &cfg));
            let want = AttributePath::attr(&a.name);
            assert!(
                d.iter()
                    .any(|x| x.is_error()
                        && x.attribute.as_ref().is_some_and(|p| p.starts_with(&want))),
                "{name}.{} = {bad:?}: no error at {want}: {d:?}",
                a.name
            );
            checked += 1;
        }
        // The timeouts block: a duration that is not one.
        if r.schema().block.blocks.iter().any(|b| b.name == "timeouts") {
            let mut cfg = config(r.as_ref(), &base);
            if let Value::Object(attrs) = &mut cfg {
                attrs.insert(
                    "timeouts".into(),
                    Value::object([
                        ("create", s("ten minutes")),
                        ("update", Value::null()),
                        ("delete", Value::null()),
                    ]),
                );
            }
            let d = validate(r.as_ref(), &cfg);
            let want = AttributePath::attr("timeouts").attribute("create");
            assert!(
                d.iter()
                    .any(|x| x.is_error() && x.attribute.as_ref() == Some(&want)),
                "{name}.timeouts.create: {d:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 38, "only {checked} attributes checked");
}
