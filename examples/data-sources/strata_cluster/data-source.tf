# An application stack that uses a cluster another configuration (or team) manages.
data "strata_cluster" "orders" {
  name = "orders"
}

output "orders_connection" {
  value = {
    # Where the application writes, as whom, and where that account's password lives.
    writer_endpoint      = data.strata_cluster.orders.writer_endpoint
    admin_user           = data.strata_cluster.orders.admin_user
    admin_parameter_name = data.strata_cluster.orders.admin_parameter_name
    engine               = "${data.strata_cluster.orders.engine} ${data.strata_cluster.orders.engine_version}"
  }
}

# The security group and port to allow from the application's own security group rule.
output "orders_security_group_id" {
  value = data.strata_cluster.orders.security_group_id
}

output "orders_port" {
  value = data.strata_cluster.orders.port
}

output "orders_layout" {
  value = {
    source          = data.strata_cluster.orders.source_node_id
    replicas_per_az = data.strata_cluster.orders.replicas_per_az
    regions         = data.strata_cluster.orders.region_replica_counts
  }
}
