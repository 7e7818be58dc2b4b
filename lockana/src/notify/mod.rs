//! Notifications: events go to a durable outbox behind the barrier and a background
//! thread delivers them to Telegram chats and webhooks, with retry and backoff.
//!
//! Emitting is synchronous and cheap: routes are matched in memory and, only if one
//! matches, one small batch write puts an item per channel in the outbox
//! (`sys/notify/outbox/...`). Delivery never runs on the request's thread. An item is
//! deleted after its channel accepted it, so delivery is at least once; receivers
//! dedupe on the event id. After a restart, the outbox is reloaded at unseal and
//! delivery resumes.
//!
//! Channel credentials stay in memory while the vault is sealed, so the "sealed"
//! event and anything still queued are delivered; outbox deletions made meanwhile
//! are applied at the next unseal.
//!
//! To notify from new code: `core.emit(Event::new(EventKind::X, core.now())
//! .project(..).outcome("wrong TOTP code").connection(&req.connection))`.

mod channel;
mod event;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use serde_json::{Map, Value, json};

#[cfg_attr(not(test), allow(unused_imports))]
pub(crate) use self::event::{Event, EventKind};

use self::channel::{Channel, Route, Runtime, check_name};
use crate::auth::token::TokenEntry;
use crate::barrier::{Barrier, Op};
use crate::vault::Core;
use crate::{Error, Operation, Request, Response, Result, StorageError, Vault};

const CHANNELS: &str = "sys/notify/channels/";
const ROUTES: &str = "sys/notify/routes/";
const OUTBOX: &str = "sys/notify/outbox/";
/// Longest wait between retries of one item.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Items tried per pass, so a long outbox does not starve new events.
const BATCH: usize = 32;

struct Item {
    event: Event,
    channel: String,
    attempts: u32,
    next_at: Instant,
}

#[derive(Default)]
struct Config {
    channels: BTreeMap<String, Arc<Channel>>,
    routes: BTreeMap<String, Route>,
    declared_channels: BTreeMap<String, Arc<Channel>>,
    declared_routes: BTreeMap<String, Route>,
    /// Channels and routes are loaded (unsealed since the last load).
    loaded: bool,
}

#[derive(Default)]
struct Queue {
    items: BTreeMap<String, Item>,
    /// Outbox keys delivered while sealed, deleted at the next unseal.
    pending_deletes: Vec<String>,
    stop: bool,
}

struct Shared {
    config: RwLock<Config>,
    queue: Mutex<Queue>,
    wake: Condvar,
    backoff: RwLock<Duration>,
    /// Delivery attempts that failed (each retry counts).
    failures: crate::metrics::Counter,
}

/// The notifier a vault owns: routes, channels, the in-memory view of the outbox,
/// and the delivery thread.
pub(crate) struct Notifier {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            shared: Arc::new(Shared {
                config: RwLock::new(Config::default()),
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
                backoff: RwLock::new(Duration::from_secs(1)),
                failures: Default::default(),
            }),
            worker: Mutex::new(None),
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.shared.queue.lock().stop = true;
        self.shared.wake.notify_all();
        // Not joined: the worker may be inside a delivery (up to its timeout), and it
        // may be the thread dropping the vault. It exits at its next wake-up.
        drop(self.worker.lock().take());
    }
}

impl Notifier {
    /// Starts the delivery thread for `core` (called once, right after the vault is built).
    pub(crate) fn start(&self, core: Weak<Core>) {
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name("lockana-notify".into())
            .spawn(move || worker(shared, core));
        match handle {
            Ok(h) => *self.worker.lock() = Some(h),
            Err(e) => tracing::error!(error = %e, "cannot start the notification thread"),
        }
    }

    fn emit(&self, barrier: &Barrier, event: Event) {
        let channels: BTreeSet<String> = {
            let cfg = self.shared.config.read();
            cfg.routes
                .values()
                .chain(cfg.declared_routes.values())
                .filter(|r| r.matches(&event))
                .flat_map(|r| r.channels.iter().cloned())
                .collect()
        };
        if channels.is_empty() {
            return;
        }
        let nanos = event
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let body = event.to_json();
        let mut ops = Vec::with_capacity(channels.len());
        let mut items = Vec::with_capacity(channels.len());
        for ch in channels {
            let key = format!("{OUTBOX}{nanos:024}.{}.{ch}", event.id);
            let stored = json!({"event": body, "channel": ch});
            ops.push(Op::Put(key.clone(), stored.to_string().into_bytes()));
            items.push((key, ch));
        }
        if let Err(e) = barrier.apply(ops) {
            // Still delivered from memory; only a restart before delivery loses it.
            tracing::warn!(error = %e, kind = event.kind.as_str(), "notification not stored in the outbox");
        }
        let mut q = self.shared.queue.lock();
        let now = Instant::now();
        for (key, channel) in items {
            q.items.insert(
                key,
                Item {
                    event: event.clone(),
                    channel,
                    attempts: 0,
                    next_at: now,
                },
            );
        }
        drop(q);
        self.shared.wake.notify_all();
    }

