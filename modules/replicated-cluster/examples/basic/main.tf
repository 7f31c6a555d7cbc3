# A MariaDB cluster with a source and two replicas over two AZs, semi-sync replication.
# Subnets: any two subnets in different AZs of the provider's region.

terraform {
  required_providers {
    strata = {
      source = "strata/strata"
    }
  }
}

provider "strata" {
  region = "us-east-1"
}

variable "subnet_ids" {
  description = "Two subnets in different availability zones."
  type        = list(string)
}

module "orders" {
  source = "../.."

  name                             = "orders"
  instance_type                    = "r7i.large"
  subnet_ids                       = var.subnet_ids
  replica_count                    = 2
  replication_mode                 = "semi_sync"
  semi_sync_wait_for_replica_count = 1
  storage_size_gib                 = 100
  allowed_cidr_blocks              = ["10.0.0.0/16"]
}

output "writer_endpoint" {
  value = module.orders.writer_endpoint
}

output "replica_availability_zones" {
  value = module.orders.replica_availability_zones
}
