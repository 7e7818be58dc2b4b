# Lockana server configuration: the embedded default, one redb file under ./data.
# Start:  cargo run --release -p lockana-server -- server --config lockana.hcl
# Then:   lockana operator init   (once)   and   lockana operator unseal   (after every start)

storage "redb" {
  path = "./data/lockana.redb"
}

listener "tcp" {
  address = "127.0.0.1:8200"
  # Plain HTTP on loopback only. For anything reachable from other machines, set
  # tls_cert_file and tls_key_file instead.
  tls_disable = true
  # Requests per second per client address (429 above it), checked before anything
  # is read; loopback clients are exempt unless rate_limit_exempt_loopback = false.
  # rate_limit_per_second = 2000
  # rate_limit_burst      = 4000
}

# Unseal at start from key shares in a file or an environment variable (one share
# per line, or comma-separated). Convenient for small teams; whoever can read the
# file can unseal the vault.
# auto_unseal {
#   key_file = "/etc/lockana/unseal.keys"
# }

# Audit devices (as OpenBao declares them). Every request and response is written as
# one JSON line, values HMAC'd, hash-chained (`lockana audit verify FILE`). If no
# device can write, requests fail with 500 (fail-closed). SIGHUP reopens the file.
# audit "file" "file" {
#   options {
#     file_path = "./data/audit.log"     # or "stdout"
#     # log_raw = "false"  hmac_accessor = "true"  mode = "0600"  fsync = "false"
#   }
# }
# Allow `sys/audit/<path>` to enable devices through the API (off: a file device
# lets an API user write any file the server can).
# unsafe_allow_api_audit_creation = false

# Notifications (Lockana-only): channels, and routes picking which events go where.
# notify "telegram" "ops" {
#   bot_token_env = "LOCKANA_TELEGRAM_TOKEN"   # or bot_token = "..."
#   chat_id       = "-1001234567890"
# }
# notify "webhook" "siem" {
#   url        = "https://siem.example.com/lockana"
#   secret_env = "LOCKANA_WEBHOOK_SECRET"     # signs each body: X-Lockana-Signature
# }
# notify_route "billing" {
#   events   = ["project_login_failed", "project_locked_out", "project_env_fetched"]
#   projects = ["billing"]
#   channels = ["ops"]
# }
# notify_route "lifecycle" {
#   events   = ["sealed", "unsealed", "root_token_used"]
#   channels = ["ops", "siem"]
# }
