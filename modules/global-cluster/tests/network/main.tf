# A helper for the test runs: hands the eu-west-1 subnet the harness passes (-var-file) to the
# other runs as `run.network.eu_subnet_id`. Referencing `var.eu_subnet_id` in a run block
# directly makes `terraform test` warn ("Variable referenced without definition"), and the
# `variable` block terraform suggests instead is an error in `tofu test`; this works in both.

# The test file's provider "strata" block reaches this module too: name its source, or tofu
# looks for hashicorp/strata.
terraform {
  required_providers {
    strata = {
      source = "strata/strata"
    }
  }
}

variable "eu_subnet_id" {
  description = "A subnet in eu-west-1 (from the harness's -var-file)."
  type        = string
}

output "eu_subnet_id" {
  value = var.eu_subnet_id
}