    /// Whether some route wants an event like this (cheap; lets callers skip building one).
    fn wants(&self, event: &Event) -> bool {
        let cfg = self.shared.config.read();
        cfg.routes
            .values()
            .chain(cfg.declared_routes.values())
            .any(|r| r.matches(event))
    }

    /// After unseal: channels, routes and the undelivered outbox.
    pub(crate) fn load(&self, barrier: &Barrier) -> Result<()> {
        let mut channels = BTreeMap::new();
        for key in barrier.scan(CHANNELS)? {
            let Some(bytes) = barrier.get(&key)? else {
                continue;
            };
            let v: Map<String, Value> = crate::barrier::decode_record(&key, &bytes)?;
            let name = key.trim_start_matches(CHANNELS).to_owned();
            match Channel::parse(&v) {
                Ok(c) => {
                    channels.insert(name, Arc::new(c));
                }
                Err(e) => {
                    tracing::warn!(channel = %name, error = %e, "notification channel skipped")
                }
            }
        }
        let mut routes = BTreeMap::new();
        for key in barrier.scan(ROUTES)? {
            let Some(bytes) = barrier.get(&key)? else {
                continue;
            };
            let r: Route = crate::barrier::decode_record(&key, &bytes)?;
            routes.insert(key.trim_start_matches(ROUTES).to_owned(), r);
        }
        let deletes = std::mem::take(&mut self.shared.queue.lock().pending_deletes);
        if !deletes.is_empty() {
            barrier.apply(deletes.into_iter().map(Op::Delete).collect())?;
        }
        let mut pending = Vec::new();
        for key in barrier.scan(OUTBOX)? {
            let Some(bytes) = barrier.get(&key)? else {
                continue;
            };
            let v: Value = crate::barrier::decode_record(&key, &bytes)?;
            let event = v.get("event").and_then(Event::from_json);
            let channel = v.get("channel").and_then(Value::as_str);
            match (event, channel) {
                (Some(event), Some(channel)) => pending.push((key, event, channel.to_owned())),
                _ => tracing::warn!("unreadable outbox item skipped"),
            }
        }
        {
            let mut cfg = self.shared.config.write();
            cfg.channels = channels;
            cfg.routes = routes;
            cfg.loaded = true;
        }
        let mut q = self.shared.queue.lock();
        let now = Instant::now();
        for (key, event, channel) in pending {
            q.items.entry(key).or_insert(Item {
                event,
                channel,
                attempts: 0,
                next_at: now,
            });
        }
        drop(q);
        self.shared.wake.notify_all();
        Ok(())
    }

    /// On seal: stored channels stay (see the module docs) but are no longer "loaded".
    pub(crate) fn unload(&self) {
        self.shared.config.write().loaded = false;
    }

    /// An HA node stepping down: stops delivering what is queued. The items stay in
    /// the outbox, which the next active node loads and delivers (same event ids).
    pub(crate) fn forget_queue(&self) {
        self.shared.queue.lock().items.clear();
        self.unload();
    }

    /// Notifications waiting for delivery (each is also in the durable outbox).
    pub(crate) fn depth(&self) -> usize {
        self.shared.queue.lock().items.len()
    }

    /// Failed delivery attempts since the vault was opened.
    pub(crate) fn delivery_failures(&self) -> u64 {
        self.shared.failures.get()
    }
}

