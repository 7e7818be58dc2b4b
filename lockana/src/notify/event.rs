//! What happened: an event, its short message, and its JSON form (outbox, webhooks).
//! An event never carries a secret value or a token.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::Connection;
use crate::clock::{parse_rfc3339, rfc3339};

/// The kinds of event Lockana notifies about. Names (`as_str`) are what routes list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum EventKind {
    /// A project's environment was fetched.
    ProjectEnvFetched,
    /// A project TOTP login succeeded.
    ProjectLoginSucceeded,
    /// A project TOTP login failed.
    ProjectLoginFailed,
    /// A project locked further logins after failures.
    ProjectLockedOut,
    /// A login through an auth method failed.
    LoginFailed {
        /// `userpass`, `approle`, ...
        method: String,
    },
    /// A user was locked out after failed logins.
    UserLockedOut,
    /// A root token was used.
    RootTokenUsed,
    /// The vault was sealed.
    Sealed,
    /// The vault was unsealed.
    Unsealed,
    /// A write under a watched path.
    WatchedPathWritten,
    /// A delete under a watched path.
    WatchedPathDeleted,
    /// A quorum of unseal key holders minted a new root token (`sys/generate-root`).
    RootTokenGenerated,
    /// The unseal key shares were replaced (`sys/rekey`).
    UnsealKeysRekeyed,
    /// Stored data failed an integrity check (the outcome names the storage key).
    IntegrityFailure,
}

/// Every kind name, for route validation and docs.
pub(crate) const KIND_NAMES: &[&str] = &[
    "project_env_fetched",
    "project_login_succeeded",
    "project_login_failed",
    "project_locked_out",
    "login_failed",
    "user_locked_out",
    "root_token_used",
    "sealed",
    "unsealed",
    "watched_path_written",
    "watched_path_deleted",
    "root_token_generated",
    "unseal_keys_rekeyed",
    "integrity_failure",
];

