variable "subnet_id" {
  type = string
}

variable "eu_subnet_id" {
  description = "A subnet in eu-west-1."
  type        = string
}

resource "strata_cluster" "orders" {
  name          = "orders"
  instance_type = "r7i.large"
  subnet_id     = var.subnet_id
}

# A read-only copy of the cluster in eu-west-1: two replicas replicating asynchronously from the
# home source. The same provider block serves both regions.
resource "strata_region" "orders_eu" {
  cluster_id    = strata_cluster.orders.id
  region        = "eu-west-1"
  subnet_id     = var.eu_subnet_id
  replica_count = 2
}

output "orders_eu_replica_ips" {
  value = strata_region.orders_eu.replica_private_ips
}
