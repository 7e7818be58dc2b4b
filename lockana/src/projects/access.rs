//! Access to a project by one-time code: normalization, lockout, a constant-time
//! check, the replay guard (the last accepted step, stored behind the barrier), and
//! an access event for every attempt.
//!
//! Lockout: wrong codes count per project and per client address; after
//! [`crate::auth::lockout::THRESHOLD`] failures (within 15 minutes of each other)
//! every attempt is refused for 15 minutes, with the answer a wrong code gets. A
//! correct code sent while locked out is not consumed. The counters are the auth
//! methods' (stored behind the barrier: a seal or restart keeps them), and so is the
//! last accepted step.

use std::time::SystemTime;

use super::{DIGITS, ProjectRecord, SKEW};
use crate::notify::{Event, EventKind};
use crate::totp::code;
use crate::vault::Core;
use crate::{Connection, Result};

/// Lockout counter namespaces (shown by `sys/locked-users` under these names).
pub(crate) const LOCKOUT_PROJECT: &str = "lockana-project";
pub(crate) const LOCKOUT_ADDRESS: &str = "lockana-project-address";

/// Why an attempt failed. Callers answer all of them alike (except, for logins, a
/// replay), so the reason only goes to events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    UnknownProject,
    Malformed,
    Wrong,
    Replayed,
    LockedOut,
}

impl Failure {
    fn outcome(self) -> &'static str {
        match self {
            Failure::UnknownProject => "unknown project",
            Failure::Malformed => "malformed TOTP code",
            Failure::Wrong => "wrong TOTP code",
            Failure::Replayed => "TOTP code already used",
            Failure::LockedOut => "refused: locked out after failed attempts",
        }
    }
}

/// What the code is for (names the event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Login,
    Env,
}

/// Checks `code` for `project`. On success the code's step is stored as used and the
/// project returned. Every attempt emits an event (never with the code). The caller
/// holds the project's lock (`core.locks` on its config key), which also serializes
/// the replay guard's read-modify-write.
pub(crate) fn verify(
    core: &Core,
    project: &str,
    code: Option<&str>,
    connection: &Connection,
    path: &str,
    purpose: Purpose,
) -> Result<std::result::Result<ProjectRecord, Failure>> {
    let now = core.now();
    let address = connection.remote_addr.map(|a| a.ip().to_string());
    let known_name = super::valid_name(project);
    let locked = core.lockouts.is_locked(LOCKOUT_PROJECT, project, now)
        || address
            .as_deref()
            .is_some_and(|a| core.lockouts.is_locked(LOCKOUT_ADDRESS, a, now));
    let record = if known_name {
        super::load(core, project)?
    } else {
        None
    };
    let normalized = code.and_then(|c| code::normalize(c, DIGITS));
    let unix = unix_secs(now);
    // The same work whether or not the project exists (a throwaway seed otherwise).
    let step = normalized.as_deref().and_then(|c| match &record {
        Some(r) => r
            .totp()
            .ok()
            .and_then(|t| code::matching_step(&t, c, unix, SKEW)),
        None => {
            let t = code::generator(&[0u8; 20], totp_rs::Algorithm::SHA1, 6, 30);
            code::matching_step(&t, c, unix, SKEW).and(None)
        }
    });
    let outcome = match (&record, locked, &normalized, step) {
        (_, true, _, _) => Err(Failure::LockedOut),
        (None, _, _, _) => Err(Failure::UnknownProject),
        (_, _, None, _) => Err(Failure::Malformed),
        (_, _, _, None) => Err(Failure::Wrong),
        (Some(_), false, Some(_), Some(step)) => {
            let key = super::step_key(project);
            let last = super::last_step(core, project)?;
            if code::is_fresh(step, last) {
                core.barrier.put(&key, step.to_string().as_bytes())?;
                Ok(())
            } else {
                Err(Failure::Replayed)
            }
        }
    };
    let label = match purpose {
        Purpose::Login => "login",
        Purpose::Env => "env",
    };
    let event = |kind: EventKind, outcome: String| {
        let mut e = Event::new(kind, now)
            .path(path.to_owned())
            .outcome(outcome)
            .connection(connection);
        if known_name {
            e = e.project(project.to_owned());
        }
        e
    };
    match outcome {
        Ok(()) => {
            core.lockouts
                .reset(&core.barrier, LOCKOUT_PROJECT, project)?;
            if let Some(a) = &address {
                core.lockouts.reset(&core.barrier, LOCKOUT_ADDRESS, a)?;
            }
            let kind = match purpose {
                Purpose::Login => EventKind::ProjectLoginSucceeded,
                Purpose::Env => EventKind::ProjectEnvFetched,
            };
            let text = match purpose {
                Purpose::Login => "TOTP login succeeded",
                Purpose::Env => "environment fetched with a TOTP code",
            };
            core.emit(event(kind, text.to_owned()));
            match record {
                Some(r) => Ok(Ok(r)),
                None => Ok(Err(Failure::UnknownProject)),
            }
        }
        Err(failure) => {
            tracing::info!(project = %if known_name { project } else { "<invalid name>" }, reason = failure.outcome(), "project code refused");
            core.emit(event(
                EventKind::ProjectLoginFailed,
                format!("{label}: {}", failure.outcome()),
            ));
            if failure != Failure::LockedOut {
                let newly_locked = record_failure(core, project, address.as_deref(), now)?;
                if newly_locked {
                    core.emit(event(
                        EventKind::ProjectLockedOut,
                        "locked out for 15 minutes after failed attempts".to_owned(),
                    ));
                }
            }
            Ok(Err(failure))
        }
    }
}

/// Counts a failure for the project and the address; true if that locked either.
fn record_failure(
    core: &Core,
    project: &str,
    address: Option<&str>,
    now: SystemTime,
) -> Result<bool> {
    let l = &core.lockouts;
    l.record_failure(&core.barrier, LOCKOUT_PROJECT, project, now)?;
    let mut locked = l.is_locked(LOCKOUT_PROJECT, project, now);
    if let Some(a) = address {
        l.record_failure(&core.barrier, LOCKOUT_ADDRESS, a, now)?;
        locked |= l.is_locked(LOCKOUT_ADDRESS, a, now);
    }
    Ok(locked)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
