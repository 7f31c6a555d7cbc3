# A cluster in us-east-1 (source + 2 replicas) with a read-only copy in eu-west-1 (2 replicas).
# One provider block: strata_region reaches eu-west-1 by itself.

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
  description = "Two subnets in different availability zones of us-east-1."
  type        = list(string)
}

variable "eu_subnet_id" {
  description = "A subnet in eu-west-1."
  type        = string
}

module "orders" {
  source = "../.."

  name          = "orders"
  instance_type = "r7i.large"
  subnet_ids    = var.subnet_ids
  replica_count = 2

  regions = {
    "eu-west-1" = {
      subnet_id     = var.eu_subnet_id
      replica_count = 2
    }
  }
}

output "writer_endpoint" {
  value = module.orders.writer_endpoint
}

output "regions" {
  value = module.orders.regions
}
