# Every node of a cluster, wherever it was applied from.
data "strata_nodes" "orders" {
  cluster_id = "orders"
}

output "orders_nodes" {
  value = {
    for n in data.strata_nodes.orders.nodes : n.node_id => {
      role       = n.role
      where      = "${n.region}/${n.availability_zone}"
      private_ip = n.private_ip
      ready      = n.node_state == "ready"
      storage    = "${sum(concat([0], n.segment_sizes_gib))} GiB in ${length(n.segment_ids)} segment(s)"
    }
  }
}

# Read replicas only, e.g. for a read-only connection pool.
output "orders_replica_ips" {
  value = [for n in data.strata_nodes.orders.nodes : n.private_ip if n.role != "source"]
}
