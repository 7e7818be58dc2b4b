//! High availability on PostgreSQL: several nodes share one database, one of them is
//! active and serves, the others are standbys that a transport forwards requests from.
//!
//! - Each node is unsealed on its own. An unsealed standby holds the keyring and
//!   nothing else: no mount table, token, policy, audit device or outbox, so it has
//!   nothing that another node's writes could have made stale.
//! - An election thread per node takes the lock row in the HA table
//!   ([`crate::storage::HaLock`]) once it is free or its lease ([`LEASE`]) ran out,
//!   and then renews it every [`RENEW_EVERY`]. Taking over re-reads the keyring and
//!   loads everything the way an unseal does, then serves.
//! - The active node serves only while its lease is safely held: until the moment it
//!   sent its last successful renewal plus the lease less [`MARGIN`]. A renewal that
//!   fails, or one that did not come back in time, makes it step down at once. The
//!   database's clock decides expiry, so a standby cannot take over before that.
//! - Every write of the active node checks its epoch in the same transaction
//!   ([`crate::storage::Fence`]): a deposed node never commits, whatever it believes.
//! - `sys/step-down` gives the lock up; the node then waits [`STEP_DOWN_WAIT`] before
//!   it tries to take it again, so another node takes over.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};

use crate::storage::{Fence, FenceState, HaLock};
use crate::vault::Core;

/// How long a lock renewal holds, on the database's clock.
pub(crate) const LEASE: Duration = Duration::from_secs(5);
/// How often the active node renews the lock.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How often a standby tries the lock.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often a standby that knows no active node looks for one.
const LEADERLESS_POLL: Duration = Duration::from_millis(100);
/// How much earlier than the lease's end an active node stops serving.
const MARGIN: Duration = Duration::from_secs(1);
/// How long a node that stepped down on request leaves the lock to the others.
const STEP_DOWN_WAIT: Duration = Duration::from_secs(10);
/// How long an echo row says a node is alive (`sys/ha-status`).
const ECHO_TTL: Duration = Duration::from_secs(10);

/// A node's high-availability settings (Vault's `ha_enabled`, `ha_table`, `api_addr`,
/// `cluster_addr`). Holds no secret.
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// The lock table (letters, digits, `_`); Vault's default is `vault_ha_locks`.
    pub ha_table: String,
    /// The address other nodes forward requests to and clients are redirected to,
    /// such as `http://10.0.0.1:8200`.
    pub api_addr: String,
    /// Reported as `leader_cluster_address`; Lockana forwards over the API address.
    pub cluster_addr: String,
}

/// Where a transport sends a request this node received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// This node answers it: it is active, sealed, or not part of a cluster.
    Local,
    /// This node is a standby; the active node is at this API address.
    Forward(String),
    /// This node is a standby and no active node is known right now.
    NoLeader,
}

/// One node as `sys/ha-status` lists it.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub node_id: String,
    pub api_addr: String,
    pub cluster_addr: String,
    pub hostname: String,
}

impl NodeInfo {
    fn to_value(&self) -> String {
        json!({
            "node_id": self.node_id,
            "api_addr": self.api_addr,
            "cluster_addr": self.cluster_addr,
            "hostname": self.hostname,
            "version": crate::sys::VERSION,
        })
        .to_string()
    }

    fn parse(text: &str) -> Option<NodeInfo> {
        let v: Value = serde_json::from_str(text).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        Some(NodeInfo {
            node_id: s("node_id"),
            api_addr: s("api_addr"),
            cluster_addr: s("cluster_addr"),
            hostname: s("hostname"),
        })
    }
}

#[derive(Clone)]
pub(crate) enum Role {
    /// Sealed (or not yet unsealed): takes no part in the election.
    Sealed,
    /// Unsealed, waiting for the lock.
    Standby,
    /// Holds the lock with `epoch` since `since`; serves until `deadline`.
    Active {
        epoch: i64,
        since: SystemTime,
        deadline: Instant,
    },
}

