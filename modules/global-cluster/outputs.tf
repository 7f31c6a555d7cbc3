output "cluster_id" {
  description = "The cluster's id (its name)."
  value       = module.home.cluster_id
}

output "writer_endpoint" {
  description = "Where clients write: \"writer.<name>.<dns_domain>:port\", a private DNS name that follows the home source through failovers (resolvable in the cluster's VPCs)."
  value       = module.home.writer_endpoint
}

output "reader_endpoint" {
  description = "Where clients read: \"reader.<name>.<dns_domain>:port\", one address per healthy home replica."
  value       = module.home.reader_endpoint
}

output "admin_user" {
  description = "The database account clients log in with at writer_endpoint."
  value       = module.home.admin_user
}

output "admin_parameter_name" {
  description = "SSM SecureString parameter holding admin_user's password (never in Terraform state)."
  value       = module.home.admin_parameter_name
}

output "source_node_id" {
  description = "Instance id of the home source node."
  value       = module.home.source_node_id
}

output "source_availability_zone" {
  description = "Availability zone of the home source node."
  value       = module.home.source_availability_zone
}

output "replica_node_ids" {
  description = "Instance ids of the home region's replicas."
  value       = module.home.replica_node_ids
}

output "replica_availability_zones" {
  description = "Availability zone of each home replica, in the order of replica_node_ids."
  value       = module.home.replica_availability_zones
}

output "segment_ids" {
  description = "Storage segment id of every home node, by node id."
  value       = module.home.segment_ids
}

output "security_group_id" {
  description = "Security group of the home nodes."
  value       = module.home.security_group_id
}

output "regions" {
  description = "Each read-only region, by region name: its strata_region id, security group, reader endpoint, replica node ids and private IPs."
  value = {
    for name, r in strata_region.this : name => {
      id                  = r.id
      security_group_id   = r.security_group_id
      reader_endpoint     = r.reader_endpoint
      replica_node_ids    = r.replica_node_ids
      replica_private_ips = r.replica_private_ips
    }
  }
}
