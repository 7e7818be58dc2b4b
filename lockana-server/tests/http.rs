//! End-to-end: a dev-mode server on 127.0.0.1:0, driven over real HTTP with ureq.

use std::net::SocketAddr;
use std::time::Duration;

use lockana::Vault;
use lockana_server::{Limits, Server, ServerOptions};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const ROOT: &str = "root";

/// A running server; dropping it shuts it down (and waits for the drain).
struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(vault: Vault, limits: Limits) -> TestServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let options = ServerOptions {
                    address: "127.0.0.1:0".parse().expect("addr"),
                    tls: None,
                    limits,
                };
                let server = Server::bind(vault, options).await.expect("bind");
                addr_tx.send(server.local_addr()).expect("send addr");
                server
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("server run");
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        TestServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn dev() -> TestServer {
        let (vault, _creds) = Vault::dev(Some(ROOT.into())).expect("dev vault");
        TestServer::start(vault, Limits::default())
    }

    /// Sends a request; returns status and JSON body (`Null` when empty).
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let headers: Vec<(&str, &str)> = token.map(|t| ("X-Vault-Token", t)).into_iter().collect();
        self.call_with_headers(method, path, &headers, body)
    }

    /// Sends a request with these headers; returns status and JSON body.
    fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(body.unwrap_or_default()).expect("request");
        let resp = agent.run(req).expect("http call");
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// Sends a bodyless request over a bare socket: ureq refuses Vault's `LIST` verb.
    fn raw(&self, method: &str, path: &str, token: &str) -> (u16, Value) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nX-Vault-Token: {token}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        let (head, body) = answer.split_once("\r\n\r\n").expect("http answer");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Sends a request's head announcing `content_length` bytes and only `sent` of
    /// them, then waits (at most 10 s) for an answer without sending the rest.
    fn partial(
        &self,
        path: &str,
        token: Option<&str>,
        content_length: usize,
        sent: &[u8],
    ) -> (u16, Value) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let token = token
            .map(|t| format!("X-Vault-Token: {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "PUT {path} HTTP/1.1\r\nHost: {}\r\n{token}Content-Length: {content_length}\r\n\r\n",
            self.addr
        )
        .expect("write head");
        stream.write_all(sent).expect("write body");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the head and a Content-Length body are in; the connection stays
        // open (the client has not finished its body).
        loop {
            let n = stream
                .read(&mut buf)
                .expect("no answer before the body was complete");
            assert!(n > 0, "connection closed without an answer");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .expect("status");
                    return (status, serde_json::from_str(body).unwrap_or(Value::Null));
                }
            }
        }
    }

    fn json(&self, method: &str, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.call(
            method,
            path,
            token,
            Some(serde_json::to_vec(body).expect("json")),
        )
    }
}

impl TestServer {
    /// Signals shutdown and waits for `run` to drain and close the vault.
    fn stop(mut self) -> std::thread::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take().map_or(Ok(()), |t| t.join())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// --- Needs only the HTTP layer (passes against any vault, even a stub). ---

#[test]
fn paths_outside_v1_are_404_with_empty_errors() {
    let vault = Vault::open(lockana::StorageConfig::Memory).expect("open");
    let server = TestServer::start(vault, Limits::default());
    let (status, body) = server.call("GET", "/ui/", None, None);
    assert_eq!(status, 404);
    assert_eq!(body, json!({"errors": []}));
}

#[test]
fn traversal_paths_are_400_not_500() {
    let vault = Vault::open(lockana::StorageConfig::Memory).expect("open");
    let server = TestServer::start(vault, Limits::default());
    for path in [
        "/v1/secret/%2e%2e/sys/seal",
        "/v1/secret//x",
        "/v1/./sys/health",
    ] {
        let (status, body) = server.call("GET", path, Some(ROOT), None);
        assert_eq!(status, 400, "{path}");
        assert_eq!(body, json!({"errors": ["invalid path"]}), "{path}");
    }
}

#[test]
fn oversize_body_is_413() {
    let vault = Vault::open(lockana::StorageConfig::Memory).expect("open");
    let limits = Limits {
        max_request_size: 1024,
        ..Limits::default()
    };
    let server = TestServer::start(vault, limits);
    let big = json!({"data": {"blob": "x".repeat(4096)}});
    let (status, body) = server.json("PUT", "/v1/secret/data/big", Some(ROOT), &big);
    assert_eq!(status, 413);
    assert!(body["errors"][0].is_string(), "{body}");
}

#[test]
fn deep_json_is_400() {
    // A dev vault: a sealed one answers 503 without reading the body.
    let server = TestServer::dev();
    let deep = format!("{{\"data\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    let (status, body) = server.call(
        "PUT",
        "/v1/secret/data/deep",
        Some(ROOT),
        Some(deep.into_bytes()),
    );
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("nesting depth"),
        "{body}"
    );
}

