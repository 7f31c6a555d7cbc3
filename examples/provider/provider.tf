terraform {
  required_providers {
    strata = {
      source = "strata/strata"
    }
  }
}

# Credentials come from the usual AWS chain (environment, shared config/credentials files,
# profile, SSO, instance role). One provider block serves every region: strata_region reaches
# its own region by itself.
provider "strata" {
  region = "us-east-1"

  default_tags {
    tags = {
      team = "payments"
    }
  }
}

# Against LocalStack instead of AWS:
provider "strata" {
  alias      = "localstack"
  region     = "us-east-1"
  access_key = "test"
  secret_key = "test"

  # LocalStack's instances never boot: do not wait for nodes to report ready.
  node_ready_timeout = "0s"

  endpoints {
    ec2     = "http://127.0.0.1:4566"
    ebs     = "http://127.0.0.1:4566"
    iam     = "http://127.0.0.1:4566"
    ssm     = "http://127.0.0.1:4566"
    sts     = "http://127.0.0.1:4566"
    s3      = "http://127.0.0.1:4566"
    route53 = "http://127.0.0.1:4566"
  }
}

# Assuming a role in another account:
provider "strata" {
  alias  = "prod"
  region = "eu-west-1"

  assume_role {
    role_arn     = "arn:aws:iam::123456789012:role/strata-deployer"
    session_name = "strata"
  }
}
