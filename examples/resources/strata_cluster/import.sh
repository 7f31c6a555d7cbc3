# A cluster is imported by its name.
tofu import strata_cluster.orders orders
