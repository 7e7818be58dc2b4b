//! Notification channels (Telegram, webhook) and routes, and delivery.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::event::{Event, KIND_NAMES};
use crate::{Error, Result};

/// Time one delivery attempt may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where messages go. No `Debug`: it holds a bot token or a signing secret.
pub(crate) enum Channel {
    Telegram {
        bot_token: Zeroizing<String>,
        chat_id: String,
        api_url: Option<String>,
    },
    Webhook {
        url: Zeroizing<String>,
        secret: Zeroizing<String>,
    },
}

/// Channel and route names: short, path-safe.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(Error::invalid(
            "names are 1-64 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

fn req_str(d: &Map<String, Value>, k: &str) -> Result<String> {
    match d.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(Error::invalid(format!("'{k}' is required"))),
    }
}

fn opt_str(d: &Map<String, Value>, k: &str) -> Result<Option<String>> {
    match d.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::invalid(format!("'{k}' must be a string"))),
    }
}

fn check_url(k: &str, u: &str) -> Result<()> {
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        return Err(Error::invalid(format!("'{k}' must be an http(s) URL")));
    }
    Ok(())
}

/// `scheme://host` of a URL: the rest (paths of Slack-style webhooks) can be a secret.
fn url_origin(u: &str) -> String {
    let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("{scheme}://{host}")
}

impl Channel {
    /// Parses `sys/lockana/notify/channels/<name>` (or a config-file block).
    pub(crate) fn parse(d: &Map<String, Value>) -> Result<Channel> {
        match d.get("type").and_then(Value::as_str) {
            Some("telegram") => {
                if cfg!(not(feature = "telegram")) {
                    return Err(Error::invalid(
                        "this build of Lockana has no Telegram support (cargo feature `telegram`)",
                    ));
                }
                let api_url = opt_str(d, "api_url")?;
                if let Some(u) = &api_url {
                    check_url("api_url", u)?;
                }
                Ok(Channel::Telegram {
                    bot_token: Zeroizing::new(req_str(d, "bot_token")?),
                    chat_id: req_str(d, "chat_id")?,
                    api_url,
                })
            }
            Some("webhook") => {
                let url = req_str(d, "url")?;
                check_url("url", &url)?;
                let secret = req_str(d, "secret")?;
                if secret.len() < 16 {
                    return Err(Error::invalid(
                        "'secret' must be at least 16 characters (it signs every payload)",
                    ));
                }
                Ok(Channel::Webhook {
                    url: Zeroizing::new(url),
                    secret: Zeroizing::new(secret),
                })
            }
            _ => Err(Error::invalid("'type' must be \"telegram\" or \"webhook\"")),
        }
    }

    /// What storage keeps (behind the barrier), secrets included.
    pub(crate) fn to_stored(&self) -> Zeroizing<Vec<u8>> {
        let v = match self {
            Channel::Telegram {
                bot_token,
                chat_id,
                api_url,
            } => {
                json!({"type": "telegram", "bot_token": bot_token.as_str(), "chat_id": chat_id, "api_url": api_url})
            }
            Channel::Webhook { url, secret } => {
                json!({"type": "webhook", "url": url.as_str(), "secret": secret.as_str()})
            }
        };
        Zeroizing::new(v.to_string().into_bytes())
    }

    /// What `GET` answers: never the bot token, the secret or a webhook URL's path.
    pub(crate) fn to_public(&self) -> Map<String, Value> {
        let v = match self {
            Channel::Telegram {
                chat_id, api_url, ..
            } => {
                json!({"type": "telegram", "chat_id": chat_id, "api_url": api_url.as_deref().map(url_origin), "bot_token_set": true})
            }
            Channel::Webhook { url, .. } => {
                json!({"type": "webhook", "url": url_origin(url), "secret_set": true})
            }
        };
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// Delivers one event. The error text never holds the bot token or the URL.
    pub(crate) fn deliver(
        &self,
        event: &Event,
        rt: &mut Runtime,
    ) -> std::result::Result<(), String> {
        match self {
            Channel::Webhook { url, secret } => webhook(url, secret, event),
            Channel::Telegram {
                bot_token,
                chat_id,
                api_url,
            } => telegram(rt, bot_token, chat_id, api_url.as_deref(), &event.text()),
        }
    }
}

/// `sha256=<hex>` of the body under the channel's secret, as GitHub signs webhooks.
pub(crate) fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn webhook(url: &str, secret: &str, event: &Event) -> std::result::Result<(), String> {
    let body = event.to_json().to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(DELIVERY_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("lockana/", env!("CARGO_PKG_VERSION")))
        .header("X-Lockana-Event", event.kind.as_str())
        .header("X-Lockana-Delivery", &event.id)
        .header(
            "X-Lockana-Signature",
            &signature(secret.as_bytes(), body.as_bytes()),
        )
        .send(body.as_bytes())
        // ureq's error text can name the URL; keep only its kind.
        .map_err(|e| format!("webhook transport error ({})", error_kind(&e)))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("webhook answered HTTP {status}"))
    }
}

fn error_kind(e: &ureq::Error) -> &'static str {
    match e {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::Io(_) => "connection failed",
        ureq::Error::HostNotFound => "host not found",
        ureq::Error::ConnectionFailed => "connection failed",
        ureq::Error::Tls(_) => "TLS",
        _ => "other",
    }
}

/// The Telegram client's async runtime, created on first use in the worker thread.
#[derive(Default)]
pub(crate) struct Runtime {
    #[cfg(feature = "telegram")]
    rt: Option<tokio::runtime::Runtime>,
}

