//! `path-help`: `GET /v1/<path>?help=1` (and the `HELP` method) answers with Vault's
//! help shape, `{"help": "...", "openapi": {...}, "see_also": null}`.
//!
//! The text and the OpenAPI document are generated from one description per backend
//! ([`BackendDoc`]): a list of path patterns, each with its operations, fields and
//! help. A mounted engine declares its own (`Backend::doc`); the built-in backends'
//! are looked up by name ([`backend_doc`]). The wording is Lockana's own, not OpenBao's.

use serde_json::{Map, Value, json};

use crate::vault::Core;
use crate::{Error, Operation, Response, Result};

/// One request field of a path.
pub(crate) struct FieldDoc {
    pub name: &'static str,
    /// Vault's type name (`string`, `int`, `bool`, `duration`, `map`, ...).
    pub kind: &'static str,
    pub description: &'static str,
}

/// One path of a backend. `pattern` segments are literal, `{name}` (one segment) or a
/// final `{name*}` (the rest of the path, possibly empty).
pub(crate) struct PathDoc {
    pub pattern: &'static str,
    /// Which request fields the path takes besides `fields`.
    pub input: Input,
    pub operations: &'static [Operation],
    pub synopsis: &'static str,
    pub description: &'static str,
    pub fields: &'static [FieldDoc],
}

/// What a path does with request fields it does not declare (Vault's
/// `TakesArbitraryInput`, plus a state Vault does not need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// `fields` (and the pattern's captures) are every field the path takes: any
    /// other gets Vault's "Endpoint ignored these unrecognized parameters" warning.
    Fields,
    /// Free-form data (KV v1, cubbyhole): any field is the caller's.
    Arbitrary,
    /// `fields` documents the main parameters but is not complete yet, so nothing is
    /// warned about rather than a field the path does take.
    Partial,
}

/// What a backend kind serves.
pub(crate) struct BackendDoc {
    pub description: &'static str,
    pub paths: &'static [PathDoc],
}

/// Answers a help request for `path` (below `/v1/`): the backend's overview at a mount's
/// root, else the help of the first path pattern that matches. Paths no backend serves
/// are 404, as in Vault.
pub(crate) fn answer(core: &Core, path: &str) -> Result<Response> {
    let no_route = || Error::NoRoute(path.to_owned());
    let (doc, rel) = backend_of(core, path).ok_or_else(no_route)?;
    let rel = rel.trim_start_matches('/');
    let (help, paths) = if rel.is_empty() {
        (backend_help(doc), doc.paths.iter().collect::<Vec<_>>())
    } else {
        let p = path_of(doc, rel).ok_or_else(no_route)?;
        (path_help(p, rel), vec![p])
    };
    let mut body = Map::new();
    body.insert("help".into(), Value::String(help));
    body.insert("openapi".into(), openapi(&paths));
    body.insert("see_also".into(), Value::Null);
    Ok(Response::raw(body))
}

/// The description of the backend serving `path`, and the path below its mount.
fn backend_of(core: &Core, path: &str) -> Option<(&'static BackendDoc, String)> {
    let builtin = |kind: &str, rel: &str| Some((backend_doc(kind)?, rel.to_owned()));
    if let Some(rest) = path.strip_prefix("sys/").or((path == "sys").then_some("")) {
        return builtin("system", rest);
    }
    if let Some(rel) = path
        .strip_prefix("auth/token/")
        .or((path == "auth/token").then_some(""))
    {
        return builtin("token", rel);
    }
    if let Some(rest) = path.strip_prefix("identity/") {
        return builtin("identity", rest);
    }
    if let Some(rest) = path.strip_prefix("lockana/") {
        return builtin("lockana", rest);
    }
    core.with_mount(path, |m, rel| (m.backend().doc(), rel.to_owned()))
}

/// Whether `rel` matches `pattern` (see [`PathDoc`]). A rest capture may be followed by
/// literal segments (`mounts/{path*}/tune`): it then takes at least one segment.
fn matches(pattern: &str, rel: &str) -> bool {
    let rel = rel.strip_suffix('/').unwrap_or(rel);
    let want: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let got: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    for (i, w) in want.iter().enumerate() {
        if w.starts_with('{') && w.ends_with("*}") {
            let tail = &want[i + 1..];
            return tail.is_empty()
                || (got.len() > i + tail.len() && got[got.len() - tail.len()..] == *tail);
        }
        match got.get(i) {
            Some(_) if w.starts_with('{') => {}
            Some(g) if g == w => {}
            _ => return false,
        }
    }
    got.len() == want.len()
}

/// The path of `doc` that serves `rel`: the first whose pattern matches, as the
/// engines route.
fn path_of<'d>(doc: &'d BackendDoc, rel: &str) -> Option<&'d PathDoc> {
    let rel = rel.trim_start_matches('/');
    doc.paths.iter().find(|p| matches(p.pattern, rel))
}

/// Whether some backend has a route for `path` (a HEAD there is 405, elsewhere 404).
pub(crate) fn routes(core: &Core, path: &str) -> bool {
    backend_of(core, path).is_some_and(|(doc, rel)| path_of(doc, &rel).is_some())
}

/// Vault's warning for request fields the path serving `path` does not take, when
/// its field list is complete: `Endpoint ignored these unrecognized parameters: [a b]`
/// (sorted, as Go prints a string slice). Names only, never values.
pub(crate) fn unrecognized_warning(
    core: &Core,
    path: &str,
    data: &Map<String, Value>,
) -> Option<String> {
    if data.is_empty() {
        return None;
    }
    let (doc, rel) = backend_of(core, path)?;
    let p = path_of(doc, &rel).filter(|p| p.input == Input::Fields)?;
    let captures: Vec<&str> = p
        .pattern
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|n| n.trim_end_matches('*'))
        .collect();
    let mut ignored: Vec<&str> = data
        .keys()
        .map(String::as_str)
        .filter(|k| !captures.contains(k) && !p.fields.iter().any(|f| f.name == *k))
        .collect();
    if ignored.is_empty() {
        return None;
    }
    ignored.sort_unstable();
    Some(format!(
        "Endpoint ignored these unrecognized parameters: [{}]",
        ignored.join(" ")
    ))
}

/// The pattern as Vault prints its route regex.
fn regex(pattern: &str) -> String {
    let segs: Vec<String> = pattern
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('*') {
                    Some(name) => format!("(?P<{name}>.*)"),
                    None => format!("(?P<{name}>[^/]+)"),
                },
                None => s.to_owned(),
            },
        )
        .collect();
    format!("^{}$", segs.join("/"))
}

/// The pattern as an OpenAPI path (`/data/{path}`).
fn openapi_path(pattern: &str) -> String {
    format!("/{}", pattern.replace("*}", "}"))
}

