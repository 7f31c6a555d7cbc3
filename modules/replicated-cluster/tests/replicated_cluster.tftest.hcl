# Runs against LocalStack. The harness (acceptance-tests/tests/modules_tofu_test.rs) passes
# subnet_ids (two subnets in two AZs of us-east-1, from the localstack-network helper) and
# localstack_endpoint; by hand:
#   cargo run -q -p strata-acceptance-tests --bin localstack-network -- --tfvars > /tmp/net.json
#   tofu test -var-file=/tmp/net.json

variables {
  localstack_endpoint = "http://127.0.0.1:4566"
  name                = "tftest-replicated"
  instance_type       = "t3.medium"
  storage_size_gib    = 20
}

provider "strata" {
  region     = "us-east-1"
  access_key = "test"
  secret_key = "test"
  # LocalStack's instances never boot: do not wait for nodes to report ready.
  node_ready_timeout = "0s"

  # Endpoints come from AWS_ENDPOINT_URL (the harness points it at LocalStack): a provider
  # block in a test file cannot read the test's variables.
}

run "rejects_a_bad_name" {
  command = plan

  variables {
    name = "Orders_DB"
  }

  expect_failures = [var.name]
}

run "three_replicas_over_two_azs" {
  variables {
    replica_count = 3
  }

  assert {
    condition     = output.cluster_id == var.name
    error_message = "cluster_id is ${output.cluster_id}, want the name ${var.name}"
  }

  assert {
    condition     = output.writer_endpoint == "writer.${var.name}.strata.internal:3306" && output.reader_endpoint == "reader.${var.name}.strata.internal:3306"
    error_message = "endpoints ${output.writer_endpoint} / ${output.reader_endpoint} are not writer./reader.<name>.strata.internal:3306"
  }

  assert {
    condition     = startswith(output.source_node_id, "i-")
    error_message = "source_node_id ${output.source_node_id} is not an instance id"
  }

  assert {
    condition     = length(output.replica_node_ids) == 3 && length(distinct(output.replica_node_ids)) == 3
    error_message = "want 3 distinct replicas, got ${jsonencode(output.replica_node_ids)}"
  }

  assert {
    condition     = !contains(output.replica_node_ids, output.source_node_id)
    error_message = "a replica has the source's node id"
  }

  assert {
    condition     = length(distinct(concat([output.source_availability_zone], output.replica_availability_zones))) == 2
    error_message = "nodes should span exactly the two subnets' AZs: source ${output.source_availability_zone}, replicas ${jsonencode(output.replica_availability_zones)}"
  }

  assert {
    condition     = output.replica_availability_zones[0] != output.source_availability_zone
    error_message = "the first replica should be outside the source's AZ (${output.source_availability_zone})"
  }

  assert {
    condition     = output.replica_availability_zones[0] == output.replica_availability_zones[2] && output.replica_availability_zones[1] == output.source_availability_zone
    error_message = "replicas are not round-robin over the subnets: ${jsonencode(output.replica_availability_zones)}"
  }

  assert {
    condition     = length(output.segment_ids) == 4 && alltrue([for id in values(output.segment_ids) : startswith(id, "vol-")])
    error_message = "want 4 storage segments (vol-...), one per node, got ${jsonencode(output.segment_ids)}"
  }

  assert {
    condition     = output.segment_ids[output.source_node_id] == output.source_segment_id
    error_message = "segment_ids does not map the source node to its segment"
  }

  assert {
    condition = alltrue([
      for i in range(3) : strata_storage_segment.replica[i].availability_zone == strata_replica.this[i].availability_zone
    ])
    error_message = "a replica's segment is not in the replica's AZ"
  }

  assert {
    condition     = strata_storage_segment.source.current_size_gib == 20 && strata_storage_segment.source.max_size_gib == 80
    error_message = "source segment: size ${strata_storage_segment.source.current_size_gib} GiB, max ${strata_storage_segment.source.max_size_gib} GiB; want 20 and 4 x 20"
  }

  assert {
    condition     = startswith(output.security_group_id, "sg-")
    error_message = "security_group_id ${output.security_group_id} is not a security group id"
  }
}

run "scale_in_to_one_replica_keeps_the_first" {
  # Earlier runs' outputs reach assertions through variables (tofu evaluates run.* there).
  variables {
    replica_count     = 1
    earlier_replica_0 = run.three_replicas_over_two_azs.replica_node_ids[0]
    earlier_source    = run.three_replicas_over_two_azs.source_node_id
  }

  assert {
    condition     = length(output.replica_node_ids) == 1 && length(output.segment_ids) == 2
    error_message = "want 1 replica and 2 segments, got ${jsonencode(output.replica_node_ids)} and ${jsonencode(output.segment_ids)}"
  }

  assert {
    condition     = output.replica_node_ids[0] == var.earlier_replica_0
    error_message = "scaling in replaced replica 0"
  }

  assert {
    condition     = output.source_node_id == var.earlier_source
    error_message = "scaling in replaced the source"
  }
}
