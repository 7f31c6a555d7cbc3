# A replica is imported by its instance id.
tofu import strata_replica.orders_b i-0123456789abcdef0