fn backend_help(doc: &BackendDoc) -> String {
    let mut s = format!(
        "## DESCRIPTION\n\n{}\n\n## PATHS\n\nThe following paths are supported by this backend. To view help for\nany of the paths below, use the help command with any route matching\nthe path pattern. Note that depending on the policy of your auth token,\nyou may or may not be able to access certain paths.\n",
        doc.description
    );
    for p in doc.paths {
        s.push_str(&format!(
            "\n    {}\n        {}\n",
            regex(p.pattern),
            p.synopsis
        ));
    }
    s
}

fn path_help(p: &PathDoc, rel: &str) -> String {
    let mut s = format!(
        "Request:        {rel}\nMatching Route: {}\n\n{}\n",
        regex(p.pattern),
        p.synopsis
    );
    if !p.fields.is_empty() {
        s.push_str("\n## PARAMETERS\n");
        for f in p.fields {
            s.push_str(&format!(
                "\n    {} ({})\n\n        {}\n",
                f.name, f.kind, f.description
            ));
        }
    }
    s.push_str(&format!("\n## DESCRIPTION\n\n{}\n", p.description));
    s
}

fn openapi(paths: &[&PathDoc]) -> Value {
    let mut out = Map::new();
    for p in paths {
        let mut item = Map::new();
        item.insert("description".into(), json!(p.synopsis));
        let params: Vec<Value> = p
            .pattern
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|n| {
                json!({"name": n.trim_end_matches('*'), "in": "path", "required": true,
                       "schema": {"type": "string"}})
            })
            .collect();
        if !params.is_empty() {
            item.insert("parameters".into(), Value::Array(params));
        }
        let op_id = p.pattern.replace(['{', '}', '*'], "").replace('/', "-");
        for op in p.operations {
            let (method, verb) = match op {
                Operation::Read => ("get", "read"),
                Operation::List => ("get", "list"),
                Operation::Create | Operation::Update => ("post", "write"),
                Operation::Patch => ("patch", "patch"),
                Operation::Delete => ("delete", "delete"),
            };
            let mut o = json!({
                "operationId": format!("{verb}-{op_id}").trim_end_matches('-').to_owned(),
                "responses": {"200": {"description": "OK"}},
            });
            if *op == Operation::List {
                o["parameters"] = json!([{"name": "list", "in": "query", "required": true,
                                           "schema": {"type": "string", "enum": ["true"]}}]);
            }
            if matches!(op, Operation::Create | Operation::Update | Operation::Patch)
                && !p.fields.is_empty()
            {
                let props: Map<String, Value> = p
                    .fields
                    .iter()
                    .map(|f| {
                        (
                            f.name.to_owned(),
                            json!({"type": openapi_type(f.kind), "description": f.description}),
                        )
                    })
                    .collect();
                o["requestBody"] = json!({"content": {"application/json": {"schema":
                    {"type": "object", "properties": props}}}});
            }
            // LIST and READ share GET; the first one declared keeps it.
            item.entry(method).or_insert(o);
        }
        out.insert(openapi_path(p.pattern), Value::Object(item));
    }
    json!({
        "openapi": "3.0.2",
        "info": {
            "title": "Lockana API",
            "description": "HTTP API that gives you full access to Lockana. All API routes are prefixed with `/v1/`.",
            "version": crate::sys::VERSION,
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "paths": out,
        "components": {"schemas": {}},
    })
}

fn openapi_type(kind: &str) -> &'static str {
    match kind {
        "int" | "duration" => "integer",
        "bool" => "boolean",
        "map" => "object",
        "list" => "array",
        _ => "string",
    }
}

use Operation::{Create, Delete, List, Patch, Read, Update};

const RW: &[Operation] = &[Read, Create, Update, Delete];

/// The description of a built-in backend: `system`, `token`, `identity`, `lockana`.
fn backend_doc(kind: &str) -> Option<&'static BackendDoc> {
    Some(match kind {
        "system" => &SYSTEM,
        "token" => &TOKEN,
        "identity" => &IDENTITY,
        "lockana" => &LOCKANA,
        _ => return None,
    })
}

/// What a backend that serves nothing describes.
pub(crate) static EMPTY: BackendDoc = BackendDoc {
    description: "No backend serves this mount's type.",
    paths: &[],
};

const PATH_FIELD: FieldDoc = FieldDoc {
    name: "path",
    kind: "string",
    description: "Location of the secret.",
};

pub(crate) static KV_V2: BackendDoc = BackendDoc {
    description: "A versioned key-value store. Every write of a key makes a new version; old versions can be read, deleted (soft), undeleted and destroyed. Values are encrypted before they reach storage.",
    paths: &[
        PathDoc {
            pattern: "config",
            input: Input::Fields,
            operations: &[Read, Update],
            synopsis: "Configures settings for the KV store.",
            description: "Reads or sets the mount's max_versions, cas_required and delete_version_after.",
            fields: &[
                FieldDoc {
                    name: "max_versions",
                    kind: "int",
                    description: "Versions kept per key (0: the default of 10).",
                },
                FieldDoc {
                    name: "cas_required",
                    kind: "bool",
                    description: "Require the cas option on every write.",
                },
                FieldDoc {
                    name: "delete_version_after",
                    kind: "duration",
                    description: "Delete versions this long after they were written (0: never).",
                },
            ],
        },
        PathDoc {
            pattern: "data/{path*}",
            input: Input::Fields,
            operations: &[Read, Create, Update, Patch, Delete],
            synopsis: "Write, Patch, Read, and Delete data in the Key-Value Store.",
            description: "Writes store a new version of the key's data; reads return the latest version, or the one named by \"version\"; deletes soft-delete the latest version.",
            fields: &[
                FieldDoc {
                    name: "data",
                    kind: "map",
                    description: "The contents of the data map will be stored and returned on read.",
                },
                FieldDoc {
                    name: "options",
                    kind: "map",
                    description: "Write options; \"cas\" makes the write a check-and-set against the key's current version (0: only if the key does not exist).",
                },
                PATH_FIELD,
                FieldDoc {
                    name: "version",
                    kind: "int",
                    description: "If provided during a read, the value at the version number will be returned.",
                },
            ],
        },
        PathDoc {
            pattern: "delete/{path*}",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "Marks one or more versions as deleted in the KV store.",
            description: "Soft-deletes the given versions; they can be undeleted.",
            fields: &[
                PATH_FIELD,
                FieldDoc {
                    name: "versions",
                    kind: "list",
                    description: "The versions to delete.",
                },
            ],
        },
        PathDoc {
            pattern: "undelete/{path*}",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "Undeletes one or more versions from the KV store.",
            description: "Restores soft-deleted versions.",
            fields: &[
                PATH_FIELD,
                FieldDoc {
                    name: "versions",
                    kind: "list",
                    description: "The versions to undelete.",
                },
            ],
        },
        PathDoc {
            pattern: "destroy/{path*}",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "Permanently removes one or more versions in the KV store.",
            description: "Destroys the given versions' data for good.",
            fields: &[
                PATH_FIELD,
                FieldDoc {
                    name: "versions",
                    kind: "list",
                    description: "The versions to destroy.",
                },
            ],
        },
        PathDoc {
            pattern: "metadata/{path*}",
            input: Input::Fields,
            operations: &[Read, List, Create, Update, Patch, Delete],
            synopsis: "Configures settings for the KV store.",
            description: "Reads, lists and writes a key's metadata (max_versions, cas_required, delete_version_after, custom_metadata); deleting it removes every version of the key.",
            fields: &[
                PATH_FIELD,
                FieldDoc {
                    name: "max_versions",
                    kind: "int",
                    description: "Versions kept for this key.",
                },
                FieldDoc {
                    name: "cas_required",
                    kind: "bool",
                    description: "Require the cas option on every write of this key.",
                },
                FieldDoc {
                    name: "delete_version_after",
                    kind: "duration",
                    description: "Delete versions this long after they were written.",
                },
                FieldDoc {
                    name: "custom_metadata",
                    kind: "map",
                    description: "User-provided key-value pairs for describing the key.",
                },
            ],
        },
        PathDoc {
            pattern: "subkeys/{path*}",
            input: Input::Fields,
            operations: &[Read],
            synopsis: "Read the structure of a secret entry from the Key-Value store with the values removed.",
            description: "Returns the keys of a secret's data, nested to \"depth\", with every value replaced by null.",
            fields: &[
                FieldDoc {
                    name: "path",
                    kind: "string",
                    description: "Location of the secret.",
                },
                FieldDoc {
                    name: "depth",
                    kind: "int",
                    description: "How deep to descend into the data (0: all of it).",
                },
                FieldDoc {
                    name: "version",
                    kind: "int",
                    description: "The version to read (0: the latest).",
                },
            ],
        },
    ],
};

