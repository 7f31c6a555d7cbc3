# The full Strata stack: a semi-sync MariaDB cluster whose source runs in the first AZ, one
# replica in each AZ, a storage segment on every node, and a read-only copy in another region.

provider "strata" {
  region = var.region

  # null: the provider's default (20m). "0s" for emulators whose instances never boot.
  node_ready_timeout = var.node_ready_timeout

  dynamic "endpoints" {
    for_each = var.aws_endpoint_url == null ? [] : [var.aws_endpoint_url]
    content {
      ec2     = endpoints.value
      ebs     = endpoints.value
      iam     = endpoints.value
      ssm     = endpoints.value
      sts     = endpoints.value
      s3      = endpoints.value
      route53 = endpoints.value
    }
  }

  default_tags {
    tags = {
      stack = var.name
    }
  }
}

resource "strata_cluster" "main" {
  name                             = var.name
  engine                           = "mariadb"
  instance_type                    = var.instance_type
  subnet_id                        = var.subnet_ids[0]
  replication_mode                 = "semi_sync"
  semi_sync_wait_for_replica_count = 1
  allowed_cidr_blocks              = ["10.0.0.0/8"]
}

resource "strata_storage_segment" "source" {
  node_id         = strata_cluster.main.source_node_id
  size_gib        = var.storage_size_gib
  grow_at_percent = 80
}

resource "strata_replica" "az" {
  count = length(var.subnet_ids)

  cluster_id = strata_cluster.main.id
  subnet_id  = var.subnet_ids[count.index]
}

resource "strata_storage_segment" "replica" {
  count = length(var.subnet_ids)

  node_id         = strata_replica.az[count.index].node_id
  size_gib        = var.storage_size_gib
  grow_at_percent = 80
}

resource "strata_region" "read_only" {
  cluster_id    = strata_cluster.main.id
  region        = var.read_only_region
  subnet_id     = var.eu_subnet_id
  replica_count = var.read_only_replica_count
}

locals {
  replica_azs = strata_replica.az[*].availability_zone

  replicas_per_az = {
    for az in distinct(local.replica_azs) : az => length([for a in local.replica_azs : a if a == az])
  }

  storage = merge(
    {
      (strata_cluster.main.source_node_id) = {
        segment_id   = strata_storage_segment.source.id
        size_gib     = strata_storage_segment.source.current_size_gib
        max_size_gib = strata_storage_segment.source.max_size_gib
      }
    },
    {
      for i, r in strata_replica.az : r.node_id => {
        segment_id   = strata_storage_segment.replica[i].id
        size_gib     = strata_storage_segment.replica[i].current_size_gib
        max_size_gib = strata_storage_segment.replica[i].max_size_gib
      }
    },
  )

  summary = join("\n", concat(
    [
      "cluster  ${strata_cluster.main.id}: ${strata_cluster.main.engine} ${strata_cluster.main.engine_version}, ${strata_cluster.main.replication_mode} replication",
      "writer   ${strata_cluster.main.writer_endpoint}",
      "source   ${strata_cluster.main.source_node_id} in ${strata_cluster.main.availability_zone}, storage ${strata_storage_segment.source.current_size_gib}/${strata_storage_segment.source.max_size_gib} GiB",
    ],
    [
      for i, r in strata_replica.az :
      "replica  ${r.node_id} in ${r.availability_zone} (${r.private_ip}), storage ${strata_storage_segment.replica[i].current_size_gib}/${strata_storage_segment.replica[i].max_size_gib} GiB"
    ],
    [
      "per AZ   ${join(", ", [for az, n in local.replicas_per_az : "${az}: ${n} replica(s)"])}",
      "region   ${strata_region.read_only.region} (read-only): ${length(strata_region.read_only.replica_node_ids)} replica(s) ${join(", ", strata_region.read_only.replica_node_ids)}",
    ],
  ))
}