struct State {
    role: Role,
    leader: Option<NodeInfo>,
    members: Vec<(NodeInfo, SystemTime)>,
    /// A step-down was asked for (`sys/step-down`).
    step_down: bool,
    /// No lock attempts before this (after a step-down).
    hold_off: Option<Instant>,
    /// The epoch of a lock given up by a seal, for the election thread to release.
    pending_release: Option<i64>,
}

thread_local! {
    // `sys/step-down` is answered before the node steps down: the handler marks it
    // here, and `Core::handle` (same thread, synchronous) asks for it once the
    // response is audited.
    static STEP_DOWN_AFTER_RESPONSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the request being served as one that asks for a step-down.
pub(crate) fn step_down_after_response() {
    STEP_DOWN_AFTER_RESPONSE.with(|c| c.set(true));
}

/// Whether the request just served asked for a step-down (and clears the mark).
pub(crate) fn take_step_down_mark() -> bool {
    STEP_DOWN_AFTER_RESPONSE.with(|c| c.replace(false))
}

/// A node's HA state, owned by its vault.
pub(crate) struct Ha {
    pub(crate) me: NodeInfo,
    fence: Arc<Fence>,
    url: String,
    table: String,
    state: Mutex<State>,
    wake: Condvar,
}

impl Ha {
    pub(crate) fn new(config: &HaConfig, url: &str, fence: Arc<Fence>) -> Ha {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Ha {
            me: NodeInfo {
                node_id: uuid::Uuid::new_v4().to_string(),
                api_addr: config.api_addr.clone(),
                cluster_addr: config.cluster_addr.clone(),
                hostname,
            },
            fence,
            url: url.to_owned(),
            table: config.ha_table.clone(),
            state: Mutex::new(State {
                role: Role::Sealed,
                leader: None,
                members: Vec::new(),
                step_down: false,
                hold_off: None,
                pending_release: None,
            }),
            wake: Condvar::new(),
        }
    }

    /// Starts the election thread.
    pub(crate) fn start(&self, core: Weak<Core>) -> crate::Result<()> {
        let mut lock = HaLock::new(&self.url, &self.table, &self.me.node_id)?;
        lock.connect()?;
        std::thread::Builder::new()
            .name("lockana-ha".into())
            .spawn(move || elect(core, lock))
            .map_err(|e| crate::StorageError::Backend(format!("HA election thread: {e}")))?;
        Ok(())
    }

    pub(crate) fn role(&self) -> Role {
        self.state.lock().role.clone()
    }

    /// Whether this node may serve now: it holds the lock and its lease is safe.
    pub(crate) fn is_active(&self) -> bool {
        matches!(self.state.lock().role, Role::Active { deadline, .. } if Instant::now() < deadline)
    }

    /// Whether the node is unsealed (standby or active).
    pub(crate) fn is_unsealed(&self) -> bool {
        !matches!(self.state.lock().role, Role::Sealed)
    }

    /// After the keyring opened at unseal: join the election as a standby. Writes
    /// are refused until this node holds the lock.
    pub(crate) fn join(&self) {
        self.fence.set(FenceState::Closed);
        let mut st = self.state.lock();
        st.role = Role::Standby;
        st.hold_off = None;
        drop(st);
        self.wake.notify_all();
    }

    /// At seal: leave the election; a lock held is given up (by the election thread).
    pub(crate) fn leave(&self) {
        let mut st = self.state.lock();
        if let Role::Active { epoch, .. } = st.role {
            st.pending_release = Some(epoch);
        }
        st.role = Role::Sealed;
        st.step_down = false;
        st.leader = None;
        // Closed, not open: a request still running must not write unfenced. (Only
        // `sys/init` writes unfenced, on storage no node has unsealed yet.)
        self.fence.set(FenceState::Closed);
        self.wake.notify_all();
        // Give the election thread a moment to release it, so a shutdown hands over
        // at once rather than when the lease ends.
        let until = Instant::now() + Duration::from_secs(2);
        while st.pending_release.is_some() && Instant::now() < until {
            self.wake.wait_for(&mut st, Duration::from_millis(50));
        }
    }

    /// Closes the fence: from now on this node's writes are refused.
    pub(crate) fn fence_close(&self) {
        self.fence.set(FenceState::Closed);
    }

    /// Asks the election thread to give the lock up (`sys/step-down`).
    pub(crate) fn request_step_down(&self) {
        self.state.lock().step_down = true;
        self.wake.notify_all();
    }

    pub(crate) fn routing(&self) -> Routing {
        let st = self.state.lock();
        match &st.role {
            Role::Sealed => Routing::Local,
            Role::Active { deadline, .. } if Instant::now() < *deadline => Routing::Local,
            _ => match &st.leader {
                Some(l) if l.node_id != self.me.node_id && !l.api_addr.is_empty() => {
                    Routing::Forward(l.api_addr.clone())
                }
                _ => Routing::NoLeader,
            },
        }
    }

    /// `sys/leader`'s answer.
    pub(crate) fn leader_json(&self) -> serde_json::Map<String, Value> {
        let st = self.state.lock();
        let zero = "0001-01-01T00:00:00Z".to_owned();
        let (is_self, active_time, leader) = match &st.role {
            Role::Active { since, .. } => (true, crate::clock::rfc3339(*since), Some(&self.me)),
            Role::Standby => (false, zero, st.leader.as_ref()),
            Role::Sealed => (false, zero, None),
        };
        crate::sys::obj(json!({
            "ha_enabled": true,
            "is_self": is_self,
            "active_time": active_time,
            "leader_address": leader.map_or("", |l| l.api_addr.as_str()),
            "leader_cluster_address": leader.map_or("", |l| l.cluster_addr.as_str()),
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
        }))
    }

    /// `sys/ha-status`'s node list (answered by the active node).
    pub(crate) fn nodes_json(&self) -> Vec<Value> {
        let st = self.state.lock();
        let mut nodes: Vec<Value> = st
            .members
            .iter()
            .map(|(n, echo)| {
                let active = n.node_id == self.me.node_id;
                json!({
                    "hostname": n.hostname,
                    "api_address": n.api_addr,
                    "cluster_address": n.cluster_addr,
                    "active_node": active,
                    "last_echo": if active { Value::Null } else { json!(crate::clock::rfc3339(*echo)) },
                    "version": crate::sys::VERSION,
                })
            })
            .collect();
        if !st.members.iter().any(|(n, _)| n.node_id == self.me.node_id) {
            nodes.insert(
                0,
                json!({
                    "hostname": self.me.hostname,
                    "api_address": self.me.api_addr,
                    "cluster_address": self.me.cluster_addr,
                    "active_node": true,
                    "last_echo": Value::Null,
                    "version": crate::sys::VERSION,
                }),
            );
        }
        nodes
    }

    fn set_role(&self, role: Role) {
        self.state.lock().role = role;
    }

    /// Waits `d`, or less if woken (step-down, unseal, seal).
    fn sleep(&self, d: Duration) {
        let mut st = self.state.lock();
        let asked = st.step_down && matches!(st.role, Role::Active { .. });
        if !asked && st.pending_release.is_none() {
            self.wake.wait_for(&mut st, d);
        }
    }
}

/// The election loop of one node.
fn elect(core: Weak<Core>, mut lock: HaLock) {
    let mut last_echo: Option<Instant> = None;
    loop {
        let Some(core) = core.upgrade() else { return };
        // The vault is gone when the last clone is dropped: then so is this thread.
        let Some(ha) = core.ha.as_ref() else { return };
        let value = ha.me.to_value();
        let release = ha.state.lock().pending_release;
        if let Some(epoch) = release {
            if let Err(e) = lock.release(epoch) {
                tracing::warn!(error = %e, "could not release the HA lock; it expires with its lease");
            }
            ha.state.lock().pending_release = None;
            ha.wake.notify_all();
        }
        let role = ha.role();
        if !matches!(role, Role::Sealed) && last_echo.is_none_or(|t| t.elapsed() >= RENEW_EVERY) {
            match lock.echo(&value, ECHO_TTL) {
                Ok(()) => last_echo = Some(Instant::now()),
                Err(e) => tracing::debug!(error = %e, "HA echo failed"),
            }
        }
        match role {
            Role::Sealed => {}
            Role::Standby => standby_turn(&core, ha, &mut lock, &value),
            Role::Active { epoch, .. } => active_turn(&core, ha, &mut lock, epoch),
        }
        let pause = match ha.role() {
            Role::Active { .. } => RENEW_EVERY,
            // A standby that knows no leader (it just stepped down, or a takeover is
            // under way) looks again soon, so it can forward again.
            Role::Standby if ha.state.lock().leader.is_none() => LEADERLESS_POLL,
            _ => POLL_EVERY,
        };
        ha.sleep(pause);
    }
}

/// A standby's turn: take the lock if it is free, else learn who holds it.
fn standby_turn(core: &Core, ha: &Ha, lock: &mut HaLock, value: &str) {
    {
        let mut st = ha.state.lock();
        st.step_down = false;
        if st.hold_off.is_some_and(|t| Instant::now() < t) {
            drop(st);
            refresh_leader(ha, lock);
            return;
        }
        st.hold_off = None;
    }
    let sent = Instant::now();
    match lock.acquire(value, LEASE) {
        Ok(Some(epoch)) => {
            tracing::info!(epoch, "HA lock acquired; taking over as the active node");
            ha.fence.set(FenceState::Held {
                identity: ha.me.node_id.clone(),
                epoch,
            });
            let since = SystemTime::now();
            match core.take_over() {
                Ok(()) => {
                    ha.set_role(Role::Active {
                        epoch,
                        since,
                        deadline: sent + LEASE - MARGIN,
                    });
                    ha.state.lock().leader = Some(ha.me.clone());
                    refresh_members(ha, lock);
                    tracing::info!(epoch, "this node is active");
                }
                Err(e) => {
                    tracing::error!(error = %e, "taking over failed; giving the lock up");
                    ha.fence.set(FenceState::Closed);
                    let _ = lock.release(epoch);
                }
            }
        }
        Ok(None) => refresh_leader(ha, lock),
        Err(e) => {
            tracing::warn!(error = %e, "HA lock attempt failed");
            ha.state.lock().leader = None;
        }
    }
}

/// An active node's turn: renew, or step down at once; or give the lock up on request.
fn active_turn(core: &Core, ha: &Ha, lock: &mut HaLock, epoch: i64) {
    let asked = std::mem::take(&mut ha.state.lock().step_down);
    if asked {
        tracing::info!(epoch, "stepping down on request");
        core.step_down();
        if let Err(e) = lock.release(epoch) {
            tracing::warn!(error = %e, "could not release the HA lock; it expires with its lease");
        }
        let mut st = ha.state.lock();
        st.hold_off = Some(Instant::now() + STEP_DOWN_WAIT);
        st.leader = None;
        return;
    }
    let sent = Instant::now();
    let renewed = lock.renew(epoch, LEASE);
    let late = Instant::now() >= sent + LEASE - MARGIN;
    match renewed {
        Ok(true) if !late => {
            if let Role::Active { deadline, .. } = &mut ha.state.lock().role {
                *deadline = sent + LEASE - MARGIN;
            }
            refresh_members(ha, lock);
        }
        outcome => {
            match outcome {
                Ok(true) => {
                    tracing::error!(epoch, "HA lock renewal came back too late; stepping down")
                }
                Ok(false) => tracing::error!(epoch, "HA lock lost to another node; stepping down"),
                Err(e) => {
                    tracing::error!(epoch, error = %e, "HA lock renewal failed; stepping down")
                }
            }
            core.step_down();
            ha.state.lock().leader = None;
        }
    }
}

fn refresh_leader(ha: &Ha, lock: &mut HaLock) {
    let leader = match lock.leader() {
        Ok(v) => v.and_then(|v| NodeInfo::parse(&v)),
        Err(e) => {
            tracing::debug!(error = %e, "reading the HA lock failed");
            None
        }
    };
    ha.state.lock().leader = leader;
}

fn refresh_members(ha: &Ha, lock: &mut HaLock) {
    if let Ok(members) = lock.members(ECHO_TTL) {
        ha.state.lock().members = members
            .into_iter()
            .filter_map(|m| NodeInfo::parse(&m.value).map(|n| (n, m.last_echo)))
            .collect();
    }
}