pub(crate) static KV_V1: BackendDoc = BackendDoc {
    description: "A key-value store: each key holds one JSON object, overwritten by every write. Values are encrypted before they reach storage.",
    paths: &[PathDoc {
        pattern: "{path*}",
        input: Input::Fields,
        operations: &[Read, List, Create, Update, Delete],
        synopsis: "Pass-through secret storage to the storage backend, allowing you to read/write arbitrary data into secret storage.",
        description: "Writes store the request's data at the path; reads return it; lists return the keys below a path ending in '/'.",
        fields: &[PATH_FIELD],
    }],
};

pub(crate) static CUBBYHOLE: BackendDoc = BackendDoc {
    description: "Per-token private secret storage: each token sees only its own entries, and they go when the token is revoked.",
    paths: &[PathDoc {
        pattern: "{path*}",
        input: Input::Fields,
        operations: &[Read, List, Create, Update, Delete],
        synopsis: "Pass-through secret storage to a token-specific cubbyhole in the storage backend, allowing you to read/write arbitrary data into secret storage.",
        description: "Writes, reads, lists and deletes entries private to the calling token.",
        fields: &[PATH_FIELD],
    }],
};

pub(crate) static TOTP: BackendDoc = BackendDoc {
    description: "Time-based one-time passwords (RFC 6238): generate or import keys, then have codes made or checked.",
    paths: &[
        PathDoc {
            pattern: "keys/",
            input: Input::Partial,
            operations: &[List],
            synopsis: "Manage the keys that can be created with this backend.",
            description: "Lists the key names.",
            fields: &[],
        },
        PathDoc {
            pattern: "keys/{name}",
            input: Input::Fields,
            operations: &[Read, Create, Update, Delete],
            synopsis: "Manage the keys that can be created with this backend.",
            description: "Creates (generate=true) or imports (key or url) a key, reads its parameters, or deletes it.",
            fields: &[
                FieldDoc {
                    name: "account_name",
                    kind: "string",
                    description: "The name of the account associated with the key (generated keys).",
                },
                FieldDoc {
                    name: "algorithm",
                    kind: "string",
                    description: "The hashing algorithm: SHA1, SHA256 or SHA512.",
                },
                FieldDoc {
                    name: "digits",
                    kind: "int",
                    description: "The number of digits in the generated code: 6 or 8.",
                },
                FieldDoc {
                    name: "exported",
                    kind: "bool",
                    description: "Whether a generated key is returned (barcode and URL).",
                },
                FieldDoc {
                    name: "generate",
                    kind: "bool",
                    description: "Whether the key is generated by the vault.",
                },
                FieldDoc {
                    name: "issuer",
                    kind: "string",
                    description: "The name of the key's issuing organization (generated keys).",
                },
                FieldDoc {
                    name: "key",
                    kind: "string",
                    description: "The shared master key, base32 (imported keys).",
                },
                FieldDoc {
                    name: "key_size",
                    kind: "int",
                    description: "The size in bytes of a generated key.",
                },
                FieldDoc {
                    name: "period",
                    kind: "duration",
                    description: "The length of time used to generate a counter for the code.",
                },
                FieldDoc {
                    name: "qr_size",
                    kind: "int",
                    description: "The pixel size of the generated square QR code (0: none).",
                },
                FieldDoc {
                    name: "skew",
                    kind: "int",
                    description: "The number of delay periods allowed when validating a code: 0 or 1.",
                },
                FieldDoc {
                    name: "url",
                    kind: "string",
                    description: "A TOTP URL (otpauth://) to import the key from.",
                },
            ],
        },
        PathDoc {
            pattern: "code/{name}",
            input: Input::Partial,
            operations: &[Read, Update],
            synopsis: "Request time-based one-time use password or validate a password for a certain key.",
            description: "A read makes the current code of a generated key; a write with \"code\" checks one (each code works once).",
            fields: &[FieldDoc {
                name: "code",
                kind: "string",
                description: "The code to check.",
            }],
        },
    ],
};

/// The body of `sys/mounts/<path>` and `sys/auth/<path>` (enabling a mount).
const ENABLE_FIELDS: &[FieldDoc] = &[
    FieldDoc {
        name: "config",
        kind: "map",
        description: "Configuration for this mount, such as default_lease_ttl and max_lease_ttl.",
    },
    FieldDoc {
        name: "description",
        kind: "string",
        description: "User-friendly description for this mount.",
    },
    FieldDoc {
        name: "external_entropy_access",
        kind: "bool",
        description: "Whether to give the mount access to the external entropy source.",
    },
    FieldDoc {
        name: "local",
        kind: "bool",
        description: "Mark the mount as a local mount, which is not replicated.",
    },
    FieldDoc {
        name: "options",
        kind: "map",
        description: "The options to pass into the backend. Should be a json object with string keys and values.",
    },
    FieldDoc {
        name: "plugin_name",
        kind: "string",
        description: "Name of the plugin to mount based from the name registered in the plugin catalog.",
    },
    FieldDoc {
        name: "plugin_version",
        kind: "string",
        description: "The semantic version of the plugin to use.",
    },
    FieldDoc {
        name: "seal_wrap",
        kind: "bool",
        description: "Whether to turn on seal wrapping for the mount.",
    },
    FieldDoc {
        name: "type",
        kind: "string",
        description: "The type of the backend. Example: \"kv\"",
    },
];