#[test]
fn invalid_json_is_400_without_echo() {
    let server = TestServer::dev();
    let (status, body) = server.call(
        "PUT",
        "/v1/secret/data/x",
        Some(ROOT),
        Some(br#"{"password": "hunter2""#.to_vec()),
    );
    assert_eq!(status, 400);
    assert!(!body.to_string().contains("hunter2"));
}

#[test]
fn answers_carry_json_and_no_store_headers() {
    let vault = Vault::open(lockana::StorageConfig::Memory).expect("open");
    let server = TestServer::start(vault, Limits::default());
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let resp = agent
        .get(format!("http://{}/nope", server.addr))
        .call()
        .expect("call");
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["cache-control"], "no-store");
}

#[test]
fn shutdown_drains_and_returns() {
    let vault = Vault::open(lockana::StorageConfig::Memory).expect("open");
    let server = TestServer::start(vault, Limits::default());
    let addr = server.addr;
    let (status, _) = server.call("GET", "/nope", None, None);
    assert_eq!(status, 404);
    assert!(server.stop().is_ok(), "server thread panicked");
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "listener still accepting after shutdown"
    );
}

// --- Need the real library (dev mode, KV v2, tokens). ---

#[test]
fn dev_health_is_200() {
    let server = TestServer::dev();
    let (status, body) = server.call("GET", "/v1/sys/health", None, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["initialized"], true);
    assert_eq!(body["sealed"], false);
    let (status, _) = server.call("HEAD", "/v1/sys/health", None, None);
    assert_eq!(status, 200);
}

