variable "subnet_a" {
  type = string
}

variable "subnet_b" {
  type = string
}

resource "strata_cluster" "orders" {
  name          = "orders"
  instance_type = "r7i.large"
  subnet_id     = var.subnet_a
}

# A read replica in another AZ. Without instance_type it follows the cluster's: a change of
# strata_cluster.orders.instance_type rolls it too. Set instance_type to pin another type.
resource "strata_replica" "orders_b" {
  cluster_id = strata_cluster.orders.id
  subnet_id  = var.subnet_b
}

output "orders_b_read_endpoint" {
  value = "${strata_replica.orders_b.private_ip}:${strata_cluster.orders.port}"
}