/// The fields of `sys/mounts/<path>/tune` and `sys/auth/<path>/tune`.
const TUNE_FIELDS: &[FieldDoc] = &[
    FieldDoc {
        name: "allowed_response_headers",
        kind: "list",
        description: "A list of headers to whitelist and allow a plugin to set on responses.",
    },
    FieldDoc {
        name: "audit_non_hmac_request_keys",
        kind: "list",
        description: "The list of keys in the request data object that will not be HMAC'ed by audit devices.",
    },
    FieldDoc {
        name: "audit_non_hmac_response_keys",
        kind: "list",
        description: "The list of keys in the response data object that will not be HMAC'ed by audit devices.",
    },
    FieldDoc {
        name: "default_lease_ttl",
        kind: "duration",
        description: "The default lease TTL for this mount.",
    },
    FieldDoc {
        name: "description",
        kind: "string",
        description: "User-friendly description for this credential backend.",
    },
    FieldDoc {
        name: "listing_visibility",
        kind: "string",
        description: "Determines the visibility of the mount in the UI-specific listing endpoint.",
    },
    FieldDoc {
        name: "max_lease_ttl",
        kind: "duration",
        description: "The max lease TTL for this mount.",
    },
    FieldDoc {
        name: "options",
        kind: "map",
        description: "The options to pass into the backend. Should be a json object with string keys and values.",
    },
    FieldDoc {
        name: "passthrough_request_headers",
        kind: "list",
        description: "A list of headers to whitelist and pass from the request to the plugin.",
    },
    FieldDoc {
        name: "plugin_version",
        kind: "string",
        description: "The semantic version of the plugin to use.",
    },
    FieldDoc {
        name: "token_type",
        kind: "string",
        description: "The type of token to issue (service or batch).",
    },
    FieldDoc {
        name: "user_lockout_config",
        kind: "map",
        description: "The user lockout configuration to pass into the backend.",
    },
];

static SYSTEM: BackendDoc = BackendDoc {
    description: "The system backend: seal state, mounts, auth methods, policies, audit devices, response wrapping and Lockana's notifications.",
    paths: &[
        PathDoc {
            pattern: "mounts",
            input: Input::Fields,
            operations: &[Read],
            synopsis: "List the currently mounted backends.",
            description: "Lists every secrets engine mount with its type and configuration.",
            fields: &[],
        },
        PathDoc {
            pattern: "mounts/{path*}/tune",
            input: Input::Fields,
            operations: &[Read, Update],
            synopsis: "Tune the configuration of a secrets engine mount.",
            description: "Reads or changes the mount's lease TTLs, description, options and audit and header settings.",
            fields: TUNE_FIELDS,
        },
        PathDoc {
            pattern: "mounts/{path*}",
            input: Input::Fields,
            operations: &[Read, Create, Update, Delete],
            synopsis: "Mount a new backend at a new path.",
            description: "Enables (type, description, config, options), reads, tunes (<path>/tune, also auth/<path>/tune) or disables a secrets engine.",
            fields: ENABLE_FIELDS,
        },
        PathDoc {
            pattern: "auth",
            input: Input::Fields,
            operations: &[Read],
            synopsis: "List the currently enabled credential backends.",
            description: "Lists every auth method mount.",
            fields: &[],
        },
        PathDoc {
            pattern: "auth/{path*}/tune",
            input: Input::Fields,
            operations: &[Read, Update],
            synopsis: "Tune the configuration of a auth method mount.",
            description: "Reads or changes the mount's lease TTLs, description, options and audit and header settings.",
            fields: TUNE_FIELDS,
        },
        PathDoc {
            pattern: "auth/{path*}",
            input: Input::Fields,
            operations: &[Read, Create, Update, Delete],
            synopsis: "Enable a new credential backend with a name.",
            description: "Enables, reads, tunes (<path>/tune) or disables an auth method.",
            fields: ENABLE_FIELDS,
        },
        PathDoc {
            pattern: "policies/acl",
            input: Input::Partial,
            operations: &[List],
            synopsis: "List the configured access control policies.",
            description: "Lists ACL policy names.",
            fields: &[],
        },
        PathDoc {
            pattern: "policies/acl/{name*}",
            input: Input::Partial,
            operations: &[Read, Create, Update, Delete],
            synopsis: "Read, Modify, or Delete an access control policy.",
            description: "Reads, writes (policy, in HCL or JSON) or deletes an ACL policy. Names are lower-cased; root cannot be changed.",
            fields: &[
                FieldDoc {
                    name: "name",
                    kind: "string",
                    description: "The name of the policy.",
                },
                FieldDoc {
                    name: "policy",
                    kind: "string",
                    description: "The rules of the policy.",
                },
            ],
        },
        PathDoc {
            pattern: "policy/{name*}",
            input: Input::Partial,
            operations: &[Read, List, Create, Update, Delete],
            synopsis: "Read, Modify, or Delete an access control policy.",
            description: "The older form of sys/policies/acl.",
            fields: &[],
        },
        PathDoc {
            pattern: "capabilities-self",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "Fetches the capabilities of the given token on the given path.",
            description: "Returns the calling token's capabilities on each of \"paths\".",
            fields: &[
                FieldDoc {
                    name: "path",
                    kind: "list",
                    description: "Deprecated: use paths.",
                },
                FieldDoc {
                    name: "paths",
                    kind: "list",
                    description: "Paths on which capabilities are being queried.",
                },
                FieldDoc {
                    name: "token",
                    kind: "string",
                    description: "Ignored: the request's own token is used.",
                },
            ],
        },
        PathDoc {
            pattern: "wrapping/wrap",
            input: Input::Arbitrary,
            operations: &[Update],
            synopsis: "Response-wraps an arbitrary JSON object.",
            description: "Every field of the request is the data to wrap; X-Vault-Wrap-TTL sets the wrapping token's TTL.",
            fields: &[],
        },
        PathDoc {
            pattern: "wrapping/{op}",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "Response-wrapping operations: wrap, unwrap, lookup, rewrap.",
            description: "wrap (needs X-Vault-Wrap-TTL) wraps the request data; unwrap returns a wrapped answer once; lookup shows a wrapping token's details; rewrap moves an answer to a new token.",
            fields: &[],
        },
        PathDoc {
            pattern: "audit",
            input: Input::Partial,
            operations: &[Read],
            synopsis: "List the enabled audit devices.",
            description: "Lists audit devices.",
            fields: &[],
        },
        PathDoc {
            pattern: "audit/{path*}",
            input: Input::Partial,
            operations: &[Create, Update, Delete],
            synopsis: "Enable or disable audit backends.",
            description: "Enables or disables an audit device (file, socket, syslog).",
            fields: &[],
        },
        PathDoc {
            pattern: "seal-status",
            input: Input::Partial,
            operations: &[Read],
            synopsis: "Returns the seal status of the Vault.",
            description: "Whether the vault is initialized and sealed, and unseal progress.",
            fields: &[],
        },
        PathDoc {
            pattern: "health",
            input: Input::Partial,
            operations: &[Read],
            synopsis: "Checks the health status of the Vault.",
            description: "Answers with a status code that reflects initialization, seal and standby state.",
            fields: &[],
        },
        PathDoc {
            pattern: "seal",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "Seals the Vault.",
            description: "Drops the key material; the vault serves nothing until unsealed.",
            fields: &[],
        },
        PathDoc {
            pattern: "rotate",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "Rotates the backend encryption key used to persist data.",
            description: "Adds a new data key to the keyring; new writes use it.",
            fields: &[],
        },
        PathDoc {
            pattern: "key-status",
            input: Input::Partial,
            operations: &[Read],
            synopsis: "Provides information about the backend encryption key.",
            description: "The current key term and when it was installed.",
            fields: &[],
        },
        PathDoc {
            pattern: "internal/ui/mounts/{path*}",
            input: Input::Partial,
            operations: &[Read],
            synopsis: "Return information about the mount serving a path.",
            description: "Used by clients (bao kv) to learn a mount's type and version; spends no token use.",
            fields: &[],
        },
        PathDoc {
            pattern: "{path*}",
            input: Input::Partial,
            operations: &[Read, Update],
            synopsis: "Other system paths.",
            description: "init, unseal, leader, mfa, locked-users, audit-hash and lockana/notify; see docs/API.md.",
            fields: &[],
        },
    ],
};

