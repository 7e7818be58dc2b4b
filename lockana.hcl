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
}

# Unseal at start from key shares in a file or an environment variable (one share
# per line, or comma-separated). Convenient for small teams; whoever can read the
# file can unseal the vault.
# auto_unseal {
#   key_file = "/etc/lockana/unseal.keys"
# }
