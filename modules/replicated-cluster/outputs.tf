output "cluster_id" {
  description = "The cluster's id (its name); what strata_replica and strata_region take as cluster_id."
  value       = strata_cluster.this.id
}

output "writer_endpoint" {
  description = "Where clients write: \"writer.<name>.<dns_domain>:port\", a private DNS name that follows the source through failovers (resolvable in the cluster's VPCs)."
  value       = strata_cluster.this.writer_endpoint
}

output "reader_endpoint" {
  description = "Where clients read: \"reader.<name>.<dns_domain>:port\", one address per healthy home replica."
  value       = strata_cluster.this.reader_endpoint
}

output "admin_user" {
  description = "The database account clients log in with at writer_endpoint."
  value       = strata_cluster.this.admin_user
}

output "admin_parameter_name" {
  description = "SSM SecureString parameter holding admin_user's password (never in Terraform state)."
  value       = strata_cluster.this.admin_parameter_name
}

output "port" {
  description = "The engine port."
  value       = strata_cluster.this.port
}

output "source_node_id" {
  description = "Instance id of the source node."
  value       = strata_cluster.this.source_node_id
}

output "source_availability_zone" {
  description = "Availability zone of the source node."
  value       = strata_cluster.this.availability_zone
}

output "replica_node_ids" {
  description = "Instance ids of the replicas, in creation order."
  value       = strata_replica.this[*].node_id
}

output "replica_private_ips" {
  description = "Private IPs of the replicas, in the order of replica_node_ids (read endpoints on port)."
  value       = strata_replica.this[*].private_ip
}

output "replica_availability_zones" {
  description = "Availability zone of each replica, in the order of replica_node_ids."
  value       = strata_replica.this[*].availability_zone
}

output "source_segment_id" {
  description = "Storage segment (EBS volume) id of the source node."
  value       = strata_storage_segment.source.id
}

output "replica_segment_ids" {
  description = "Storage segment id of each replica, in the order of replica_node_ids."
  value       = strata_storage_segment.replica[*].id
}

output "segment_ids" {
  description = "Every storage segment id, by node id."
  value = merge(
    { (strata_cluster.this.source_node_id) = strata_storage_segment.source.id },
    zipmap(strata_replica.this[*].node_id, strata_storage_segment.replica[*].id),
  )
}

output "security_group_id" {
  description = "Security group of the cluster's nodes."
  value       = strata_cluster.this.security_group_id
}

output "vpc_id" {
  description = "VPC the cluster runs in."
  value       = strata_cluster.this.vpc_id
}

output "replication_parameter_name" {
  description = "SSM SecureString parameter holding the replication credentials."
  value       = strata_cluster.this.replication_parameter_name
}