static TOKEN: BackendDoc = BackendDoc {
    description: "The token store: create, look up, renew and revoke tokens, and manage token roles.",
    paths: &[
        PathDoc {
            pattern: "create",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "The token create path is used to create new tokens.",
            description: "Creates a child token of the caller (policies, ttl, num_uses, meta, period, ...).",
            fields: TOKEN_CREATE_FIELDS,
        },
        PathDoc {
            pattern: "create-orphan",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "The token create path is used to create new orphan tokens.",
            description: "As create, with no parent (needs sudo).",
            fields: TOKEN_CREATE_FIELDS,
        },
        PathDoc {
            pattern: "create/{role_name}",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "This token create path is used to create new tokens adhering to the given role.",
            description: "Creates a token through a token role.",
            fields: TOKEN_CREATE_FIELDS,
        },
        PathDoc {
            pattern: "lookup",
            input: Input::Fields,
            operations: &[Read, Update],
            synopsis: "This endpoint will lookup a token and its properties.",
            description: "Looks up the token given as \"token\".",
            fields: &[FieldDoc {
                name: "token",
                kind: "string",
                description: "Token to look up.",
            }],
        },
        PathDoc {
            pattern: "lookup-self",
            input: Input::Partial,
            operations: &[Read],
            synopsis: "This endpoint will lookup a token and its properties.",
            description: "Looks up the calling token; num_uses shows the uses left (-1 on the last one).",
            fields: &[],
        },
        PathDoc {
            pattern: "lookup-accessor",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "This endpoint will lookup a token associated with the given accessor and its properties.",
            description: "Looks up a token by accessor.",
            fields: &[FieldDoc {
                name: "accessor",
                kind: "string",
                description: "Accessor of the token to look up.",
            }],
        },
        PathDoc {
            pattern: "renew",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "This endpoint will renew the given token and prevent expiration.",
            description: "Renews the token given as \"token\" by \"increment\".",
            fields: &[],
        },
        PathDoc {
            pattern: "renew-self",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "This endpoint will renew the token used to call it and prevent expiration.",
            description: "Renews the calling token by \"increment\".",
            fields: &[],
        },
        PathDoc {
            pattern: "renew-accessor",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "This endpoint will renew a token associated with the given accessor and its properties.",
            description: "Renews a token by accessor; the token itself is not returned.",
            fields: &[],
        },
        PathDoc {
            pattern: "revoke",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "This endpoint will delete the given token and all of its child tokens.",
            description: "Revokes the token given as \"token\" and its children.",
            fields: &[],
        },
        PathDoc {
            pattern: "revoke-self",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "This endpoint will delete the token used to call it and all of its child tokens.",
            description: "Revokes the calling token and its children.",
            fields: &[],
        },
        PathDoc {
            pattern: "revoke-accessor",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "This endpoint will delete the token associated with the accessor and all of its child tokens.",
            description: "Revokes a token by accessor.",
            fields: &[],
        },
        PathDoc {
            pattern: "revoke-orphan",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "This endpoint will delete the token and orphan its child tokens.",
            description: "Revokes a token and leaves its children as orphans (needs sudo).",
            fields: &[],
        },
        PathDoc {
            pattern: "accessors/",
            input: Input::Partial,
            operations: &[List],
            synopsis: "List token accessors, which can then be used to iterate and discover their properties or revoke them.",
            description: "Lists every token accessor (needs sudo).",
            fields: &[],
        },
        PathDoc {
            pattern: "roles/{role_name*}",
            input: Input::Fields,
            operations: &[Read, List, Create, Update, Delete],
            synopsis: "Manage token roles.",
            description: "Creates, reads, lists and deletes token roles.",
            fields: &[
                FieldDoc {
                    name: "allowed_entity_aliases",
                    kind: "list",
                    description: "String or JSON list of allowed entity aliases.",
                },
                FieldDoc {
                    name: "allowed_policies",
                    kind: "list",
                    description: "If set, tokens can be created with any subset of the policies in this list.",
                },
                FieldDoc {
                    name: "allowed_policies_glob",
                    kind: "list",
                    description: "As allowed_policies, with glob patterns.",
                },
                FieldDoc {
                    name: "bound_cidrs",
                    kind: "list",
                    description: "Deprecated: use token_bound_cidrs.",
                },
                FieldDoc {
                    name: "disallowed_policies",
                    kind: "list",
                    description: "If set, successful token creation via this role will require that no policies in the given list are requested.",
                },
                FieldDoc {
                    name: "disallowed_policies_glob",
                    kind: "list",
                    description: "As disallowed_policies, with glob patterns.",
                },
                FieldDoc {
                    name: "explicit_max_ttl",
                    kind: "duration",
                    description: "Deprecated: use token_explicit_max_ttl.",
                },
                FieldDoc {
                    name: "orphan",
                    kind: "bool",
                    description: "If true, tokens created via this role will be orphan tokens.",
                },
                FieldDoc {
                    name: "path_suffix",
                    kind: "string",
                    description: "If set, tokens created via this role will contain the given suffix as a part of their path.",
                },
                FieldDoc {
                    name: "period",
                    kind: "duration",
                    description: "Deprecated: use token_period.",
                },
                FieldDoc {
                    name: "renewable",
                    kind: "bool",
                    description: "Tokens created via this role will be renewable or not according to this value.",
                },
                FieldDoc {
                    name: "token_bound_cidrs",
                    kind: "list",
                    description: "Comma separated string or JSON list of CIDR blocks.",
                },
                FieldDoc {
                    name: "token_explicit_max_ttl",
                    kind: "duration",
                    description: "If set, tokens created via this role carry an explicit maximum TTL.",
                },
                FieldDoc {
                    name: "token_no_default_policy",
                    kind: "bool",
                    description: "If true, the 'default' policy will not automatically be added to generated tokens.",
                },
                FieldDoc {
                    name: "token_num_uses",
                    kind: "int",
                    description: "The maximum number of times a token may be used, a value of zero means unlimited.",
                },
                FieldDoc {
                    name: "token_period",
                    kind: "duration",
                    description: "If set, tokens created via this role will have no max lifetime; instead, their renewal period will be fixed to this value.",
                },
                FieldDoc {
                    name: "token_type",
                    kind: "string",
                    description: "The type of token to generate, service or batch.",
                },
            ],
        },
    ],
};

