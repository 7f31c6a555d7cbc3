# A read-only region is imported as <cluster name>/<region>.
tofu import strata_region.orders_eu orders/eu-west-1
