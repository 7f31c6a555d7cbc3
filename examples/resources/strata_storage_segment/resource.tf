variable "subnet_id" {
  type = string
}

resource "strata_cluster" "orders" {
  name          = "orders"
  instance_type = "r7i.large"
  subnet_id     = var.subnet_id
}

# The source's data volume: starts at 100 GiB; the node agent grows it by 20% (at least 10 GiB)
# whenever it is 80% full, up to 2000 GiB. A size the agent grew is not drift.
resource "strata_storage_segment" "orders_source" {
  node_id           = strata_cluster.orders.source_node_id
  size_gib          = 100
  max_size_gib      = 2000
  grow_at_percent   = 80
  grow_by_percent   = 20
  min_grow_step_gib = 10
  volume_type       = "gp3"
  encrypted         = true
}

output "orders_source_size_gib" {
  value = strata_storage_segment.orders_source.current_size_gib
}
