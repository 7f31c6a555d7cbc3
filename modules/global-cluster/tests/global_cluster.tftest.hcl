# Runs against LocalStack. The harness (acceptance-tests/tests/modules_tofu_test.rs) passes
# subnet_ids (two subnets in us-east-1), eu_subnet_id (a subnet in eu-west-1) and
# localstack_endpoint; by hand:
#   cargo run -q -p strata-acceptance-tests --bin localstack-network -- --tfvars > /tmp/net.json
#   tofu test -var-file=/tmp/net.json

variables {
  localstack_endpoint = "http://127.0.0.1:4566"
  name                = "tftest-global"
  instance_type       = "t3.medium"
  replica_count       = 1
  storage_size_gib    = 20
}

# One provider configuration for both regions: strata_region builds its own eu-west-1 client.
provider "strata" {
  region     = "us-east-1"
  access_key = "test"
  secret_key = "test"
  # LocalStack's instances never boot: do not wait for nodes to report ready.
  node_ready_timeout = "0s"

  # Endpoints come from AWS_ENDPOINT_URL (the harness points it at LocalStack): a provider
  # block in a test file cannot read the test's variables.
}

run "network" {
  module {
    source = "./tests/network"
  }
}

run "rejects_a_bad_region_name" {
  command = plan

  variables {
    regions = { "Europe" = { subnet_id = run.network.eu_subnet_id, replica_count = 1 } }
  }

  expect_failures = [var.regions]
}

run "home_plus_eu_west_1" {
  variables {
    regions = { "eu-west-1" = { subnet_id = run.network.eu_subnet_id, replica_count = 2 } }
  }

  assert {
    condition     = output.cluster_id == var.name && can(regex(":3306$", output.writer_endpoint))
    error_message = "home cluster: id ${output.cluster_id}, writer ${output.writer_endpoint}"
  }

  assert {
    condition     = length(output.replica_node_ids) == 1 && output.replica_availability_zones[0] != output.source_availability_zone
    error_message = "want one home replica outside the source's AZ, got ${jsonencode(output.replica_availability_zones)}"
  }

  assert {
    condition     = length(output.segment_ids) == 2
    error_message = "want a segment on the source and on the home replica, got ${jsonencode(output.segment_ids)}"
  }

  assert {
    condition     = length(output.regions) == 1 && contains(keys(output.regions), "eu-west-1") && output.regions["eu-west-1"].id == "${var.name}/eu-west-1"
    error_message = "regions output: ${jsonencode(keys(output.regions))}"
  }

  assert {
    condition     = length(output.regions["eu-west-1"].replica_node_ids) == 2 && length(output.regions["eu-west-1"].replica_private_ips) == 2
    error_message = "eu-west-1 should have 2 replicas, got ${jsonencode(output.regions["eu-west-1"].replica_node_ids)}"
  }

  assert {
    condition     = length(setintersection(toset(output.regions["eu-west-1"].replica_node_ids), toset(concat([output.source_node_id], output.replica_node_ids)))) == 0
    error_message = "a read-only region replica shares a node id with the home region"
  }

  assert {
    condition     = startswith(output.regions["eu-west-1"].security_group_id, "sg-") && output.regions["eu-west-1"].security_group_id != output.security_group_id
    error_message = "eu-west-1 needs its own security group, got ${output.regions["eu-west-1"].security_group_id}"
  }
}

run "grow_eu_west_1_in_place" {
  # Earlier runs' outputs reach assertions through variables (tofu evaluates run.* there).
  variables {
    regions          = { "eu-west-1" = { subnet_id = run.network.eu_subnet_id, replica_count = 3 } }
    earlier_eu_nodes = run.home_plus_eu_west_1.regions["eu-west-1"].replica_node_ids
    earlier_source   = run.home_plus_eu_west_1.source_node_id
  }

  assert {
    condition     = length(output.regions["eu-west-1"].replica_node_ids) == 3
    error_message = "eu-west-1 should have 3 replicas after growing, got ${jsonencode(output.regions["eu-west-1"].replica_node_ids)}"
  }

  assert {
    condition     = length(setsubtract(toset(var.earlier_eu_nodes), toset(output.regions["eu-west-1"].replica_node_ids))) == 0
    error_message = "growing the region replaced existing replicas"
  }

  assert {
    condition     = output.source_node_id == var.earlier_source
    error_message = "changing a region replaced the home source"
  }
}
