# A storage segment is imported by its EBS volume id.
tofu import strata_storage_segment.orders_source vol-0123456789abcdef0
