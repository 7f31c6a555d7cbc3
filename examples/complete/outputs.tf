output "cluster_id" {
  description = "The cluster's id (its name)."
  value       = strata_cluster.main.id
}

output "writer_endpoint" {
  description = "Where clients write (\"ip:3306\")."
  value       = strata_cluster.main.writer_endpoint
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