#[test]
fn dev_kv2_write_read_list() {
    let server = TestServer::dev();
    let (status, body) = server.json(
        "POST",
        "/v1/secret/data/app/db",
        Some(ROOT),
        &json!({"data": {"password": "s3cr3t"}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["version"], 1);

    let (status, body) = server.call("GET", "/v1/secret/data/app/db", Some(ROOT), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"]["password"], "s3cr3t");
    assert!(body["request_id"].is_string());

    let (status, body) = server.raw("LIST", "/v1/secret/metadata/app", ROOT);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"], json!(["db"]));

    let (status, body) = server.call("GET", "/v1/secret/metadata/?list=true", Some(ROOT), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"], json!(["app/"]));
}

#[test]
fn dev_missing_secret_is_404() {
    let server = TestServer::dev();
    let (status, _) = server.call("GET", "/v1/secret/data/nope", Some(ROOT), None);
    assert_eq!(status, 404);
}

#[test]
fn dev_without_token_is_403() {
    let server = TestServer::dev();
    let (status, body) = server.call("GET", "/v1/secret/data/x", None, None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body, json!({"errors": ["permission denied"]}));
    let (status, _) = server.call("GET", "/v1/secret/data/x", Some("wrong-token"), None);
    assert_eq!(status, 403);
}

#[test]
fn dev_bearer_token_is_accepted() {
    let server = TestServer::dev();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let resp = agent
        .get(format!("http://{}/v1/secret/data/nope", server.addr))
        .header("Authorization", format!("Bearer {ROOT}"))
        .call()
        .expect("call");
    // Past the token check: the secret simply does not exist.
    assert_eq!(resp.status().as_u16(), 404);
}

#[test]
fn over_the_rate_limit_is_429_before_anything_is_read() {
    let (vault, _creds) = Vault::dev(Some(ROOT.into())).expect("dev vault");
    let limits = Limits {
        rate_limit: lockana_server::RateLimit {
            per_second: 1.0,
            burst: 2.0,
            exempt_loopback: false,
        },
        ..Limits::default()
    };
    let s = TestServer::start(vault, limits);
    assert_eq!(s.call("GET", "/v1/sys/health", None, None).0, 200);
    assert_eq!(s.call("GET", "/v1/sys/health", None, None).0, 200);
    let (status, body) = s.call(
        "PUT",
        "/v1/secret/data/x",
        Some(ROOT),
        Some(b"{not json".to_vec()),
    );
    assert_eq!(status, 429, "{body}");
    assert_eq!(body, json!({"errors": ["rate limit quota exceeded"]}));
}

/// A body of `n` distinct keys, as JSON text.
fn many_keys(n: usize) -> String {
    let entries: Vec<String> = (0..n).map(|i| format!("\"k{i}\":1")).collect();
    format!("{{\"data\":{{{}}}}}", entries.join(","))
}

#[test]
fn write_without_a_valid_token_is_refused_before_its_body_is_read() {
    let server = TestServer::dev();
    // 32 MB announced, none sent: the answer cannot depend on the body.
    for token in [None, Some("not-a-token")] {
        let (status, body) = server.partial("/v1/secret/data/x", token, 32 * 1024 * 1024 - 1, b"");
        assert_eq!(status, 403, "{token:?}");
        assert_eq!(body, json!({"errors": ["permission denied"]}), "{token:?}");
    }
    // The same 403 as with the body sent whole.
    let (status, body) = server.call(
        "PUT",
        "/v1/secret/data/x",
        Some("not-a-token"),
        Some(many_keys(50_000).into_bytes()),
    );
    assert_eq!(status, 403);
    assert_eq!(body, json!({"errors": ["permission denied"]}));
}

#[test]
fn paths_whose_body_is_the_credential_still_read_it() {
    let server = TestServer::dev();
    let (status, _) = server.json(
        "POST",
        "/v1/sys/auth/userpass",
        Some(ROOT),
        &json!({"type": "userpass"}),
    );
    assert_eq!(status, 204);
    let (status, _) = server.json(
        "POST",
        "/v1/auth/userpass/users/bob",
        Some(ROOT),
        &json!({"password": "pw-bob-1234", "token_policies": "default"}),
    );
    assert_eq!(status, 204);
    let (status, body) = server.json(
        "POST",
        "/v1/auth/userpass/login/bob",
        None,
        &json!({"password": "pw-bob-1234"}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["auth"]["client_token"].is_string(), "{body}");

    let (status, body) = server.call_with_headers(
        "POST",
        "/v1/sys/wrapping/wrap",
        &[("X-Vault-Token", ROOT), ("X-Vault-Wrap-TTL", "5m")],
        Some(br#"{"k":"v"}"#.to_vec()),
    );
    assert_eq!(status, 200, "{body}");
    let wrapped = body["wrap_info"]["token"].as_str().expect("wrapping token");
    let (status, body) = server.json(
        "POST",
        "/v1/sys/wrapping/unwrap",
        None,
        &json!({ "token": wrapped }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["k"], "v");

    let (status, body) = server.json("PUT", "/v1/sys/unseal", None, &json!({"reset": true}));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn complex_body_is_refused_from_its_first_bytes_with_openbaos_message() {
    let server = TestServer::dev();
    // 2,000 keys sent of a body announced at 30 MB: refused without the rest.
    let head = many_keys(2_000);
    let head = &head.as_bytes()[..head.len() - 2];
    let (status, body) = server.partial("/v1/secret/data/x", Some(ROOT), 30_000_000, head);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errors": ["refused JSON input due to high complexity: exceeded maximum number of strings"]})
    );
}

#[test]
fn json_limits_are_enforced_each_with_its_message() {
    let limits = Limits {
        json: lockana_server::JsonLimits {
            max_depth: 10,
            max_string_length: 100,
            max_object_entries: 20,
            max_array_elements: 30,
            max_memory: 20_000,
            max_strings: 200,
        },
        ..Limits::default()
    };
    let (vault, _creds) = Vault::dev(Some(ROOT.into())).expect("dev vault");
    let server = TestServer::start(vault, limits);
    let refused = |body: String, reason: &str| {
        let (status, answer) = server.call(
            "PUT",
            "/v1/secret/data/x",
            Some(ROOT),
            Some(body.into_bytes()),
        );
        assert_eq!(status, 400, "{reason}: {answer}");
        assert_eq!(
            answer["errors"][0],
            format!("refused JSON input due to high complexity: {reason}"),
        );
    };
    let wrap = |inner: String| format!("{{\"data\":{{\"k\":{inner}}}}}");
    refused(
        wrap(format!("{}{}", "[".repeat(10), "]".repeat(10))),
        "exceeded maximum nesting depth",
    );
    refused(
        wrap(format!("\"{}\"", "x".repeat(101))),
        "exceeded maximum string value length",
    );
    refused(many_keys(21), "exceeded maximum number of object entries");
    refused(
        wrap(format!("[{}]", vec!["1"; 31].join(","))),
        "exceeded maximum number of array elements",
    );
    let arrays: Vec<String> = (0..29)
        .map(|_| format!("[{}]", vec!["1"; 30].join(",")))
        .collect();
    refused(
        wrap(format!("[{}]", arrays.join(","))),
        "exceeded maximum estimated memory limits",
    );
    let (status, body) = server.call(
        "PUT",
        "/v1/secret/data/x",
        Some(ROOT),
        Some(many_keys(20).into_bytes()),
    );
    assert_eq!(status, 200, "within every limit: {body}");
}

/// `GET` through [`lockana_server::respond`] (no socket): status, content type, body.
fn metrics_get(
    vault: &Vault,
    limits: &Limits,
    uri: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    use http_body_util::BodyExt;
    let mut req = http::Request::builder().method("GET").uri(uri);
    if let Some(t) = token {
        req = req.header("X-Vault-Token", t);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let resp = lockana_server::respond(vault.clone(), limits, req).await;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    })
}

#[test]
fn metrics_need_a_token_unless_the_listener_allows_unauthenticated_access() {
    let (vault, _) = Vault::dev(Some(ROOT.into())).expect("dev vault");
    let limits = Limits::default();
    let (status, _, _) = metrics_get(&vault, &limits, "/v1/sys/metrics", None);
    assert_eq!(status, 403);
    let (status, ct, body) = metrics_get(&vault, &limits, "/v1/sys/metrics", Some(ROOT));
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let v: Value = serde_json::from_str(&body).expect("json");
    for key in ["Timestamp", "Gauges", "Points", "Counters", "Samples"] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    let open = Limits {
        telemetry: lockana_server::Telemetry {
            unauthenticated_metrics_access: true,
            ..Default::default()
        },
        ..Limits::default()
    };
    let (status, _, _) = metrics_get(&vault, &open, "/v1/sys/metrics", None);
    assert_eq!(status, 200);
}

#[test]
fn prometheus_format_is_refused_as_vault_refuses_it_without_retention() {
    let (vault, _) = Vault::dev(Some(ROOT.into())).expect("dev vault");
    let (status, ct, body) = metrics_get(
        &vault,
        &Limits::default(),
        "/v1/sys/metrics?format=prometheus",
        Some(ROOT),
    );
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (400, "text/plain", "prometheus is not enabled")
    );
    let (status, ct, body) = metrics_get(
        &vault,
        &Limits::default(),
        "/v1/sys/metrics?format=xml",
        Some(ROOT),
    );
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (400, "text/plain", "metric response format \"xml\" unknown")
    );
    let on = Limits {
        telemetry: lockana_server::Telemetry::dev(),
        ..Limits::default()
    };
    let (status, ct, body) = metrics_get(&vault, &on, "/v1/sys/metrics?format=prometheus", None);
    assert_eq!(
        (status, ct.as_str()),
        (200, "text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        body.contains("# TYPE vault_core_handle_request histogram"),
        "{body}"
    );
    assert!(body.contains("vault_core_unsealed 1\n"), "{body}");
}

#[test]
fn sealed_vault_reports_itself_sealed_to_unauthenticated_scrapes() {
    let (vault, _) = Vault::dev(Some(ROOT.into())).expect("dev vault");
    vault.seal().expect("seal");
    let on = Limits {
        telemetry: lockana_server::Telemetry::dev(),
        ..Limits::default()
    };
    let (status, _, body) = metrics_get(&vault, &on, "/v1/sys/metrics?format=prometheus", None);
    assert_eq!(status, 200);
    assert!(body.contains("vault_core_unsealed 0\n"), "{body}");
    assert!(
        !body.contains("vault_token_count"),
        "token count read while sealed: {body}"
    );
    // With a token, a sealed vault answers as for every other path.
    let (status, _, _) = metrics_get(&vault, &Limits::default(), "/v1/sys/metrics", Some(ROOT));
    assert_eq!(status, 503);
}

/// A keep-alive connection idle for a minute is still served: only Vault's
/// `http_idle_timeout` (5 minutes) closes it. hyper's own header timer (30 s by default,
/// running while the connection waits for its next request) used to close it first, and
/// a client that reused it just then got no answer. On tokio's paused clock, which jumps
/// to the next timer whenever nothing else can run.
#[test]
fn idle_keep_alive_connection_outlives_a_minute() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (vault, _creds) = Vault::dev(Some(ROOT.into())).expect("dev vault");
        let options = ServerOptions {
            address: "127.0.0.1:0".parse().expect("addr"),
            tls: None,
            limits: Limits::default(),
        };
        let server = Server::bind(vault, options).await.expect("bind");
        let addr = server.local_addr();
        tokio::spawn(server.run(std::future::pending()));
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET /v1/sys/health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        for round in 0..2 {
            if round == 1 {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            conn.write_all(request.as_bytes()).await.expect("write");
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.expect("read");
            let head = String::from_utf8_lossy(&buf[..n]);
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "round {round}: the connection answered {head:?}"
            );
        }
    });
}

/// A server with these limits, and a raw connection to it (on the caller's runtime).
async fn raw_connection(limits: Limits) -> (tokio::net::TcpStream, SocketAddr) {
    let (vault, _creds) = Vault::dev(Some(ROOT.into())).expect("dev vault");
    let options = ServerOptions {
        address: "127.0.0.1:0".parse().expect("addr"),
        tls: None,
        limits,
    };
    let server = Server::bind(vault, options).await.expect("bind");
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    let conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    (conn, addr)
}

/// Reads one answer's head (status line and headers) and returns it.
async fn read_answer(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 8192];
    let n = conn.read(&mut buf).await.unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A real clock: a drain of a late body waits on the socket, and a paused clock would
/// jump past its deadline meanwhile.
fn real_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sends a request's head alone, reads the early answer (which must start with
/// `want`), sends the body late, waits `idle`, and returns the answer to a health
/// check sent next on the same connection.
fn late_body_then_health(
    limits: Limits,
    head: &str,
    body: &[u8],
    want: &str,
    idle: Duration,
) -> String {
    use tokio::io::AsyncWriteExt;
    real_runtime().block_on(async {
        let (mut conn, addr) = raw_connection(limits).await;
        let head = format!(
            "{head}\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.expect("write head");
        let answer = read_answer(&mut conn).await;
        assert!(answer.starts_with(want), "{answer:?}");
        assert!(!answer.contains("connection: close"), "{answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.write_all(body).await.expect("write body");
        tokio::time::sleep(idle).await;
        let health = format!("GET /v1/sys/health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        conn.write_all(health.as_bytes()).await.expect("write");
        read_answer(&mut conn).await
    })
}

/// A request refused before its body is read (here a PATCH with the wrong
/// Content-Type), whose body arrives after the answer: the connection stays usable.
/// urllib3 sends headers and body in two writes, so under load the server answered
/// first; the body was then dropped unread, hyper closed the connection without
/// saying so, and the client's next request on it got "Remote end closed connection
/// without response".
#[test]
fn connection_survives_a_body_that_arrives_after_an_early_answer() {
    let answer = late_body_then_health(
        Limits::default(),
        &format!("PATCH /v1/secret/data/x HTTP/1.1\r\nX-Vault-Token: {ROOT}"),
        br#"{"data":{"a":1}}"#,
        "HTTP/1.1 415",
        Duration::from_millis(50),
    );
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the next request on the connection got {answer:?}"
    );
}

/// The late bytes of a body refused unread do not start the header clock: the
/// connection then idles under `http_idle_timeout`, not `http_read_header_timeout`
/// (1 s here, so the test waits 2 s rather than Vault's 10 s).
#[test]
fn late_body_bytes_do_not_start_the_header_timeout() {
    let limits = Limits {
        read_header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    // No token: refused (403) without reading the body.
    let answer = late_body_then_health(
        limits,
        "POST /v1/secret/data/x HTTP/1.1",
        br#"{"value":"v"}"#,
        "HTTP/1.1 403",
        Duration::from_secs(2),
    );
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "after 2 s idle the connection answered {answer:?}"
    );
}

/// `http_write_timeout`: a client that asks for a large answer and stops reading is
/// let go once the deadline passes, rather than holding its connection (and the
/// answer's memory) until the idle timeout.
#[test]
fn client_that_stops_reading_is_cut_at_the_write_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    real_runtime().block_on(async {
        let limits = Limits {
            write_timeout: Duration::from_secs(1),
            ..Limits::default()
        };
        let (mut writer, addr) = raw_connection(limits).await;
        // Six strings of 1 MB: more than the socket buffers hold on both sides.
        let big = "x".repeat(1_000_000);
        let data: serde_json::Map<String, Value> =
            (0..6).map(|i| (format!("f{i}"), json!(big))).collect();
        let body = serde_json::to_vec(&json!({ "data": data })).expect("json");
        let head = format!(
            "POST /v1/secret/data/big HTTP/1.1\r\nHost: {addr}\r\nX-Vault-Token: {ROOT}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        writer.write_all(head.as_bytes()).await.expect("write");
        writer.write_all(&body).await.expect("write");
        let answer = read_answer(&mut writer).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");

        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let mut reader = socket.connect(addr).await.expect("connect");
        let get = format!(
            "GET /v1/secret/data/big HTTP/1.1\r\nHost: {addr}\r\nX-Vault-Token: {ROOT}\r\n\r\n"
        );
        reader.write_all(get.as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Now read: what the buffers held, then the end of a closed connection.
        let mut total = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => total += n,
                Err(_) => break false,
            }
        };
        assert!(closed, "the connection was still open after {total} bytes");
        assert!(
            total < 6_000_000,
            "the whole answer was written: {total} bytes"
        );
    });
}