impl EventKind {
    /// The name routes and payloads use.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            EventKind::ProjectEnvFetched => "project_env_fetched",
            EventKind::ProjectLoginSucceeded => "project_login_succeeded",
            EventKind::ProjectLoginFailed => "project_login_failed",
            EventKind::ProjectLockedOut => "project_locked_out",
            EventKind::LoginFailed { .. } => "login_failed",
            EventKind::UserLockedOut => "user_locked_out",
            EventKind::RootTokenUsed => "root_token_used",
            EventKind::Sealed => "sealed",
            EventKind::Unsealed => "unsealed",
            EventKind::WatchedPathWritten => "watched_path_written",
            EventKind::WatchedPathDeleted => "watched_path_deleted",
            EventKind::RootTokenGenerated => "root_token_generated",
            EventKind::UnsealKeysRekeyed => "unseal_keys_rekeyed",
            EventKind::IntegrityFailure => "integrity_failure",
        }
    }

    fn from_parts(name: &str, method: Option<&str>) -> Option<EventKind> {
        Some(match name {
            "project_env_fetched" => EventKind::ProjectEnvFetched,
            "project_login_succeeded" => EventKind::ProjectLoginSucceeded,
            "project_login_failed" => EventKind::ProjectLoginFailed,
            "project_locked_out" => EventKind::ProjectLockedOut,
            "login_failed" => EventKind::LoginFailed {
                method: method.unwrap_or("").to_owned(),
            },
            "user_locked_out" => EventKind::UserLockedOut,
            "root_token_used" => EventKind::RootTokenUsed,
            "sealed" => EventKind::Sealed,
            "unsealed" => EventKind::Unsealed,
            "watched_path_written" => EventKind::WatchedPathWritten,
            "watched_path_deleted" => EventKind::WatchedPathDeleted,
            "root_token_generated" => EventKind::RootTokenGenerated,
            "unseal_keys_rekeyed" => EventKind::UnsealKeysRekeyed,
            "integrity_failure" => EventKind::IntegrityFailure,
            _ => return None,
        })
    }

    /// Whether the event reports something going right.
    fn success(&self) -> bool {
        matches!(
            self,
            EventKind::ProjectEnvFetched
                | EventKind::ProjectLoginSucceeded
                | EventKind::Unsealed
                | EventKind::WatchedPathWritten
                | EventKind::WatchedPathDeleted
        )
    }

    fn icon(&self) -> &'static str {
        match self {
            EventKind::ProjectEnvFetched | EventKind::ProjectLoginSucceeded => "✅",
            EventKind::ProjectLoginFailed | EventKind::LoginFailed { .. } => "❌",
            EventKind::ProjectLockedOut | EventKind::UserLockedOut | EventKind::Sealed => "🔒",
            EventKind::Unsealed => "🔓",
            EventKind::RootTokenUsed | EventKind::RootTokenGenerated => "⚠️",
            EventKind::UnsealKeysRekeyed => "🔑",
            EventKind::WatchedPathWritten => "✏️",
            EventKind::WatchedPathDeleted => "🗑️",
            EventKind::IntegrityFailure => "🚨",
        }
    }

    fn default_outcome(&self) -> String {
        match self {
            EventKind::ProjectEnvFetched => "environment fetched".into(),
            EventKind::ProjectLoginSucceeded => "TOTP login succeeded".into(),
            EventKind::ProjectLoginFailed => "TOTP login failed".into(),
            EventKind::ProjectLockedOut => "locked out after failed logins".into(),
            EventKind::LoginFailed { method } if method.is_empty() => "login failed".into(),
            EventKind::LoginFailed { method } => format!("{method} login failed"),
            EventKind::UserLockedOut => "user locked out after failed logins".into(),
            EventKind::RootTokenUsed => "root token used".into(),
            EventKind::Sealed => "vault sealed".into(),
            EventKind::Unsealed => "vault unsealed".into(),
            EventKind::WatchedPathWritten => "written".into(),
            EventKind::WatchedPathDeleted => "deleted".into(),
            EventKind::RootTokenGenerated => {
                "new root token generated with unseal key shares".into()
            }
            EventKind::UnsealKeysRekeyed => "unseal key shares replaced (rekey)".into(),
            EventKind::IntegrityFailure => "storage integrity failure".into(),
        }
    }
}

/// Something to tell the owners about. Build with [`Event::new`] and the setters,
/// then hand it to `Core::emit`. Never put a secret value or a token in it.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Unique id (UUID v4): receivers dedupe on it (delivery is at-least-once).
    pub id: String,
    pub kind: EventKind,
    pub project: Option<String>,
    pub path: Option<String>,
    /// A short, value-free description ("wrong TOTP code").
    pub outcome: Option<String>,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    pub time: SystemTime,
}

/// Keeps user-controlled text short and on one line.
fn clean(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > max {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    } else {
        s
    }
}

