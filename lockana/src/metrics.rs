//! Telemetry: what the vault counts, and the snapshot a transport renders.
//!
//! Counting sits on the request path, so it is atomics only: a histogram is a fixed
//! array of `AtomicU64` buckets plus count, sum, min and max, and recording one value
//! is a handful of relaxed atomic adds. The per-route histograms live in a map keyed
//! by mount, read-locked per request (a `parking_lot` read lock is one atomic add, as
//! cheap as the counters themselves) and write-locked only the first time a
//! (operation, mount) pair is seen. Mount names come from the mount table, never
//! from the request path, so a client cannot mint new series.
//!
//! Everything else (seal state, token and lease counts, locked users, the outbox) is
//! read when a snapshot is taken, not maintained on the hot path. The library only
//! counts; the server renders [`MetricsSnapshot`] in Vault's JSON and Prometheus
//! shapes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::vault::Core;
use crate::{Operation, Request, Vault};

/// Latency bucket bounds, in microseconds (rendered in milliseconds, as Vault's
/// timings are): 0.1 ms to 10 s.
pub(crate) const LATENCY_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Size bucket bounds for group commits (batches per commit; the committer takes at
/// most 1024).
pub(crate) const SIZE_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// A histogram of non-negative integers with fixed bucket bounds, lock-free.
pub(crate) struct Histogram {
    bounds: &'static [u64],
    /// One per bound, plus the overflow bucket (`+Inf`).
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    /// A latency histogram (microseconds in, milliseconds out).
    pub(crate) fn latency() -> Self {
        Self::new(LATENCY_BOUNDS_US)
    }

    pub(crate) fn record(&self, v: u64) {
        // Prometheus buckets are inclusive upper bounds: the first bound >= v.
        let i = self.bounds.partition_point(|b| *b < v);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
        self.min.fetch_min(v, Relaxed);
        self.max.fetch_max(v, Relaxed);
    }

    /// Records the time since `start`, in microseconds.
    pub(crate) fn record_since(&self, start: Instant) {
        self.record(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
    }

    /// The values so far, each divided by `scale` (1000 turns µs into ms).
    fn snapshot(&self, scale: f64) -> HistogramValue {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            buckets.push((*b as f64 / scale, cumulative));
        }
        // The count is the buckets' total, so `+Inf` always equals it even while
        // other threads record.
        let count = cumulative + self.buckets[self.bounds.len()].load(Relaxed);
        let min = self.min.load(Relaxed);
        HistogramValue {
            count,
            sum: self.sum.load(Relaxed) as f64 / scale,
            min: if count == 0 || min == u64::MAX {
                0.0
            } else {
                min as f64 / scale
            },
            max: self.max.load(Relaxed) as f64 / scale,
            buckets,
        }
    }
}

/// A monotonic counter.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn incr(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Operations in a fixed order, for the per-route table.
const OPERATIONS: [Operation; 6] = [
    Operation::Read,
    Operation::Create,
    Operation::Update,
    Operation::Patch,
    Operation::Delete,
    Operation::List,
];

fn op_index(op: Operation) -> usize {
    OPERATIONS.iter().position(|o| *o == op).unwrap_or(0)
}

/// Token and lease counts, recomputed from storage only when tokens changed (or
/// after [`USAGE_MAX_AGE`]), so a scrape flood does not walk the token store.
#[derive(Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) tokens: u64,
    pub(crate) leases: u64,
}

/// Longest a token/lease count is reused while no token was written: expiring
/// tokens change the lease count without a write.
const USAGE_MAX_AGE: Duration = Duration::from_secs(10);

/// The request-path counters of one vault.
pub(crate) struct Metrics {
    started: Instant,
    in_flight: AtomicI64,
    handle_request: Histogram,
    handle_login_request: Histogram,
    login_failures: Counter,
    /// Per operation: mount path -> latency histogram.
    routes: [RwLock<HashMap<Box<str>, Arc<Histogram>>>; OPERATIONS.len()],
    /// (token-store generation, when, counts).
    usage: Mutex<Option<(u64, Instant, Usage)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            in_flight: AtomicI64::new(0),
            handle_request: Histogram::latency(),
            handle_login_request: Histogram::latency(),
            login_failures: Counter::default(),
            routes: Default::default(),
            usage: Mutex::new(None),
        }
    }
}

