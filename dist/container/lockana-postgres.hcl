# Lockana on PostgreSQL in a container (docker-compose.postgres.yml mounts this file at
# /etc/lockana/lockana.hcl). The connection URL, password included, comes from the
# environment variable LOCKANA_PG_URL.
storage "postgresql" {
  connection_url_env = "LOCKANA_PG_URL"
  table              = "lockana_kv"
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true
}

log_level = "info"
