//! The HTTP request path: method, path, query, headers and body through the server's
//! own dispatch (limits, translation, the vault, error rendering), no socket.
//!
//! Input layout: byte 0 picks the method, byte 1 the token; the rest is split at
//! 0x00 into path+query, header lines (`name: value`, split at `\n`) and the body.
//! Never a panic and never a 500 (nothing here is an internal failure).
//!
//! The root token is used only on paths that cannot reach outside the process or
//! end the run (no sys/seal, audit devices, notification routes, raw storage, and no
//! auth method config that would fetch keys from a URL).
#![no_main]

use std::cell::RefCell;

use bytes::Bytes;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use lockana::{Operation, Request, Vault};
use lockana_server::Limits;
use serde_json::json;

const METHODS: [&str; 9] = ["GET", "PUT", "POST", "PATCH", "DELETE", "LIST", "HEAD", "OPTIONS", "GET"];
/// Fresh vault every so many runs, so KV writes do not pile up in memory.
const RUNS_PER_VAULT: u32 = 20_000;

struct State {
    vault: Vault,
    root: String,
    limited: String,
    runs: u32,
    rt: tokio::runtime::Runtime,
    limits: Limits,
}

fn fresh() -> (Vault, String, String) {
    let (vault, creds) = Vault::dev(None).expect("dev vault");
    // An API user must never make the fuzzer write files or reach the network.
    vault.set_api_audit_creation(false);
    let root = creds.root_token.expose().to_owned();
    let call = |op, path: &str, body| {
        vault
            .handle(Request::new(op, path).with_token(&root).with_data(body))
            .expect("setup")
    };
    call(Operation::Update, "sys/mounts/totp", json!({"type": "totp"}));
    call(
        Operation::Update,
        "sys/policies/acl/fuzz",
        json!({"policy": "path \"secret/*\" { capabilities = [\"create\", \"read\", \"update\", \"patch\", \"delete\", \"list\"] }\npath \"totp/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\npath \"sys/*\" { capabilities = [\"read\", \"list\"] }"}),
    );
    let limited = call(
        Operation::Update,
        "auth/token/create",
        json!({"policies": ["fuzz"]}),
    )
    .auth
    .and_then(|a| a.client_token)
    .expect("token")
    .expose()
    .to_owned();
    (vault, root, limited)
}

/// Paths where the root token is safe to use (decoded, as the server sees them).
fn root_allowed(path: &[u8]) -> bool {
    let decoded: Vec<u8> = percent_encoding::percent_decode(path).collect();
    let lower = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    ![
        "seal", "audit", "notify", "raw", "step-down", "lockana", "shutdown", "config", "jwt", "oidc",
    ]
        .iter()
        .any(|w| lower.contains(w))
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let method = METHODS[data[0] as usize % METHODS.len()];
    let mut parts = data[2..].splitn(3, |b| *b == 0);
    let target = parts.next().unwrap_or_default();
    let headers = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    let mut uri = b"/v1/".to_vec();
    uri.extend_from_slice(target);
    // hyper only hands over what parses as a request target; so does this.
    let Ok(uri) = http::Uri::try_from(uri) else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(uri.clone());
    for line in headers.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        builder = builder.header(name, value);
    }

    STATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|s| s.runs >= RUNS_PER_VAULT) {
            let (vault, root, limited) = fresh();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime");
            let limits = Limits {
                max_request_size: 64 * 1024,
                ..Limits::default()
            };
            *cell = Some(State { vault, root, limited, runs: 0, rt, limits });
        }
        let state = cell.as_mut().expect("state");
        state.runs += 1;
        let token = match data[1] % 3 {
            0 => None,
            1 => Some(state.limited.clone()),
            _ if root_allowed(uri.path().as_bytes()) => Some(state.root.clone()),
            _ => Some(state.limited.clone()),
        };
        if let Some(t) = token {
            builder = builder.header("x-vault-token", t);
        }
        let Ok(req) = builder.body(Full::new(Bytes::copy_from_slice(body))) else {
            return;
        };
        let resp = state
            .rt
            .block_on(lockana_server::respond(state.vault.clone(), &state.limits, req));
        assert_ne!(
            resp.status(),
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {uri} answered 500"
        );
    });
});
