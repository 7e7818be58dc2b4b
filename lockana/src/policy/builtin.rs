//! Policies every vault has: Vault's `default`, and Lockana's role presets.

/// Vault's `default` policy: what every token may do about itself.
pub(crate) const DEFAULT: &str = r#"# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own entity by id or name
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up response-wrapping properties
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Allow a token to make requests to the Authorization Endpoint for OIDC providers.
path "sys/internal/ui/mounts" {
    capabilities = ["read"]
}
path "sys/internal/ui/mounts/*" {
    capabilities = ["read"]
}

# Allow checking the status of a Control Group request if the user has the accessor
path "sys/control-group/request" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to validate login MFA
path "sys/mfa/validate" {
    capabilities = ["update"]
}
"#;

/// `lockana-admin`: everything except what only root may do (sealing, audit devices,
/// and the other `sudo` paths).
pub(crate) const LOCKANA_ADMIN: &str = r#"path "*" {
    capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
"#;

/// `lockana-manager`: manage secrets, projects and users below admin.
pub(crate) const LOCKANA_MANAGER: &str = r#"path "+/data/*" {
    capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
path "+/metadata/*" {
    capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
path "+/delete/*" {
    capabilities = ["update"]
}
path "+/undelete/*" {
    capabilities = ["update"]
}
path "+/destroy/*" {
    capabilities = ["update"]
}
path "+/subkeys/*" {
    capabilities = ["read"]
}
path "lockana/projects" {
    capabilities = ["list"]
}
path "lockana/projects/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}
path "auth/userpass/users" {
    capabilities = ["list"]
}
path "auth/userpass/users/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}
path "sys/mounts" {
    capabilities = ["read"]
}
"#;

/// `lockana-reader`: read and list secrets.
pub(crate) const LOCKANA_READER: &str = r#"path "+/data/*" {
    capabilities = ["read"]
}
path "+/metadata/*" {
    capabilities = ["read", "list"]
}
path "+/subkeys/*" {
    capabilities = ["read"]
}
path "lockana/projects" {
    capabilities = ["list"]
}
path "lockana/projects/*" {
    capabilities = ["read", "list"]
}
"#;

/// Built-ins created when missing, by name.
pub(crate) const ALL: [(&str, &str); 4] = [
    ("default", DEFAULT),
    ("lockana-admin", LOCKANA_ADMIN),
    ("lockana-manager", LOCKANA_MANAGER),
    ("lockana-reader", LOCKANA_READER),
];