/// The fields of `auth/token/create` (and `create-orphan`, `create/<role>`).
const TOKEN_CREATE_FIELDS: &[FieldDoc] = &[
    FieldDoc {
        name: "display_name",
        kind: "string",
        description: "Name to associate with this token.",
    },
    FieldDoc {
        name: "entity_alias",
        kind: "string",
        description: "Name of the entity alias to associate with this token.",
    },
    FieldDoc {
        name: "explicit_max_ttl",
        kind: "duration",
        description: "Explicit Max TTL of this token.",
    },
    FieldDoc {
        name: "id",
        kind: "string",
        description: "Value for the token.",
    },
    FieldDoc {
        name: "lease",
        kind: "duration",
        description: "Deprecated: use ttl.",
    },
    FieldDoc {
        name: "meta",
        kind: "map",
        description: "Arbitrary key=value metadata to associate with the token.",
    },
    FieldDoc {
        name: "no_default_policy",
        kind: "bool",
        description: "Do not include the default policy.",
    },
    FieldDoc {
        name: "no_parent",
        kind: "bool",
        description: "Create the token with no parent.",
    },
    FieldDoc {
        name: "num_uses",
        kind: "int",
        description: "Max number of uses for this token.",
    },
    FieldDoc {
        name: "period",
        kind: "duration",
        description: "Renew period.",
    },
    FieldDoc {
        name: "policies",
        kind: "list",
        description: "List of policies for the token.",
    },
    FieldDoc {
        name: "renewable",
        kind: "bool",
        description: "Allow token to be renewed past its initial TTL up to system/mount maximum TTL.",
    },
    FieldDoc {
        name: "ttl",
        kind: "duration",
        description: "Time to live for this token.",
    },
    FieldDoc {
        name: "type",
        kind: "string",
        description: "Token type (service).",
    },
];

const TOKEN_FIELDS: &[FieldDoc] = &[
    FieldDoc {
        name: "token_policies",
        kind: "list",
        description: "Comma-separated list of policies.",
    },
    FieldDoc {
        name: "token_ttl",
        kind: "duration",
        description: "The initial ttl of the token to generate.",
    },
    FieldDoc {
        name: "token_max_ttl",
        kind: "duration",
        description: "The maximum lifetime of the generated token.",
    },
    FieldDoc {
        name: "token_num_uses",
        kind: "int",
        description: "The maximum number of times a token may be used, a value of zero means unlimited.",
    },
    FieldDoc {
        name: "token_period",
        kind: "duration",
        description: "If set, tokens created via this role will have no max lifetime; instead, their renewal period will be fixed to this value.",
    },
    FieldDoc {
        name: "token_no_default_policy",
        kind: "bool",
        description: "If true, the 'default' policy will not automatically be added to generated tokens.",
    },
];

/// Vault's `tokenutil` fields as a user or role path of an auth method takes them (all
/// of them, unlike the JWT role's partial [`TOKEN_FIELDS`]), spliced between the path's
/// own fields so the list keeps Vault's sorted order.
macro_rules! with_token_fields {
    ([$($before:expr),* $(,)?], [$($after:expr),* $(,)?]) => {
        &[
            $($before,)*
            FieldDoc {
                name: "token_bound_cidrs",
                kind: "list",
                description: "Comma separated string or JSON list of CIDR blocks.",
            },
            FieldDoc {
                name: "token_explicit_max_ttl",
                kind: "duration",
                description: "If set, tokens created via this role carry an explicit maximum TTL.",
            },
            FieldDoc {
                name: "token_max_ttl",
                kind: "duration",
                description: "The maximum lifetime of the generated token.",
            },
            FieldDoc {
                name: "token_no_default_policy",
                kind: "bool",
                description: "If true, the 'default' policy will not automatically be added to generated tokens.",
            },
            FieldDoc {
                name: "token_num_uses",
                kind: "int",
                description: "The maximum number of times a token may be used, a value of zero means unlimited.",
            },
            FieldDoc {
                name: "token_period",
                kind: "duration",
                description: "If set, tokens created via this role will have no max lifetime; instead, their renewal period will be fixed to this value.",
            },
            FieldDoc {
                name: "token_policies",
                kind: "list",
                description: "Comma-separated list of policies.",
            },
            FieldDoc {
                name: "token_strictly_bind_ip",
                kind: "bool",
                description: "If true, CIDRs for the token will be strictly bound to the source IP address of the login request.",
            },
            FieldDoc {
                name: "token_ttl",
                kind: "duration",
                description: "The initial ttl of the token to generate.",
            },
            FieldDoc {
                name: "token_type",
                kind: "string",
                description: "The type of token to generate, service or batch.",
            },
            $($after,)*
        ]
    };
}

