//! A small blocking HTTP client for the operator commands (ureq).

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::ClientArgs;

/// Talks to a Lockana (or Vault) server's HTTP API.
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// A non-2xx answer, printed like the vault CLI does.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) method: &'static str,
    pub(crate) url: String,
    pub(crate) status: u16,
    pub(crate) errors: Vec<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Error making API request.\n\nURL: {} {}\nCode: {}.",
            self.method, self.url, self.status
        )?;
        if !self.errors.is_empty() {
            f.write_str(" Errors:\n")?;
            for e in &self.errors {
                write!(f, "\n* {e}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl Client {
    pub(crate) fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let base = args.address.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "the address {base:?} must start with http:// or https:// (set VAULT_ADDR or --address)"
            );
        }
        let agent = lockana_server::api_agent(
            args.ca_cert.as_deref(),
            args.tls_skip_verify,
            Duration::from_secs(60),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(Client {
            agent,
            base,
            token: args.token.clone().filter(|t| !t.is_empty()),
        })
    }

    /// Sends a request to `/v1/<path>`; returns the status and the JSON body (if any),
    /// or an [`ApiError`] for non-2xx answers.
    pub(crate) fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Option<Value>)> {
        let (url, status, text) = self.send(method, path, &[], body, true)?;
        let json =
            if text.trim().is_empty() {
                None
            } else {
                Some(serde_json::from_str::<Value>(&text).with_context(|| {
                    format!("the answer from {url} (HTTP {status}) is not JSON")
                })?)
            };
        if !(200..300).contains(&status) {
            return Err(api_error(method, url, status, json.as_ref()));
        }
        Ok((status, json))
    }

    /// A request whose answer may be text rather than JSON (a project's dotenv),
    /// with extra headers and, if `send_token` is false, without the token (a TOTP
    /// code is the credential). Returns the body; non-2xx answers are an [`ApiError`].
    pub(crate) fn call_text(
        &self,
        method: &'static str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        send_token: bool,
    ) -> anyhow::Result<String> {
        let (url, status, text) = self.send(method, path_and_query, headers, None, send_token)?;
        if !(200..300).contains(&status) {
            let json = serde_json::from_str::<Value>(&text).ok();
            return Err(api_error(method, url, status, json.as_ref()));
        }
        Ok(text)
    }

    /// GETs `/v1/<path>` and copies the answer's bytes into `out` as they arrive,
    /// calling `progress(bytes so far)`; no time limit (a snapshot of a large vault
    /// takes a while). Non-2xx answers are an [`ApiError`].
    pub(crate) fn download(
        &self,
        path: &str,
        out: &mut dyn std::io::Write,
        progress: &mut dyn FnMut(u64),
    ) -> anyhow::Result<u64> {
        let (url, req) = self.raw_request("GET", path, Vec::new())?;
        let resp = self.run_unlimited(req, &url)?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut reader = body.as_reader();
        if !(200..300).contains(&status) {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut reader, &mut text)
                .with_context(|| format!("reading the answer from {url}"))?;
            let json = serde_json::from_str::<Value>(&text).ok();
            return Err(api_error("GET", url, status, json.as_ref()));
        }
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf)
                .with_context(|| format!("reading the answer from {url}"))?;
            if n == 0 {
                return Ok(total);
            }
            out.write_all(&buf[..n]).context("writing the snapshot")?;
            total += n as u64;
            progress(total);
        }
    }

    /// POSTs `body` as the raw body of `/v1/<path>` (no time limit), calling
    /// `progress(sent, total)` as it goes. Non-2xx answers are an [`ApiError`].
    pub(crate) fn upload(
        &self,
        path: &str,
        body: Vec<u8>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> anyhow::Result<u16> {
        let total = body.len() as u64;
        let mut reader = Progress {
            inner: std::io::Cursor::new(body),
            sent: 0,
            total,
            progress,
        };
        let (url, req) = self.raw_request("POST", path, ())?;
        let (parts, ()) = req.into_parts();
        let mut req =
            ureq::http::Request::from_parts(parts, ureq::SendBody::from_reader(&mut reader));
        req.headers_mut()
            .insert("Content-Length", ureq::http::HeaderValue::from(total));
        let resp = self.run_unlimited(req, &url)?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .with_context(|| format!("reading the answer from {url}"))?;
        if !(200..300).contains(&status) {
            let json = serde_json::from_str::<Value>(&text).ok();
            return Err(api_error("POST", url, status, json.as_ref()));
        }
        Ok(status)
    }

    /// A request to `/v1/<path>` with the token and `X-Vault-Request`.
    fn raw_request<B>(
        &self,
        method: &'static str,
        path: &str,
        body: B,
    ) -> anyhow::Result<(String, ureq::http::Request<B>)> {
        let url = format!("{}/v1/{path}", self.base);
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("X-Vault-Request", "true");
        if let Some(token) = &self.token {
            req = req.header("X-Vault-Token", token);
        }
        Ok((url, req.body(body).context("building the request")?))
    }

    fn run_unlimited<B: ureq::AsSendBody>(
        &self,
        req: ureq::http::Request<B>,
        url: &str,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let req = self
            .agent
            .configure_request(req)
            .timeout_global(None)
            .build();
        self.agent
            .run(req)
            .with_context(|| format!("cannot reach {url}"))
    }

    /// Sends one request to `/v1/<path>`; returns the URL, the status and the body.
    fn send(
        &self,
        method: &'static str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
        send_token: bool,
    ) -> anyhow::Result<(String, u16, String)> {
        let url = format!("{}/v1/{path}", self.base);
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("X-Vault-Request", "true");
        if let (true, Some(token)) = (send_token, &self.token) {
            req = req.header("X-Vault-Token", token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let bytes = match body {
            Some(v) => {
                req = req.header("Content-Type", "application/json");
                serde_json::to_vec(v)?
            }
            None => Vec::new(),
        };
        let req = req.body(bytes).context("building the request")?;
        let resp = self
            .agent
            .run(req)
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .with_context(|| format!("reading the answer from {url}"))?;
        Ok((url, status, text))
    }
}

/// A reader that reports how much of it was read.
struct Progress<'a, R> {
    inner: R,
    sent: u64,
    total: u64,
    progress: &'a mut dyn FnMut(u64, u64),
}

impl<R: std::io::Read> std::io::Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        (self.progress)(self.sent, self.total);
        Ok(n)
    }
}

/// A non-2xx answer as an [`ApiError`], with the messages of Vault's error body.
fn api_error(
    method: &'static str,
    url: String,
    status: u16,
    body: Option<&Value>,
) -> anyhow::Error {
    ApiError {
        method,
        url,
        status,
        errors: error_messages(body),
    }
    .into()
}

/// The messages of Vault's `{"errors": [...]}` body, if the answer has one.
fn error_messages(body: Option<&Value>) -> Vec<String> {
    body.and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
