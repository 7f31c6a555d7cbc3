terraform {
  required_providers {
    strata = {
      source = "strata/strata"
    }
  }
}