/// One request being timed; see [`Metrics::begin`].
pub(crate) struct InFlight<'a> {
    metrics: &'a Metrics,
    start: Instant,
    route: Option<Arc<Histogram>>,
    login: bool,
}

impl Metrics {
    /// Starts timing a request. `mount` is the mount table's path of the mount the
    /// request routes to (`secret/`, `sys/`, `auth/userpass/`), if any.
    pub(crate) fn begin(&self, op: Operation, mount: Option<&str>, login: bool) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight {
            metrics: self,
            start: Instant::now(),
            route: mount.map(|m| self.route(op, m)),
            login,
        }
    }

    fn route(&self, op: Operation, mount: &str) -> Arc<Histogram> {
        let table = &self.routes[op_index(op)];
        if let Some(h) = table.read().get(mount) {
            return Arc::clone(h);
        }
        Arc::clone(
            table
                .write()
                .entry(mount.into())
                .or_insert_with(|| Arc::new(Histogram::latency())),
        )
    }

    /// The token and lease counts, from `compute` when `generation` moved or the
    /// cached ones are old.
    pub(crate) fn usage(
        &self,
        generation: u64,
        compute: impl FnOnce() -> Option<Usage>,
    ) -> Option<Usage> {
        let mut memo = self.usage.lock();
        if let Some((g, at, u)) = *memo
            && g == generation
            && at.elapsed() < USAGE_MAX_AGE
        {
            return Some(u);
        }
        let u = compute()?;
        *memo = Some((generation, Instant::now(), u));
        Some(u)
    }
}

impl InFlight<'_> {
    /// Records the request's latency; `failed` marks a refused or failed one.
    pub(crate) fn finish(self, failed: bool) {
        let m = self.metrics;
        if self.login {
            m.handle_login_request.record_since(self.start);
            if failed {
                m.login_failures.incr();
            }
        } else {
            m.handle_request.record_since(self.start);
        }
        if let Some(route) = &self.route {
            route.record_since(self.start);
        }
        m.in_flight.fetch_sub(1, Relaxed);
    }
}

/// What a metric is worth at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetricValue {
    /// A count that only grows (until the process restarts).
    Counter(u64),
    /// A value that goes up and down.
    Gauge(f64),
    /// A distribution: durations in milliseconds, or sizes.
    Histogram(HistogramValue),
}

/// A histogram's totals and cumulative buckets.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HistogramValue {
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest (0 when empty).
    pub min: f64,
    /// The largest (0 when empty).
    pub max: f64,
    /// `(upper bound, values <= bound)` in increasing order; the `+Inf` bucket is
    /// `count`.
    pub buckets: Vec<(f64, u64)>,
}

/// One metric series.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Metric {
    /// Dotted name with its service prefix, as Vault writes it in JSON
    /// (`vault.core.handle_request`, `lockana.storage.commit`).
    pub name: String,
    /// Label pairs.
    pub labels: Vec<(String, String)>,
    /// One line saying what it measures (Prometheus `# HELP`).
    pub help: &'static str,
    /// The value.
    pub value: MetricValue,
}

/// Every metric of a vault at one moment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The series, sorted by name then labels.
    pub metrics: Vec<Metric>,
    /// How long the vault has been counting (since it was opened).
    pub uptime: Duration,
}

/// Collects series into a snapshot.
pub(crate) struct Collector {
    metrics: Vec<Metric>,
}

impl Collector {
    fn push(&mut self, name: &str, labels: &[(&str, &str)], help: &'static str, v: MetricValue) {
        self.metrics.push(Metric {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            help,
            value: v,
        });
    }

    pub(crate) fn counter(&mut self, name: &str, help: &'static str, v: u64) {
        self.push(name, &[], help, MetricValue::Counter(v));
    }

    pub(crate) fn gauge(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        help: &'static str,
        v: f64,
    ) {
        self.push(name, labels, help, MetricValue::Gauge(v));
    }

    pub(crate) fn latency(&mut self, name: &str, help: &'static str, h: &Histogram) {
        self.push(name, &[], help, MetricValue::Histogram(h.snapshot(1000.0)));
    }

    pub(crate) fn sizes(&mut self, name: &str, help: &'static str, h: &Histogram) {
        self.push(name, &[], help, MetricValue::Histogram(h.snapshot(1.0)));
    }
}