fn worker(shared: Arc<Shared>, core: Weak<Core>) {
    let mut rt = Runtime::default();
    loop {
        let due = {
            let mut q = shared.queue.lock();
            if q.stop {
                return;
            }
            let now = Instant::now();
            let due: Vec<(String, Event, String)> = q
                .items
                .iter()
                .filter(|(_, it)| it.next_at <= now)
                .take(BATCH)
                .map(|(k, it)| (k.clone(), it.event.clone(), it.channel.clone()))
                .collect();
            let next = q.items.values().map(|it| it.next_at).min();
            if due.is_empty() {
                let wait =
                    next.map_or(Duration::from_secs(5), |t| t.saturating_duration_since(now));
                if !q.pending_deletes.is_empty() {
                    drop(q);
                    flush_deletes(&shared, &core);
                    q = shared.queue.lock();
                }
                if !q.stop {
                    shared
                        .wake
                        .wait_for(&mut q, wait.min(Duration::from_secs(5)));
                }
                continue;
            }
            due
        };
        for (key, event, channel_name) in due {
            let channel = {
                let cfg = shared.config.read();
                let found = cfg
                    .declared_channels
                    .get(&channel_name)
                    .or_else(|| cfg.channels.get(&channel_name))
                    .cloned();
                (found, cfg.loaded)
            };
            let result = match channel {
                (Some(ch), _) => ch.deliver(&event, &mut rt),
                (None, true) => {
                    tracing::warn!(channel = %channel_name, "notification dropped: the channel no longer exists");
                    Ok(())
                }
                (None, false) => Err("channel not loaded (sealed)".into()),
            };
            match result {
                Ok(()) => {
                    shared.queue.lock().items.remove(&key);
                    delete_from_outbox(&shared, &core, key);
                }
                Err(reason) => {
                    shared.failures.incr();
                    let base = *shared.backoff.read();
                    let mut q = shared.queue.lock();
                    if let Some(it) = q.items.get_mut(&key) {
                        it.attempts = it.attempts.saturating_add(1);
                        let delay = base
                            .saturating_mul(1u32 << it.attempts.min(16).saturating_sub(1))
                            .min(MAX_BACKOFF);
                        it.next_at = Instant::now() + delay;
                        tracing::warn!(
                            channel = %channel_name,
                            event = %event.id,
                            attempt = it.attempts,
                            retry_in_ms = delay.as_millis() as u64,
                            error = %reason,
                            "notification delivery failed"
                        );
                    }
                }
            }
        }
    }
}

fn delete_from_outbox(shared: &Shared, core: &Weak<Core>, key: String) {
    let done = core
        .upgrade()
        .is_some_and(|c| c.barrier.apply(vec![Op::Delete(key.clone())]).is_ok());
    if !done {
        shared.queue.lock().pending_deletes.push(key);
    }
}

fn flush_deletes(shared: &Shared, core: &Weak<Core>) {
    let Some(c) = core.upgrade() else { return };
    if c.barrier.is_sealed() {
        return;
    }
    let keys = std::mem::take(&mut shared.queue.lock().pending_deletes);
    if c.barrier
        .apply(keys.iter().cloned().map(Op::Delete).collect())
        .is_err()
    {
        shared.queue.lock().pending_deletes.extend(keys);
    }
}

impl Core {
    /// Queues a notification: matched against the routes in memory and, if any
    /// route wants it, written to the durable outbox in one small batch. Never fails
    /// the caller and never waits for delivery.
    pub(crate) fn emit(&self, event: Event) {
        self.notify.emit(&self.barrier, event);
    }

    /// Events the request path itself raises, after the response is audited:
    /// root token use and writes or deletes under watched paths.
    pub(crate) fn notify_request(
        &self,
        req: &Request,
        entry: &TokenEntry,
        outcome: &Result<Response>,
    ) {
        if entry.is_root() {
            let e = Event::new(EventKind::RootTokenUsed, self.now())
                .path(req.path.clone())
                .outcome(format!(
                    "root token used: {} {}",
                    req.operation.as_str(),
                    req.path
                ))
                .connection(&req.connection);
            if self.notify.wants(&e) {
                self.emit(e);
            }
        }
        if outcome.is_ok() {
            let kind = match req.operation {
                Operation::Create | Operation::Update | Operation::Patch => {
                    EventKind::WatchedPathWritten
                }
                Operation::Delete => EventKind::WatchedPathDeleted,
                Operation::Read | Operation::List => return,
            };
            let e = Event::new(kind, self.now())
                .path(req.path.clone())
                .connection(&req.connection);
            if self.notify.wants(&e) {
                self.emit(e);
            }
        }
    }
}

// ---- sys/lockana/notify/* --------------------------------------------------

fn ok_data(m: Map<String, Value>) -> Response {
    let mut r = Response::with_data(m);
    r.mount_type = "system".into();
    r
}

fn keys_response(keys: Vec<String>) -> Result<Response> {
    if keys.is_empty() {
        return Err(Error::NotFound);
    }
    let mut m = Map::new();
    m.insert("keys".into(), json!(keys));
    Ok(ok_data(m))
}

