variable "subnet_id" {
  type = string
}

# A MariaDB source node; replicas (strata_replica) and read-only regions (strata_region) join it.
resource "strata_cluster" "orders" {
  name           = "orders"
  engine         = "mariadb"
  engine_version = "10.11"
  instance_type  = "r7i.large"
  subnet_id      = var.subnet_id

  # A commit waits for one replica's ack (falls back to async after 10 s without one).
  replication_mode                 = "semi_sync"
  semi_sync_wait_for_replica_count = 1
  semi_sync_timeout_ms             = 10000

  allowed_cidr_blocks = ["10.0.0.0/16"]

  tags = {
    service = "orders"
  }

  # A validated backup cycle every 24 hours from 03:00 UTC, run by the cluster's backup node
  # (backup_node_id); the newest 7 validated backups are kept at backup_location
  # (docs/backups.md), and they stay there when the cluster is destroyed unless
  # delete_backups_on_destroy = true. A new cluster is made from one of them, even after this
  # cluster is gone, with
  #   restore_from {
  #     cluster   = "orders"
  #     backup_id = "20261130T031405123Z"
  #   }
  backup_policy {
    interval_hours            = 24
    keep                      = 7
    window_start              = "03:00"
    delete_backups_on_destroy = false
  }

  timeouts {
    create = "20m"
  }
}

# "writer.orders.strata.internal:3306": follows the source through failovers.
output "orders_writer_endpoint" {
  value = strata_cluster.orders.writer_endpoint
}

# "reader.orders.strata.internal:3306": the healthy replicas.
output "orders_reader_endpoint" {
  value = strata_cluster.orders.reader_endpoint
}
