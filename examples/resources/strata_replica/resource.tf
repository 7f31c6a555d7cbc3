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

# A read replica in another AZ; instance_type defaults to the cluster's.
resource "strata_replica" "orders_b" {
  cluster_id    = strata_cluster.orders.id
  subnet_id     = var.subnet_b
  instance_type = "r7i.large"
}

output "orders_b_read_endpoint" {
  value = "${strata_replica.orders_b.private_ip}:${strata_cluster.orders.port}"
}
