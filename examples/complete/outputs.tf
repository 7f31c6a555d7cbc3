output "cluster_id" {
  description = "The cluster's id (its name)."
  value       = strata_cluster.main.id
}

output "writer_endpoint" {
  description = "Where clients write: \"writer.<name>.strata.internal:3306\", a private DNS name that follows the source through failovers."
  value       = strata_cluster.main.writer_endpoint
}

output "reader_endpoint" {
  description = "Where clients read: \"reader.<name>.strata.internal:3306\", the healthy home replicas."
  value       = strata_cluster.main.reader_endpoint
}

output "current_source_node_id" {
  description = "The node that is the source now (changes after a failover, without any plan)."
  value       = strata_cluster.main.current_source_node_id
}

output "admin_user" {
  description = "The database account clients log in with at writer_endpoint."
  value       = strata_cluster.main.admin_user
}

output "admin_parameter_name" {
  description = "SSM SecureString parameter holding admin_user's password (never in Terraform state)."
  value       = strata_cluster.main.admin_parameter_name
}

output "source" {
  description = "The source node."
  value = {
    node_id           = strata_cluster.main.source_node_id
    private_ip        = strata_cluster.main.source_private_ip
    availability_zone = strata_cluster.main.availability_zone
  }
}

output "replicas" {
  description = "The home region's replicas."
  value = [
    for r in strata_replica.az : {
      node_id           = r.node_id
      private_ip        = r.private_ip
      availability_zone = r.availability_zone
      server_id         = r.server_id
    }
  ]
}

output "replicas_per_az" {
  description = "Home replicas per availability zone."
  value       = local.replicas_per_az
}

output "read_only_region" {
  description = "The read-only region's replicas."
  value = {
    id                  = strata_region.read_only.id
    region              = strata_region.read_only.region
    reader_endpoint     = strata_region.read_only.reader_endpoint
    replica_node_ids    = strata_region.read_only.replica_node_ids
    replica_private_ips = strata_region.read_only.replica_private_ips
  }
}

output "storage" {
  description = "Each node's storage segment: id, current and maximum size in GiB."
  value       = local.storage
}

output "replication_parameter_name" {
  description = "SSM SecureString parameter holding the replication credentials."
  value       = strata_cluster.main.replication_parameter_name
}

output "topology" {
  description = "A short human-readable summary of the stack."
  value       = local.summary
}
