# The container image's default config (/etc/lockana/lockana.hcl). Mount your own over
# it: `-v ./lockana.hcl:/etc/lockana/lockana.hcl:ro`.
#
# Plain HTTP inside the container: put TLS in front (a proxy), or mount a certificate
# and key and replace `tls_disable` with tls_cert_file / tls_key_file.
storage "redb" {
  path = "/var/lib/lockana/lockana.redb"
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true
}

log_level = "info"