#[cfg_attr(not(test), allow(dead_code))] // setters are for the callers that arrive with projects and logins
impl Event {
    /// A new event of `kind` at `time` with a fresh id.
    pub(crate) fn new(kind: EventKind, time: SystemTime) -> Event {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            project: None,
            path: None,
            outcome: None,
            remote_addr: None,
            user_agent: None,
            time,
        }
    }

    /// The project concerned.
    pub(crate) fn project(mut self, project: impl Into<String>) -> Event {
        self.project = Some(project.into());
        self
    }

    /// The request path concerned (paths are not secret; Vault audits them clear).
    pub(crate) fn path(mut self, path: impl Into<String>) -> Event {
        self.path = Some(path.into());
        self
    }

    /// A short outcome ("wrong TOTP code"); never a value from the request.
    pub(crate) fn outcome(mut self, outcome: impl Into<String>) -> Event {
        self.outcome = Some(outcome.into());
        self
    }

    /// Who was asking.
    pub(crate) fn connection(mut self, c: &Connection) -> Event {
        self.remote_addr = c.remote_addr.map(|a| a.ip().to_string());
        self.user_agent = c.user_agent.as_deref().map(|u| clean(u, 80));
        self
    }

    /// The one-line message: `❌ billing: wrong TOTP code from 203.0.113.7 (curl/8.5) at 12:03:11 UTC`.
    pub(crate) fn text(&self) -> String {
        let subject = self
            .project
            .as_deref()
            .or(self.path.as_deref())
            .map_or_else(|| "lockana".to_owned(), |s| clean(s, 80));
        let outcome = self
            .outcome
            .as_deref()
            .map_or_else(|| self.kind.default_outcome(), |o| clean(o, 120));
        let mut t = format!("{} {subject}: {outcome}", self.kind.icon());
        if let Some(ip) = &self.remote_addr {
            t.push_str(" from ");
            t.push_str(ip);
        }
        if let Some(ua) = &self.user_agent {
            t.push_str(&format!(" ({ua})"));
        }
        let stamp = rfc3339(self.time);
        if let Some(hms) = stamp.get(11..19) {
            t.push_str(&format!(" at {hms} UTC"));
        }
        t
    }

    /// The JSON a webhook receives and the outbox stores.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("kind".into(), json!(self.kind.as_str()));
        if let EventKind::LoginFailed { method } = &self.kind {
            m.insert("method".into(), json!(method));
        }
        m.insert("success".into(), json!(self.kind.success()));
        m.insert("project".into(), json!(self.project));
        m.insert("path".into(), json!(self.path));
        m.insert("outcome".into(), json!(self.outcome));
        m.insert("remote_addr".into(), json!(self.remote_addr));
        m.insert("user_agent".into(), json!(self.user_agent));
        m.insert("time".into(), json!(rfc3339(self.time)));
        m.insert("text".into(), json!(self.text()));
        Value::Object(m)
    }

    /// Reads back what [`Event::to_json`] wrote.
    pub(crate) fn from_json(v: &Value) -> Option<Event> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Event {
            id: s("id")?,
            kind: EventKind::from_parts(
                v.get("kind")?.as_str()?,
                v.get("method").and_then(Value::as_str),
            )?,
            project: s("project"),
            path: s("path"),
            outcome: s("outcome"),
            remote_addr: s("remote_addr"),
            user_agent: s("user_agent"),
            time: parse_rfc3339(&s("time")?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn message_is_short_and_readable() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(12 * 3600 + 3 * 60 + 11);
        let e = Event::new(EventKind::ProjectLoginFailed, t)
            .project("billing")
            .outcome("wrong TOTP code")
            .connection(&Connection {
                remote_addr: Some("203.0.113.7:5555".parse().expect("addr")),
                user_agent: Some("curl/8.5".into()),
            });
        assert_eq!(
            e.text(),
            "❌ billing: wrong TOTP code from 203.0.113.7 (curl/8.5) at 12:03:11 UTC"
        );
        let back = Event::from_json(&e.to_json()).expect("round trip");
        assert_eq!(back.text(), e.text());
        assert_eq!(back.id, e.id);
        let lf = Event::new(
            EventKind::LoginFailed {
                method: "userpass".into(),
            },
            t,
        );
        assert_eq!(Event::from_json(&lf.to_json()).expect("rt").kind, lf.kind);
        assert_eq!(
            lf.text(),
            "❌ lockana: userpass login failed at 12:03:11 UTC"
        );
        for k in KIND_NAMES {
            assert!(EventKind::from_parts(k, None).is_some(), "{k}");
        }
    }

    #[test]
    fn control_characters_in_user_agent_stay_on_one_line() {
        let e = Event::new(EventKind::Sealed, SystemTime::UNIX_EPOCH).connection(&Connection {
            remote_addr: None,
            user_agent: Some("evil\nInjected: line".into()),
        });
        assert!(!e.text().contains('\n'));
    }
}