impl Metrics {
    pub(crate) fn collector(&self) -> Collector {
        Collector {
            metrics: Vec::new(),
        }
    }

    /// Adds the request-path series and closes the snapshot.
    pub(crate) fn finish(&self, mut c: Collector) -> MetricsSnapshot {
        c.gauge(
            "vault.core.in_flight_requests",
            &[],
            "Requests being served right now.",
            self.in_flight.load(Relaxed) as f64,
        );
        c.latency(
            "vault.core.handle_request",
            "Time to serve a request (not a login), in milliseconds.",
            &self.handle_request,
        );
        c.latency(
            "vault.core.handle_login_request",
            "Time to serve a login, in milliseconds.",
            &self.handle_login_request,
        );
        c.counter(
            "lockana.auth.login_failure",
            "Logins refused (bad credentials, locked out, bad code).",
            self.login_failures.get(),
        );
        for (i, table) in self.routes.iter().enumerate() {
            let op = OPERATIONS[i].as_str();
            for (mount, h) in table.read().iter() {
                // Vault's route metric: `vault.route.<operation>.<mount, '/' -> '-'>`.
                let name = format!("vault.route.{op}.{}", mount.replace('/', "-"));
                c.latency(
                    &name,
                    "Time a mount took to serve an operation, in milliseconds.",
                    h,
                );
            }
        }
        let mut metrics = c.metrics;
        metrics.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.labels.cmp(&b.labels)));
        MetricsSnapshot {
            metrics,
            uptime: self.started.elapsed(),
        }
    }
}

impl Core {
    /// Starts timing a request: the hook around `handle`. The route is the mount the
    /// request goes to, from the mount tables (`sys/`, `auth/<method>/`, `identity/`,
    /// `lockana/`, or a secrets mount); paths that route nowhere get no route series.
    pub(crate) fn time_request(&self, req: &Request) -> InFlight<'_> {
        let path = req.path.trim_start_matches('/');
        let op = req.operation;
        let fixed = ["sys/", "identity/", "lockana/", "auth/token/"]
            .into_iter()
            .find(|p| path.starts_with(p));
        if let Some(mount) = fixed {
            return self.metrics.begin(op, Some(mount), false);
        }
        if let Some(rest) = path.strip_prefix("auth/") {
            let mount = {
                let mounts = self.auth_mounts.read();
                mounts.route(rest).map(|m| format!("auth/{}", m.path))
            };
            let login = mount.is_some() && self.is_login(req);
            return self.metrics.begin(op, mount.as_deref(), login);
        }
        let mounts = self.mounts.read();
        let mount = mounts.route(path).map(|m| m.path.as_str());
        self.metrics.begin(op, mount, false)
    }
}

