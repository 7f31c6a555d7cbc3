# A Strata cluster with one source, replica_count read replicas spread round-robin over the given
# subnets (one per AZ), and a storage segment on every node.

locals {
  # Replica i goes to subnet (i + 1) mod n: the first replica never shares the source's AZ when
  # there is more than one subnet.
  replica_subnet_ids = [
    for i in range(var.replica_count) : var.subnet_ids[(i + 1) % length(var.subnet_ids)]
  ]

  # Empty collections go to the provider as null (unset), so an empty default never reads back
  # as a difference between [] and null.
  allowed_cidr_blocks        = length(var.allowed_cidr_blocks) > 0 ? var.allowed_cidr_blocks : null
  allowed_security_group_ids = length(var.allowed_security_group_ids) > 0 ? var.allowed_security_group_ids : null
  tags                       = length(var.tags) > 0 ? var.tags : null
}

resource "strata_cluster" "this" {
  name                             = var.name
  engine                           = var.engine
  engine_version                   = var.engine_version
  instance_type                    = var.instance_type
  subnet_id                        = var.subnet_ids[0]
  replication_mode                 = var.replication_mode
  semi_sync_wait_for_replica_count = var.semi_sync_wait_for_replica_count
  allowed_cidr_blocks              = local.allowed_cidr_blocks
  allowed_security_group_ids       = local.allowed_security_group_ids
  tags                             = local.tags
}

resource "strata_storage_segment" "source" {
  node_id         = strata_cluster.this.source_node_id
  size_gib        = var.storage_size_gib
  max_size_gib    = var.storage_max_size_gib
  grow_at_percent = var.storage_grow_at_percent
  grow_by_percent = var.storage_grow_by_percent
  volume_type     = var.storage_volume_type
  kms_key_id      = var.storage_kms_key_id
  tags            = local.tags
}

resource "strata_replica" "this" {
  count = var.replica_count

  cluster_id    = strata_cluster.this.id
  subnet_id     = local.replica_subnet_ids[count.index]
  instance_type = var.replica_instance_type
  tags          = local.tags
}

resource "strata_storage_segment" "replica" {
  count = var.replica_count

  node_id         = strata_replica.this[count.index].node_id
  size_gib        = var.storage_size_gib
  max_size_gib    = var.storage_max_size_gib
  grow_at_percent = var.storage_grow_at_percent
  grow_by_percent = var.storage_grow_by_percent
  volume_type     = var.storage_volume_type
  kms_key_id      = var.storage_kms_key_id
  tags            = local.tags
}
