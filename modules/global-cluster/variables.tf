variable "name" {
  description = "Cluster name: 1-40 lowercase letters, digits and hyphens. It is the cluster's id and prefixes every AWS object's tags."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,40}$", var.name))
    error_message = "name must be 1-40 characters of lowercase letters, digits and hyphens."
  }
}

variable "engine" {
  description = "Database engine: \"mariadb\" or \"mysql\"."
  type        = string
  default     = "mariadb"

  validation {
    condition     = contains(["mariadb", "mysql"], var.engine)
    error_message = "engine must be \"mariadb\" or \"mysql\"."
  }
}

variable "engine_version" {
  description = "Engine version; null picks the provider's default (10.11 for mariadb, 8.4 for mysql)."
  type        = string
  default     = null

  validation {
    condition     = var.engine_version == null || can(regex("^[0-9]+\\.[0-9]+(\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must look like 10.11 or 8.4.33."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the source node (and of the replicas unless replica_instance_type is set)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an EC2 instance type such as r7i.large."
  }
}

variable "replica_instance_type" {
  description = "EC2 instance type of the replicas; null uses the cluster's instance_type."
  type        = string
  default     = null

  validation {
    condition     = var.replica_instance_type == null || can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.replica_instance_type))
    error_message = "replica_instance_type must be an EC2 instance type such as r7i.large."
  }
}

variable "subnet_ids" {
  description = "Subnets to spread the nodes over, one per availability zone. The source runs in subnet_ids[0]; replica i runs in subnet_ids[(i + 1) % length], so the first replica lands outside the source's AZ."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must hold at least one subnet id (subnet-...)."
  }
}

variable "replica_count" {
  description = "Number of read replicas in the home region (0-15)."
  type        = number
  default     = 2

  validation {
    condition     = var.replica_count >= 0 && var.replica_count <= 15 && floor(var.replica_count) == var.replica_count
    error_message = "replica_count must be a whole number from 0 to 15."
  }
}

variable "replication_mode" {
  description = "\"async\" or \"semi_sync\" (a commit waits for semi_sync_wait_for_replica_count replica acks)."
  type        = string
  default     = "async"

  validation {
    condition     = contains(["async", "semi_sync"], var.replication_mode)
    error_message = "replication_mode must be \"async\" or \"semi_sync\"."
  }
}

variable "semi_sync_wait_for_replica_count" {
  description = "In semi_sync mode, how many replicas must acknowledge a commit."
  type        = number
  default     = 1

  validation {
    condition     = var.semi_sync_wait_for_replica_count >= 1 && floor(var.semi_sync_wait_for_replica_count) == var.semi_sync_wait_for_replica_count
    error_message = "semi_sync_wait_for_replica_count must be a whole number of at least 1."
  }
}

variable "allowed_cidr_blocks" {
  description = "Client CIDR blocks allowed on the engine port (cluster members are always allowed)."
  type        = set(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.allowed_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "allowed_cidr_blocks must be CIDR blocks such as 10.0.0.0/16."
  }
}

variable "allowed_security_group_ids" {
  description = "Security groups whose members may connect on the engine port."
  type        = set(string)
  default     = []

  validation {
    condition     = alltrue([for g in var.allowed_security_group_ids : can(regex("^sg-[0-9a-f]+$", g))])
    error_message = "allowed_security_group_ids must be security group ids (sg-...)."
  }
}

variable "storage_size_gib" {
  description = "Initial size of each node's storage segment, in GiB."
  type        = number
  default     = 100

  validation {
    condition     = var.storage_size_gib >= 1 && var.storage_size_gib <= 16384 && floor(var.storage_size_gib) == var.storage_size_gib
    error_message = "storage_size_gib must be a whole number from 1 to 16384."
  }
}

variable "storage_max_size_gib" {
  description = "Size the agent may grow each segment to, in GiB; null means 4 x storage_size_gib (at most 16384)."
  type        = number
  default     = null

  validation {
    condition     = var.storage_max_size_gib == null || (var.storage_max_size_gib >= 1 && var.storage_max_size_gib <= 16384)
    error_message = "storage_max_size_gib must be from 1 to 16384 (and at least storage_size_gib)."
  }
}

variable "storage_grow_at_percent" {
  description = "The agent grows a segment when its file system is this full (50-95)."
  type        = number
  default     = 80

  validation {
    condition     = var.storage_grow_at_percent >= 50 && var.storage_grow_at_percent <= 95
    error_message = "storage_grow_at_percent must be from 50 to 95."
  }
}

variable "storage_grow_by_percent" {
  description = "How much a growth step adds, in percent of the current size (5-100)."
  type        = number
  default     = 20

  validation {
    condition     = var.storage_grow_by_percent >= 5 && var.storage_grow_by_percent <= 100
    error_message = "storage_grow_by_percent must be from 5 to 100."
  }
}

variable "storage_volume_type" {
  description = "EBS volume type of the segments: gp3, gp2 or io2."
  type        = string
  default     = "gp3"

  validation {
    condition     = contains(["gp3", "gp2", "io2"], var.storage_volume_type)
    error_message = "storage_volume_type must be gp3, gp2 or io2."
  }
}

variable "storage_kms_key_id" {
  description = "KMS key for the segments' encryption; null uses the account's default EBS key."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every object the module creates (merged with the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "regions" {
  description = "Read-only regions, keyed by AWS region name. Each gets replica_count replicas (1-15) in subnet_id (a subnet of that region), replicating asynchronously from the home cluster; instance_type defaults to the cluster's."
  type = map(object({
    subnet_id     = string
    replica_count = number
    instance_type = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for r in keys(var.regions) : can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", r))])
    error_message = "regions keys must be AWS region names such as eu-west-1."
  }

  validation {
    condition     = alltrue([for r in values(var.regions) : can(regex("^subnet-[0-9a-f]+$", r.subnet_id))])
    error_message = "each region's subnet_id must be a subnet id (subnet-...)."
  }

  validation {
    condition     = alltrue([for r in values(var.regions) : r.replica_count >= 1 && r.replica_count <= 15 && floor(r.replica_count) == r.replica_count])
    error_message = "each region's replica_count must be a whole number from 1 to 15."
  }
}
