variable "name" {
  description = "Cluster name (1-40 lowercase letters, digits, hyphens)."
  type        = string
  default     = "strata-demo"

  validation {
    condition     = can(regex("^[a-z0-9-]{1,40}$", var.name))
    error_message = "name must be 1-40 characters of lowercase letters, digits and hyphens."
  }
}

variable "region" {
  description = "Home region: the source and its replicas."
  type        = string
  default     = "us-east-1"
}

variable "read_only_region" {
  description = "Region of the read-only copy."
  type        = string
  default     = "eu-west-1"
}

variable "aws_endpoint_url" {
  description = "One endpoint for every AWS service (LocalStack: http://127.0.0.1:4566); null talks to AWS."
  type        = string
  default     = null
}

variable "node_ready_timeout" {
  description = "How long an apply waits for each node to report ready (\"20m\"); null keeps the provider's default, \"0s\" does not wait (EC2 emulators whose instances never boot)."
  type        = string
  default     = null
}

variable "instance_type" {
  description = "EC2 instance type of every node. x86_64: the provider ships the agent for x86_64 only."
  type        = string
  default     = "r7i.large"
}

variable "subnet_ids" {
  description = "Subnets in two (or more) AZs of the home region. The source runs in the first; one replica runs in each. scripts/strata-up creates them in LocalStack and passes them in."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "give subnets in at least two availability zones."
  }
}

variable "eu_subnet_id" {
  description = "A subnet in read_only_region for the read-only replicas."
  type        = string
}

variable "read_only_replica_count" {
  description = "Replicas in the read-only region."
  type        = number
  default     = 2
}

variable "storage_size_gib" {
  description = "Initial size of each node's storage segment, in GiB."
  type        = number
  default     = 50
}