pub(crate) static USERPASS: BackendDoc = BackendDoc {
    description: "The userpass credential provider: users log in with a name and a password.",
    paths: &[
        PathDoc {
            pattern: "users/",
            input: Input::Partial,
            operations: &[List],
            synopsis: "Manage users allowed to authenticate.",
            description: "Lists user names.",
            fields: &[],
        },
        PathDoc {
            pattern: "users/{username}",
            input: Input::Fields,
            operations: RW,
            synopsis: "Manage users allowed to authenticate.",
            description: "Creates, reads, updates and deletes a user with its password and token settings.",
            fields: with_token_fields!(
                [
                    FieldDoc {
                        name: "bound_cidrs",
                        kind: "list",
                        description: "Deprecated: use token_bound_cidrs.",
                    },
                    FieldDoc {
                        name: "max_ttl",
                        kind: "duration",
                        description: "Deprecated: use token_max_ttl.",
                    },
                    FieldDoc {
                        name: "password",
                        kind: "string",
                        description: "Password for this user.",
                    },
                    FieldDoc {
                        name: "password_hash",
                        kind: "string",
                        description: "Pre-hashed password for this user.",
                    },
                    FieldDoc {
                        name: "policies",
                        kind: "list",
                        description: "Deprecated: use token_policies.",
                    },
                ],
                [FieldDoc {
                    name: "ttl",
                    kind: "duration",
                    description: "Deprecated: use token_ttl.",
                },]
            ),
        },
        PathDoc {
            pattern: "users/{username}/password",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "Reset user's password.",
            description: "Sets a user's password.",
            fields: &[],
        },
        PathDoc {
            pattern: "users/{username}/policies",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "Update the policies associated with the username.",
            description: "Sets a user's token policies.",
            fields: &[],
        },
        PathDoc {
            pattern: "login/{username}",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "Log in with a username and password.",
            description: "Returns a token for the user when the password matches.",
            fields: &[FieldDoc {
                name: "password",
                kind: "string",
                description: "Password for this user.",
            }],
        },
    ],
};

pub(crate) static APPROLE: BackendDoc = BackendDoc {
    description: "Any registered role can authenticate itself with a role ID and, when bound, a secret ID.",
    paths: &[
        PathDoc {
            pattern: "login",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "Issue a token based on the credentials supplied.",
            description: "Logs in with role_id and secret_id; the token's metadata holds the secret ID's metadata and role_name.",
            fields: &[
                FieldDoc {
                    name: "role_id",
                    kind: "string",
                    description: "Unique identifier of the Role.",
                },
                FieldDoc {
                    name: "secret_id",
                    kind: "string",
                    description: "SecretID belong to the App role.",
                },
            ],
        },
        PathDoc {
            pattern: "tidy/secret-id",
            input: Input::Fields,
            operations: &[Update],
            synopsis: "Trigger the clean-up of expired SecretID entries.",
            description: "Removes expired secret IDs and accessors whose secret ID is gone. Answers 202.",
            fields: &[],
        },
        PathDoc {
            pattern: "role/",
            input: Input::Partial,
            operations: &[List],
            synopsis: "Lists all the roles registered with the backend.",
            description: "Lists role names.",
            fields: &[],
        },
        PathDoc {
            pattern: "role/{role_name}",
            input: Input::Fields,
            operations: RW,
            synopsis: "Register an role with the backend.",
            description: "Creates, reads, updates and deletes a role (bind_secret_id, secret_id_num_uses, secret_id_ttl, CIDR bounds, token settings).",
            fields: with_token_fields!(
                [
                    FieldDoc {
                        name: "bind_secret_id",
                        kind: "bool",
                        description: "Impose secret_id to be presented when logging in using this role.",
                    },
                    FieldDoc {
                        name: "bound_cidr_list",
                        kind: "list",
                        description: "Deprecated: use secret_id_bound_cidrs.",
                    },
                    FieldDoc {
                        name: "local_secret_ids",
                        kind: "bool",
                        description: "If set, the secret IDs generated using this role will be cluster local.",
                    },
                    FieldDoc {
                        name: "period",
                        kind: "duration",
                        description: "Deprecated: use token_period.",
                    },
                    FieldDoc {
                        name: "policies",
                        kind: "list",
                        description: "Deprecated: use token_policies.",
                    },
                    FieldDoc {
                        name: "role_id",
                        kind: "string",
                        description: "Identifier of the role. Defaults to a UUID.",
                    },
                    FieldDoc {
                        name: "secret_id_bound_cidrs",
                        kind: "list",
                        description: "Comma separated string or list of CIDR blocks. If set, specifies the blocks of IP addresses which can perform the login operation.",
                    },
                    FieldDoc {
                        name: "secret_id_num_uses",
                        kind: "int",
                        description: "Number of times a SecretID can access the role, after which the SecretID will expire.",
                    },
                    FieldDoc {
                        name: "secret_id_ttl",
                        kind: "duration",
                        description: "Duration after which the issued SecretID should expire.",
                    },
                ],
                []
            ),
        },
        PathDoc {
            pattern: "role/{role_name}/role-id",
            input: Input::Fields,
            operations: &[Read, Update],
            synopsis: "Returns the 'role_id' of the role.",
            description: "Reads or sets the role's role ID.",
            fields: &[FieldDoc {
                name: "role_id",
                kind: "string",
                description: "Identifier of the role.",
            }],
        },
        PathDoc {
            pattern: "role/{role_name}/secret-id",
            input: Input::Fields,
            operations: &[List, Update],
            synopsis: "Generate a SecretID against this role.",
            description: "Makes a secret ID (metadata, cidr_list, num_uses, ttl) or lists their accessors.",
            fields: &[
                FieldDoc {
                    name: "cidr_list",
                    kind: "list",
                    description: "Comma separated string or list of CIDR blocks enforcing secret IDs to be used from specific set of IP addresses.",
                },
                FieldDoc {
                    name: "metadata",
                    kind: "string",
                    description: "Metadata to be tied to the SecretID: a JSON object or key=value pairs.",
                },
                FieldDoc {
                    name: "num_uses",
                    kind: "int",
                    description: "Number of times this SecretID can be used, after which the SecretID expires.",
                },
                FieldDoc {
                    name: "token_bound_cidrs",
                    kind: "list",
                    description: "Comma separated string or list of CIDR blocks the token may be used from.",
                },
                FieldDoc {
                    name: "ttl",
                    kind: "duration",
                    description: "Duration in seconds after which this SecretID expires.",
                },
            ],
        },
        PathDoc {
            pattern: "role/{role_name}/custom-secret-id",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "Assign a SecretID of choice against the role.",
            description: "Stores a secret ID the caller chose.",
            fields: &[],
        },
        PathDoc {
            pattern: "role/{role_name}/{rest*}",
            input: Input::Partial,
            operations: &[Read, Update, Delete],
            synopsis: "Read or change one setting of a role, or look up and destroy secret IDs.",
            description: "Per-field role settings and secret-id/lookup, secret-id/destroy, secret-id-accessor/lookup and secret-id-accessor/destroy.",
            fields: &[],
        },
    ],
};

