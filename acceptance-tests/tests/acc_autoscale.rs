//! Acceptance (issue 6): the agent's discovery finds the segment Terraform attached, with its
//! bounds; after the node agent's own EC2 code grows a segment in LocalStack,
//! `tofu plan` is still empty, state shows the grown size as computed, a larger `size_gib`
//! grows in place, and a smaller one is refused at plan naming `size_gib`.

mod acc_support;

use acc_support::Acc;
use std::time::Duration;
use strata_agent::storage::discover;
use strata_agent::storage::ec2::{Ec2Client, Ec2Volumes, TAG_LAST_GROW, WaitPolicy};

fn config(acc: &Acc, size: u32) -> String {
    format!(
        r#"
resource "strata_cluster" "c" {{
  name          = "{name}"
  instance_type = "t3.medium"
  subnet_id     = "{subnet}"
}}
resource "strata_storage_segment" "data" {{
  node_id      = strata_cluster.c.source_node_id
  size_gib     = {size}
  max_size_gib = 200
}}
"#,
        name = acc.name,
        subnet = acc.subnet(0),
    )
}

#[test]
#[ignore = "acceptance: needs TF_ACC=1, tofu and LocalStack: run via scripts/test"]
fn agent_growth_is_not_drift() {
    let mut acc = Acc::new("auto");
    acc.write(&config(&acc, 20));
    acc.apply();
    let vol_id = acc.attr_str("strata_storage_segment.data", "id");

    // What `strata-agent run` on the source finds: this segment, by the instance's id, with the
    // bounds written in HCL (max_size_gib) and the schema's defaults for the rest.
    let source = acc.attr_str("strata_cluster.c", "source_node_id");
    let (ids, bounds) = acc
        .block(discover::segments_of(&acc.ec2, &source))
        .unwrap()
        .expect("the agent finds no segment attached to the source");
    assert_eq!(ids, vec![vol_id.clone()]);
    assert_eq!(bounds.max_size_gib, 200);
    assert_eq!(bounds.grow_at_percent, 80);
    assert_eq!(bounds.grow_by_percent, 20);
    assert_eq!(bounds.min_step_gib, 10);

    // The agent's code path: ModifyVolume, wait for optimizing/completed, tag strata:last-grow.
    let agent = Ec2Client::new(acc.ec2.clone(), &acc.name).with_wait(WaitPolicy {
        first_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        timeout: Duration::from_secs(60),
    });
    acc.block(agent.grow_volume(&vol_id, 20, 24)).unwrap();
    let vol = acc.volume(&vol_id);
    assert_eq!(vol.size(), Some(24));
    assert!(
        acc_support::tag(vol.tags(), TAG_LAST_GROW).is_some(),
        "agent did not tag its grow: {:?}",
        vol.tags()
    );

    let (code, out, err) = acc.plan();
    assert_eq!(code, 0, "the agent's growth shows as drift:\n{out}{err}");
    let d = acc.dir.clone();
    acc.run_ok(&d, &["refresh", "-input=false", "-no-color"]);
    let s = acc.resource("strata_storage_segment.data");
    assert_eq!(s["current_size_gib"], 24, "{s}");
    assert_eq!(s["size_gib"], 20, "{s}");
    assert_eq!(s["autoscaled"], true, "{s}");
    assert_eq!(s["id"].as_str(), Some(vol_id.as_str()));
    let (code, out, err) = acc.plan();
    assert_eq!(code, 0, "plan after refresh:\n{out}{err}");

    // Above the grown size: an in-place grow of the same volume.
    acc.write(&config(&acc, 30));
    acc.apply();
    assert_eq!(acc.attr_str("strata_storage_segment.data", "id"), vol_id);
    assert_eq!(acc.volume(&vol_id).size(), Some(30));
    assert_eq!(
        acc.attr("strata_storage_segment.data", "current_size_gib"),
        30
    );

    // Below the prior configured size: refused at plan, naming size_gib.
    acc.write(&config(&acc, 25));
    let (code, out, err) = acc.plan();
    assert_eq!(code, 1, "shrinking must fail at plan:\n{out}{err}");
    assert!(
        err.contains("size_gib"),
        "error does not name size_gib:\n{err}"
    );
    assert_eq!(acc.volume(&vol_id).size(), Some(30));

    acc.write(&config(&acc, 30));
    acc.destroy_and_check();
}
