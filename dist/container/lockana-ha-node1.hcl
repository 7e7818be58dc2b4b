# Node 1 of the three-node HA cluster in docker-compose.postgres.yml (mounted at
# /etc/lockana/lockana.hcl). The nodes differ only in api_addr and cluster_addr.
storage "postgresql" {
  connection_url_env = "LOCKANA_PG_URL"
  table              = "lockana_kv"
  ha_enabled         = "true"
  ha_table           = "vault_ha_locks"
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true
}

api_addr     = "http://lockana1:8200"
cluster_addr = "https://lockana1:8201"

log_level = "info"