#[cfg(feature = "telegram")]
fn telegram(
    rt: &mut Runtime,
    token: &str,
    chat_id: &str,
    api_url: Option<&str>,
    text: &str,
) -> std::result::Result<(), String> {
    use teloxide::payloads::SendMessageSetters as _;
    use teloxide::requests::{Request as _, Requester as _};
    use teloxide::types::{ChatId, Recipient};

    if rt.rt.is_none() {
        rt.rt = Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|_| "cannot start the Telegram client runtime".to_owned())?,
        );
    }
    let runtime = rt.rt.as_ref().ok_or("no runtime")?;
    let recipient = match chat_id.parse::<i64>() {
        Ok(id) => Recipient::Id(ChatId(id)),
        Err(_) => Recipient::ChannelUsername(chat_id.to_owned()),
    };
    let mut bot = teloxide::Bot::new(token);
    if let Some(u) = api_url {
        let u = url::Url::parse(u).map_err(|_| "api_url is not a valid URL".to_owned())?;
        bot = bot.set_api_url(u);
    }
    let send = bot
        .send_message(recipient, text)
        .disable_notification(false)
        .send();
    let result = runtime.block_on(async { tokio::time::timeout(DELIVERY_TIMEOUT, send).await });
    // teloxide's errors can carry the request URL, which holds the bot token.
    let redact = |s: String| s.replace(token, "<bot-token>");
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(redact(format!("telegram: {e}"))),
        Err(_) => Err("telegram: timed out".into()),
    }
}

#[cfg(not(feature = "telegram"))]
fn telegram(
    _rt: &mut Runtime,
    _token: &str,
    _chat_id: &str,
    _api_url: Option<&str>,
    _text: &str,
) -> std::result::Result<(), String> {
    Err("this build has no Telegram support".into())
}

/// Which events go to which channels.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Route {
    pub events: Vec<String>,
    #[serde(default)]
    pub projects: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    pub channels: Vec<String>,
}

fn str_list(d: &Map<String, Value>, k: &str) -> Result<Vec<String>> {
    match d.get(k) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::invalid(format!("'{k}' must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(Error::invalid(format!("'{k}' must be a list of strings"))),
    }
}

/// `pattern` matches `s` exactly, or as a prefix when it ends in `*`.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => s.starts_with(prefix),
        None => pattern == s,
    }
}

impl Route {
    pub(crate) fn parse(d: &Map<String, Value>) -> Result<Route> {
        let r = Route {
            events: str_list(d, "events")?,
            projects: str_list(d, "projects")?,
            paths: str_list(d, "paths")?,
            channels: str_list(d, "channels")?,
        };
        if r.events.is_empty() {
            return Err(Error::invalid(format!(
                "'events' is required: \"*\" or some of {}",
                KIND_NAMES.join(", ")
            )));
        }
        for e in &r.events {
            if e != "*" && !KIND_NAMES.contains(&e.as_str()) {
                return Err(Error::invalid(format!(
                    "unknown event name in 'events': use \"*\" or some of {}",
                    KIND_NAMES.join(", ")
                )));
            }
        }
        if r.channels.is_empty() {
            return Err(Error::invalid("'channels' is required"));
        }
        for c in &r.channels {
            check_name(c)?;
        }
        Ok(r)
    }

    pub(crate) fn matches(&self, event: &Event) -> bool {
        let kind = event.kind.as_str();
        self.events.iter().any(|e| e == "*" || e == kind)
            && (self.projects.is_empty()
                || event
                    .project
                    .as_deref()
                    .is_some_and(|p| self.projects.iter().any(|g| glob(g, p))))
            && (self.paths.is_empty()
                || event
                    .path
                    .as_deref()
                    .is_some_and(|p| self.paths.iter().any(|g| glob(g, p))))
    }

    pub(crate) fn to_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::EventKind;
    use std::time::SystemTime;

    #[test]
    fn routes_match_kind_project_and_path_globs() {
        let r = Route::parse(
            json!({"events": ["watched_path_written"], "paths": ["secret/data/prod/*"], "channels": ["ops"]})
                .as_object()
                .expect("obj"),
        )
        .expect("route");
        let ev = |p: &str| Event::new(EventKind::WatchedPathWritten, SystemTime::now()).path(p);
        assert!(r.matches(&ev("secret/data/prod/db")));
        assert!(!r.matches(&ev("secret/data/dev/db")));
        assert!(!r.matches(&Event::new(EventKind::Sealed, SystemTime::now())));
        let all = Route::parse(
            json!({"events": "*", "projects": ["billing"], "channels": "ops"})
                .as_object()
                .expect("obj"),
        )
        .expect("route");
        assert!(all.matches(
            &Event::new(EventKind::ProjectLoginFailed, SystemTime::now()).project("billing")
        ));
        assert!(!all.matches(
            &Event::new(EventKind::ProjectLoginFailed, SystemTime::now()).project("other")
        ));
        assert!(
            Route::parse(
                json!({"events": ["nope"], "channels": ["ops"]})
                    .as_object()
                    .expect("obj")
            )
            .is_err()
        );
    }

    #[test]
    fn public_view_hides_secrets_and_webhook_paths() {
        let c = Channel::parse(
            json!({"type": "webhook", "url": "https://user:pw@hooks.example.com/T000/B000/XXXX?x=1", "secret": "0123456789abcdef-secret"})
                .as_object()
                .expect("obj"),
        )
        .expect("channel");
        let p = Value::Object(c.to_public()).to_string();
        assert!(
            !p.contains("XXXX") && !p.contains("pw") && !p.contains("secret\""),
            "{p}"
        );
        assert!(p.contains("https://hooks.example.com"));
        let sig = signature(b"k", b"body");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(
            Channel::parse(
                json!({"type": "webhook", "url": "https://x", "secret": "short"})
                    .as_object()
                    .expect("obj")
            )
            .is_err()
        );
    }
}