impl Vault {
    /// Every metric of the vault now: request counts and latencies (per operation
    /// and mount), seal state, token and lease counts, audit failures, lockouts, the
    /// notification outbox and storage commits. Transports render it (the server's
    /// `sys/metrics`); reading it needs no token, so a transport decides who may.
    pub fn metrics(&self) -> MetricsSnapshot {
        let core = &self.core;
        let mut c = core.metrics.collector();
        // An HA standby is unsealed but does not serve (and has nothing loaded).
        let serving = !core.barrier.is_sealed();
        let unsealed = serving || !core.seal_status().sealed;
        c.gauge(
            "vault.core.unsealed",
            &[],
            "1 when the vault is unsealed, 0 when sealed.",
            if unsealed { 1.0 } else { 0.0 },
        );
        c.gauge(
            "vault.core.active",
            &[],
            "1 when this node serves (unsealed, and the active node of an HA cluster), 0 otherwise.",
            if serving { 1.0 } else { 0.0 },
        );
        if serving {
            let generation = core.tokens.generation();
            let usage = core.metrics.usage(generation, || {
                core.tokens
                    .usage(&core.barrier, core.now())
                    .inspect_err(|e| tracing::warn!(error = %e, "cannot count tokens for metrics"))
                    .ok()
                    .map(|(tokens, leases)| Usage { tokens, leases })
            });
            if let Some(u) = usage {
                c.gauge("vault.token.count", &[], "Live tokens.", u.tokens as f64);
                c.gauge(
                    "vault.expire.num_leases",
                    &[],
                    "Leases (tokens with an expiry; Lockana issues no other leases).",
                    u.leases as f64,
                );
            }
            for (kind, table) in [("logical", &core.mounts), ("auth", &core.auth_mounts)] {
                let table = table.read();
                for local in [false, true] {
                    let n = table.entries().iter().filter(|e| e.local == local).count();
                    c.gauge(
                        "vault.core.mount_table.num_entries",
                        &[
                            ("local", if local { "true" } else { "false" }),
                            ("type", kind),
                        ],
                        "Mounts in the mount table.",
                        n as f64,
                    );
                }
            }
        }
        c.gauge(
            "vault.core.locked_users",
            &[],
            "Aliases locked out after too many failed logins.",
            core.lockouts.locked_count(core.now()) as f64,
        );
        let counters: [(&str, &'static str, u64); 4] = [
            (
                "lockana.auth.lockouts",
                "Times an alias became locked out.",
                core.lockouts.lockouts.get(),
            ),
            (
                "vault.audit.log_request_failure",
                "Requests refused because no audit device took their entry.",
                core.audit.request_failures.get(),
            ),
            (
                "vault.audit.log_response_failure",
                "Responses withheld because no audit device took their entry.",
                core.audit.response_failures.get(),
            ),
            (
                "lockana.audit.device_write_failure",
                "Entries one audit device failed to write.",
                core.audit.device_failures.get(),
            ),
        ];
        for (name, help, v) in counters {
            c.counter(name, help, v);
        }
        c.gauge(
            "lockana.notify.outbox_depth",
            &[],
            "Notifications waiting for delivery.",
            core.notify.depth() as f64,
        );
        c.counter(
            "lockana.notify.delivery_failure",
            "Failed notification delivery attempts (each retry counts).",
            core.notify.delivery_failures(),
        );
        let (commits, groups) = core.barrier.commit_stats();
        c.latency(
            "lockana.storage.commit",
            "Time a write batch took to become durable, in milliseconds.",
            commits,
        );
        if let Some(groups) = groups {
            c.sizes(
                "lockana.storage.group_commit.batches",
                "Write batches that shared one durable commit.",
                groups,
            );
        }
        core.metrics.finish(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_inclusive_and_cumulative() {
        let h = Histogram::new(&[1, 10, 100]);
        for v in [0, 1, 2, 10, 11, 1000] {
            h.record(v);
        }
        let s = h.snapshot(1.0);
        assert_eq!(s.count, 6);
        assert_eq!(s.buckets, vec![(1.0, 2), (10.0, 4), (100.0, 5)]);
        assert_eq!(s.sum, 1024.0);
        assert_eq!((s.min, s.max), (0.0, 1000.0));
    }

    #[test]
    fn empty_histogram_reports_zeroes() {
        let s = Histogram::latency().snapshot(1000.0);
        assert_eq!((s.count, s.sum, s.min, s.max), (0, 0.0, 0.0, 0.0));
        assert_eq!(s.buckets.first(), Some(&(0.1, 0)));
    }

    #[test]
    fn routes_are_kept_per_operation_and_mount() {
        let m = Metrics::default();
        m.begin(Operation::Read, Some("secret/"), false)
            .finish(false);
        m.begin(Operation::Read, Some("secret/"), false)
            .finish(false);
        m.begin(Operation::Update, Some("secret/"), false)
            .finish(false);
        m.begin(Operation::Update, Some("auth/userpass/"), true)
            .finish(true);
        m.begin(Operation::Read, None, false).finish(true);
        let snap = m.finish(m.collector());
        let count = |name: &str| {
            snap.metrics
                .iter()
                .find(|x| x.name == name)
                .map(|x| match &x.value {
                    MetricValue::Histogram(h) => h.count,
                    MetricValue::Counter(c) => *c,
                    MetricValue::Gauge(g) => *g as u64,
                })
        };
        assert_eq!(count("vault.route.read.secret-"), Some(2));
        assert_eq!(count("vault.route.update.secret-"), Some(1));
        assert_eq!(count("vault.route.update.auth-userpass-"), Some(1));
        assert_eq!(count("vault.core.handle_request"), Some(4));
        assert_eq!(count("vault.core.handle_login_request"), Some(1));
        assert_eq!(count("lockana.auth.login_failure"), Some(1));
        assert_eq!(count("vault.core.in_flight_requests"), Some(0));
    }
}