pub(crate) static JWT: BackendDoc = BackendDoc {
    description: "The JWT credential provider: log in with a JSON Web Token signed by a configured key.",
    paths: &[
        PathDoc {
            pattern: "config",
            input: Input::Partial,
            operations: &[Read, Update],
            synopsis: "Configures the JWT authentication backend.",
            description: "Sets the validation keys (jwt_validation_pubkeys), bound issuer and default role.",
            fields: &[],
        },
        PathDoc {
            pattern: "role/",
            input: Input::Partial,
            operations: &[List],
            synopsis: "Lists all the roles registered with the backend.",
            description: "Lists role names.",
            fields: &[],
        },
        PathDoc {
            pattern: "role/{name}",
            input: Input::Partial,
            operations: RW,
            synopsis: "Register a role with the backend.",
            description: "Creates, reads, updates and deletes a role (bound_audiences, bound_claims, user_claim, token settings).",
            fields: TOKEN_FIELDS,
        },
        PathDoc {
            pattern: "login",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "Authenticates to Vault using a JWT (or OIDC) token.",
            description: "Logs in with role and jwt.",
            fields: &[],
        },
    ],
};

static IDENTITY: BackendDoc = BackendDoc {
    description: "Identity: entities for the users and roles that log in, and login MFA.",
    paths: &[
        PathDoc {
            pattern: "entity/id/",
            input: Input::Partial,
            operations: &[List],
            synopsis: "List all the entity IDs.",
            description: "Lists entity IDs.",
            fields: &[],
        },
        PathDoc {
            pattern: "entity/id/{id}",
            input: Input::Partial,
            operations: &[Read],
            synopsis: "Update, read or delete an entity using entity ID.",
            description: "Reads an entity.",
            fields: &[],
        },
        PathDoc {
            pattern: "lookup/entity",
            input: Input::Partial,
            operations: &[Update],
            synopsis: "Query entities based on various properties.",
            description: "Finds an entity by id, name or alias.",
            fields: &[],
        },
        PathDoc {
            pattern: "mfa/{rest*}",
            input: Input::Partial,
            operations: &[Read, List, Create, Update, Delete],
            synopsis: "Login MFA methods and enforcements.",
            description: "TOTP MFA methods, admin-generate, and login enforcements.",
            fields: &[],
        },
    ],
};

static LOCKANA: BackendDoc = BackendDoc {
    description: "Lockana's projects: sets of secrets with their own TOTP seed, owners and notification routes.",
    paths: &[
        PathDoc {
            pattern: "projects/",
            input: Input::Partial,
            operations: &[List],
            synopsis: "List projects.",
            description: "Lists project names.",
            fields: &[],
        },
        PathDoc {
            pattern: "projects/{name}",
            input: Input::Partial,
            operations: &[Read, Create, Update, Delete],
            synopsis: "Manage a project.",
            description: "Creates, reads and deletes a project.",
            fields: &[],
        },
        PathDoc {
            pattern: "projects/{name}/env",
            input: Input::Partial,
            operations: &[Read],
            synopsis: "A project's secrets as JSON or dotenv.",
            description: "Returns the project's variables; with X-Lockana-TOTP the one-time code is the credential.",
            fields: &[],
        },
        PathDoc {
            pattern: "projects/{name}/{rest*}",
            input: Input::Partial,
            operations: &[Read, Update, Delete],
            synopsis: "A project's members, seed and settings.",
            description: "See docs/API.md.",
            fields: &[],
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments_and_rest() {
        assert!(matches("data/{path*}", "data/a/b"));
        assert!(matches("data/{path*}", "data/"));
        assert!(!matches("data/{path*}", "metadata/a"));
        assert!(matches("users/{username}", "users/bob"));
        assert!(!matches("users/{username}", "users/bob/password"));
        assert!(matches("users/{username}/password", "users/bob/password"));
        assert!(matches("config", "config"));
        assert!(matches("keys/", "keys/"));
        assert!(!matches("config", "config/x"));
    }

    #[test]
    fn a_rest_capture_may_be_followed_by_literals() {
        assert!(matches("mounts/{path*}/tune", "mounts/a/b/tune"));
        assert!(matches("mounts/{path*}/tune", "mounts/kv/tune/"));
        assert!(!matches("mounts/{path*}/tune", "mounts/tune"));
        assert!(!matches("mounts/{path*}/tune", "mounts/a/b"));
    }

    #[test]
    fn only_complete_field_lists_warn_about_unknown_fields() {
        let declared = &KV_V2.paths[0];
        assert_eq!(declared.input, Input::Fields);
        // KV v1 reads warn about query fields as Vault's do; its writes answer 204.
        assert_eq!(KV_V1.paths[0].input, Input::Fields);
        assert_eq!(
            path_of(&SYSTEM, "wrapping/wrap").map(|p| p.input),
            Some(Input::Arbitrary)
        );
        assert_eq!(
            path_of(&APPROLE, "role/web/secret-id").map(|p| p.pattern),
            Some("role/{role_name}/secret-id")
        );
        assert_eq!(
            path_of(&SYSTEM, "mounts/a/b/tune").map(|p| p.pattern),
            Some("mounts/{path*}/tune")
        );
    }

    #[test]
    fn routes_print_like_vault_regexes() {
        assert_eq!(regex("data/{path*}"), "^data/(?P<path>.*)$");
        assert_eq!(regex("login/{username}"), "^login/(?P<username>[^/]+)$");
        assert_eq!(openapi_path("data/{path*}"), "/data/{path}");
    }

    #[test]
    fn every_backend_path_has_operations_and_help() {
        let mut docs: Vec<(String, &BackendDoc)> = ["system", "token", "identity", "lockana"]
            .into_iter()
            .map(|k| (k.to_owned(), backend_doc(k).expect(k)))
            .collect();
        // Every registered engine and auth method, under each of its names.
        for registry in [crate::engine::SECRETS_ENGINES, crate::engine::AUTH_METHODS] {
            for r in registry {
                for name in r.names {
                    let (_, backend) = (r.factory)(name, &mut Default::default()).expect(name);
                    docs.push((name.to_string(), backend.doc()));
                }
            }
        }
        for (kind, doc) in docs {
            assert!(!doc.description.is_empty(), "{kind}");
            for p in doc.paths {
                assert!(!p.operations.is_empty(), "{kind} {}", p.pattern);
                assert!(
                    !p.synopsis.is_empty() && !p.description.is_empty(),
                    "{kind} {}",
                    p.pattern
                );
            }
        }
        assert!(backend_doc("nope").is_none());
    }

    #[test]
    fn path_help_names_the_route_and_fields() {
        let p = &KV_V2.paths[1];
        let h = path_help(p, "data/foo");
        assert!(h.starts_with("Request:        data/foo\nMatching Route: ^data/(?P<path>.*)$"));
        assert!(h.contains("## PARAMETERS") && h.contains("    data (map)"));
        let o = openapi(&[p]);
        assert!(o["paths"]["/data/{path}"]["get"].is_object());
        assert!(o["paths"]["/data/{path}"]["post"]["requestBody"].is_object());
    }
}