/// `sys/lockana/notify/channels[/<name>]` and `.../routes[/<name>]`.
pub(crate) fn handle_api(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    let (what, name) = match rest.split_once('/') {
        Some((w, n)) => (w, n.trim_end_matches('/')),
        None => (rest, ""),
    };
    let prefix = match what {
        "channels" => CHANNELS,
        "routes" => ROUTES,
        _ => return Err(Error::NoRoute(req.path.clone())),
    };
    let n = &core.notify;
    if name.is_empty() {
        return match req.operation {
            Operation::List | Operation::Read => {
                let cfg = n.shared.config.read();
                let set: BTreeSet<String> = if what == "channels" {
                    cfg.channels
                        .keys()
                        .chain(cfg.declared_channels.keys())
                        .cloned()
                        .collect()
                } else {
                    cfg.routes
                        .keys()
                        .chain(cfg.declared_routes.keys())
                        .cloned()
                        .collect()
                };
                keys_response(set.into_iter().collect())
            }
            _ => Err(Error::UnsupportedOperation),
        };
    }
    check_name(name)?;
    let key = format!("{prefix}{name}");
    let declared = {
        let cfg = n.shared.config.read();
        if what == "channels" {
            cfg.declared_channels.contains_key(name)
        } else {
            cfg.declared_routes.contains_key(name)
        }
    };
    match req.operation {
        Operation::Read => {
            let cfg = n.shared.config.read();
            let mut m = if what == "channels" {
                cfg.declared_channels
                    .get(name)
                    .or_else(|| cfg.channels.get(name))
                    .map(|c| c.to_public())
                    .ok_or(Error::NotFound)?
            } else {
                cfg.declared_routes
                    .get(name)
                    .or_else(|| cfg.routes.get(name))
                    .map(Route::to_json)
                    .ok_or(Error::NotFound)?
            };
            m.insert("declared".into(), json!(declared));
            Ok(ok_data(m))
        }
        Operation::Create | Operation::Update => {
            if declared {
                return Err(Error::invalid(
                    "this is declared in the server config file: change it there",
                ));
            }
            if what == "channels" {
                let ch = Channel::parse(&req.data)?;
                core.barrier.put(&key, &ch.to_stored())?;
                n.shared
                    .config
                    .write()
                    .channels
                    .insert(name.to_owned(), Arc::new(ch));
            } else {
                let r = Route::parse(&req.data)?;
                {
                    let cfg = n.shared.config.read();
                    if let Some(missing) = r.channels.iter().find(|c| {
                        !cfg.channels.contains_key(*c) && !cfg.declared_channels.contains_key(*c)
                    }) {
                        return Err(Error::invalid(format!(
                            "unknown channel \"{missing}\": create it under sys/lockana/notify/channels/ first"
                        )));
                    }
                }
                let bytes = serde_json::to_vec(&r).map_err(|_| StorageError::Corrupt)?;
                core.barrier.put(&key, &bytes)?;
                n.shared.config.write().routes.insert(name.to_owned(), r);
            }
            Ok(Response::empty())
        }
        Operation::Delete => {
            if declared {
                return Err(Error::invalid(
                    "this is declared in the server config file: remove it there",
                ));
            }
            core.barrier.apply(vec![Op::Delete(key)])?;
            let mut cfg = n.shared.config.write();
            if what == "channels" {
                cfg.channels.remove(name);
            } else {
                cfg.routes.remove(name);
            }
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

impl Vault {
    /// Declares a notification channel, as a server config file's
    /// `notify "<type>" "<name>" { ... }` block does. `body` is what
    /// `sys/lockana/notify/channels/<name>` takes (`type` = `telegram` with
    /// `bot_token`, `chat_id`, optional `api_url`; or `webhook` with `url`, `secret`).
    /// Declared channels are not stored and cannot be changed through the API.
    pub fn declare_notify_channel(&self, name: &str, body: &Value) -> Result<()> {
        check_name(name)?;
        let empty = Map::new();
        let ch = Channel::parse(body.as_object().unwrap_or(&empty))?;
        self.core
            .notify
            .shared
            .config
            .write()
            .declared_channels
            .insert(name.to_owned(), Arc::new(ch));
        Ok(())
    }

    /// Declares a notification route (`notify_route "<name>" { events = [...]
    /// projects = [...] paths = [...] channels = [...] }` in the config file).
    pub fn declare_notify_route(&self, name: &str, body: &Value) -> Result<()> {
        check_name(name)?;
        let empty = Map::new();
        let r = Route::parse(body.as_object().unwrap_or(&empty))?;
        self.core
            .notify
            .shared
            .config
            .write()
            .declared_routes
            .insert(name.to_owned(), r);
        Ok(())
    }

    /// First retry delay of failed deliveries (doubling up to 5 minutes; default 1 s).
    /// Tests shorten it.
    pub fn set_notify_backoff(&self, base: Duration) {
        *self.core.notify.shared.backoff.write() = base.max(Duration::from_millis(1));
    }

    /// Notifications not yet delivered (in memory; each is also in the outbox).
    pub fn pending_notifications(&self) -> usize {
        self.core.notify.depth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrouted_events_write_nothing() {
        let (vault, _) = Vault::dev(None).expect("dev");
        vault
            .core
            .emit(Event::new(EventKind::Sealed, vault.core.now()));
        assert_eq!(vault.pending_notifications(), 0);
        assert!(vault.core.barrier.scan(OUTBOX).expect("scan").is_empty());
    }
}
