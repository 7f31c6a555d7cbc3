# A home replicated-cluster plus read-only regions, each with its own replicas replicating
# asynchronously from the home cluster. One provider configuration is enough: strata_region
# takes the region as an attribute and the provider builds that region's client itself.

module "home" {
  source = "../replicated-cluster"

  name                             = var.name
  engine                           = var.engine
  engine_version                   = var.engine_version
  instance_type                    = var.instance_type
  replica_instance_type            = var.replica_instance_type
  subnet_ids                       = var.subnet_ids
  replica_count                    = var.replica_count
  replication_mode                 = var.replication_mode
  semi_sync_wait_for_replica_count = var.semi_sync_wait_for_replica_count
  allowed_cidr_blocks              = var.allowed_cidr_blocks
  allowed_security_group_ids       = var.allowed_security_group_ids
  storage_size_gib                 = var.storage_size_gib
  storage_max_size_gib             = var.storage_max_size_gib
  storage_grow_at_percent          = var.storage_grow_at_percent
  storage_grow_by_percent          = var.storage_grow_by_percent
  storage_volume_type              = var.storage_volume_type
  storage_kms_key_id               = var.storage_kms_key_id
  tags                             = var.tags
}

resource "strata_region" "this" {
  for_each = var.regions

  cluster_id    = module.home.cluster_id
  region        = each.key
  subnet_id     = each.value.subnet_id
  replica_count = each.value.replica_count
  instance_type = each.value.instance_type
  tags          = length(var.tags) > 0 ? var.tags : null
}
