//! The HA lock on PostgreSQL: one row in a table of its own (`ha_table`, Vault's
//! `vault_ha_locks` by default), so a snapshot restore, which deletes every row of the
//! data table, never touches it.
//!
//! - The lock row `core/lock` holds the active node's identity and address, a lease
//!   (`valid_until`, on the database's clock, so the nodes' clocks do not matter) and
//!   an `epoch` that grows by one at every takeover.
//! - A node takes the lock with one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` the
//!   lease has expired, and renews it while its identity and epoch still hold it.
//! - Fencing: every write transaction of the data table first reads the lock row
//!   `FOR SHARE` and checks the writer's epoch (see [`Fence`]). A takeover's update of
//!   that row waits for such a transaction to end, and a transaction that starts after
//!   it finds another epoch and is rolled back: a deposed node never commits.
//! - Each node also keeps a `node/<id>` row alive (its "echo"), which `sys/ha-status`
//!   lists.

use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use postgres::{Client, NoTls};

use super::postgres::{check_table, pg_err};
use crate::StorageError;

/// The lock row's key, as Vault's PostgreSQL backend names it.
pub(crate) const LOCK_KEY: &str = "core/lock";
const NODE_PREFIX: &str = "node/";

/// Creates the lock table if needed (Vault's columns plus `epoch`).
pub(crate) fn create_table(client: &mut Client, table: &str) -> Result<(), StorageError> {
    check_table(table)?;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (ha_key TEXT COLLATE \"C\" NOT NULL PRIMARY KEY, \
             ha_identity TEXT NOT NULL, ha_value TEXT, valid_until TIMESTAMPTZ NOT NULL); \
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS epoch BIGINT NOT NULL DEFAULT 0"
        ))
        .map_err(pg_err)
}

/// What the data connection checks before it commits a write.
#[derive(Default)]
pub(crate) struct Fence {
    state: Mutex<FenceState>,
}

#[derive(Default, Clone)]
pub(crate) enum FenceState {
    /// No lock taken yet (an uninitialized or sealed node): writes go through. Only
    /// `sys/init` writes then.
    #[default]
    Open,
    /// This node is active with this identity and epoch: each write checks them.
    Held { identity: String, epoch: i64 },
    /// A standby (or a node that just stepped down): every write is refused.
    Closed,
}

impl Fence {
    pub(crate) fn get(&self) -> FenceState {
        self.state.lock().clone()
    }

    pub(crate) fn set(&self, state: FenceState) {
        *self.state.lock() = state;
    }
}

/// The check a write transaction runs first, with its parameters.
pub(crate) fn fence_sql(ha_table: &str) -> String {
    format!(
        "SELECT 1 FROM {ha_table} WHERE ha_key = $1 AND ha_identity = $2 AND epoch = $3 FOR SHARE"
    )
}

/// The refusal of a write this node may not make.
pub(crate) fn not_active() -> StorageError {
    StorageError::Backend(
        "postgresql: this node does not hold the HA lock (it is a standby or was deposed); the write was not committed".into(),
    )
}

/// A node's view of the lock table, on a connection of its own. Blocking: used by the
/// election thread only.
pub(crate) struct HaLock {
    url: String,
    table: String,
    identity: String,
    client: Option<Client>,
    /// The table was made (or found) by this node: reconnects skip the DDL.
    created: bool,
}

/// A node as its echo row describes it.
pub(crate) struct Member {
    pub value: String,
    pub last_echo: SystemTime,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl HaLock {
    pub(crate) fn new(url: &str, table: &str, identity: &str) -> Result<HaLock, StorageError> {
        check_table(table)?;
        Ok(HaLock {
            url: url.to_owned(),
            table: table.to_owned(),
            identity: identity.to_owned(),
            client: None,
            created: false,
        })
    }

    /// The connection, made again after a failure. Statements time out, so a database
    /// that stops answering shows as an error rather than a hang.
    fn client(&mut self) -> Result<&mut Client, StorageError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let mut config: postgres::Config = self.url.parse().map_err(pg_err)?;
            config.connect_timeout(Duration::from_secs(2));
            config.options("-c statement_timeout=2000");
            let mut client = config.connect(NoTls).map_err(pg_err)?;
            if !self.created {
                create_table(&mut client, &self.table)?;
                self.created = true;
            }
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StorageError::Backend("postgresql: no connection".into()))
    }

    /// Runs `f` on the connection; an error drops it, so the next call reconnects.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &str, &str) -> Result<T, postgres::Error>,
    ) -> Result<T, StorageError> {
        let (table, identity) = (self.table.clone(), self.identity.clone());
        let client = self.client()?;
        let r = f(client, &table, &identity);
        if r.is_err() {
            self.client = None;
        }
        r.map_err(pg_err)
    }

    /// Takes the lock if it is free or its lease ran out: the new epoch, or `None`
    /// when another node holds it.
    pub(crate) fn acquire(
        &mut self,
        value: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StorageError> {
        self.run(|c, t, id| {
            let row = c.query_opt(
                &format!(
                    "INSERT INTO {t} (ha_key, ha_identity, ha_value, valid_until, epoch) \
                     VALUES ($1, $2, $3, now() + make_interval(secs => $4), 1) \
                     ON CONFLICT (ha_key) DO UPDATE SET ha_identity = EXCLUDED.ha_identity, \
                     ha_value = EXCLUDED.ha_value, valid_until = EXCLUDED.valid_until, \
                     epoch = {t}.epoch + 1 \
                     WHERE {t}.valid_until < now() RETURNING epoch"
                ),
                &[&LOCK_KEY, &id, &value, &secs(lease)],
            )?;
            Ok(row.map(|r| r.get::<_, i64>(0)))
        })
    }

    /// Extends the lease; `false` when this node no longer holds the lock.
    pub(crate) fn renew(&mut self, epoch: i64, lease: Duration) -> Result<bool, StorageError> {
        self.run(|c, t, id| {
            let n = c.execute(
                &format!(
                    "UPDATE {t} SET valid_until = now() + make_interval(secs => $4) \
                     WHERE ha_key = $1 AND ha_identity = $2 AND epoch = $3 AND valid_until >= now()"
                ),
                &[&LOCK_KEY, &id, &epoch, &secs(lease)],
            )?;
            Ok(n == 1)
        })
    }

    /// Gives the lock up (its lease ends now); the epoch stays, so the next holder's
    /// is higher.
    pub(crate) fn release(&mut self, epoch: i64) -> Result<(), StorageError> {
        self.run(|c, t, id| {
            c.execute(
                &format!(
                    "UPDATE {t} SET valid_until = now() - interval '1 second' \
                     WHERE ha_key = $1 AND ha_identity = $2 AND epoch = $3"
                ),
                &[&LOCK_KEY, &id, &epoch],
            )?;
            Ok(())
        })
    }

    /// The holder's value (its addresses), if the lock is held.
    pub(crate) fn leader(&mut self) -> Result<Option<String>, StorageError> {
        self.run(|c, t, _| {
            let row = c.query_opt(
                &format!("SELECT ha_value FROM {t} WHERE ha_key = $1 AND valid_until >= now()"),
                &[&LOCK_KEY],
            )?;
            Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
        })
    }

    /// Records that this node is alive (for `sys/ha-status`) for `ttl`.
    pub(crate) fn echo(&mut self, value: &str, ttl: Duration) -> Result<(), StorageError> {
        self.run(|c, t, id| {
            let key = format!("{NODE_PREFIX}{id}");
            c.execute(
                &format!(
                    "INSERT INTO {t} (ha_key, ha_identity, ha_value, valid_until) \
                     VALUES ($1, $2, $3, now() + make_interval(secs => $4)) \
                     ON CONFLICT (ha_key) DO UPDATE SET ha_value = EXCLUDED.ha_value, \
                     valid_until = EXCLUDED.valid_until"
                ),
                &[&key, &id, &value, &secs(ttl)],
            )?;
            Ok(())
        })
    }

    /// The nodes whose echo is recent (within `ttl`), and forgets long-gone ones.
    pub(crate) fn members(&mut self, ttl: Duration) -> Result<Vec<Member>, StorageError> {
        self.run(|c, t, _| {
            c.execute(
                &format!(
                    "DELETE FROM {t} WHERE ha_key LIKE 'node/%' AND valid_until < now() - interval '1 hour'"
                ),
                &[],
            )?;
            let rows = c.query(
                &format!(
                    "SELECT ha_value, extract(epoch FROM valid_until)::float8 - $1 FROM {t} \
                     WHERE ha_key LIKE 'node/%' AND valid_until >= now() ORDER BY ha_key"
                ),
                &[&secs(ttl)],
            )?;
            Ok(rows
                .iter()
                .map(|r| Member {
                    value: r.get::<_, Option<String>>(0).unwrap_or_default(),
                    last_echo: SystemTime::UNIX_EPOCH
                        + Duration::from_secs_f64(r.get::<_, f64>(1).max(0.0)),
                })
                .collect())
        })
    }

    /// Connects (or reconnects) without running anything: a start-up check.
    pub(crate) fn connect(&mut self) -> Result<(), StorageError> {
        self.client().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Backend, BatchOp, PostgresBackend};

    fn pg_url() -> String {
        std::env::var("LOCKANA_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    fn tables() -> (String, String) {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        (
            format!("lockana_test_{tag}"),
            format!("lockana_test_ha_{tag}"),
        )
    }

    fn drop_tables(tables: &[&str]) {
        let mut c = Client::connect(&pg_url(), NoTls).unwrap();
        for t in tables {
            c.batch_execute(&format!("DROP TABLE IF EXISTS {t}"))
                .unwrap();
        }
    }

    #[test]
    fn lock_is_exclusive_renewable_and_its_epoch_grows() {
        let (data, ha) = tables();
        let (_backend, _fence) = PostgresBackend::open_ha(&pg_url(), &data, &ha).unwrap();
        let mut a = HaLock::new(&pg_url(), &ha, "node-a").unwrap();
        let mut b = HaLock::new(&pg_url(), &ha, "node-b").unwrap();
        let lease = Duration::from_secs(5);
        let first = a
            .acquire("a", lease)
            .unwrap()
            .expect("a free lock is taken");
        assert_eq!(
            b.acquire("b", lease).unwrap(),
            None,
            "a held lock is not taken"
        );
        assert!(a.renew(first, lease).unwrap());
        assert_eq!(b.leader().unwrap().as_deref(), Some("a"));
        a.release(first).unwrap();
        assert_eq!(b.leader().unwrap(), None);
        let second = b
            .acquire("b", lease)
            .unwrap()
            .expect("a released lock is taken");
        assert!(second > first);
        assert!(
            !a.renew(first, lease).unwrap(),
            "the deposed holder cannot renew"
        );
        // A lease that ran out is taken over without a release.
        let third = a.acquire("a", lease).unwrap();
        assert_eq!(third, None);
        assert!(b.renew(second, Duration::from_millis(1)).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert!(a.acquire("a", lease).unwrap().is_some_and(|e| e > second));
        a.echo("{}", lease).unwrap();
        assert_eq!(a.members(lease).unwrap().len(), 1);
        drop_tables(&[&data, &ha]);
    }

    /// Epoch fencing: once another node took the lock, a write of the old holder
    /// fails and leaves nothing behind; a standby's writes are refused outright.
    #[test]
    fn deposed_node_write_is_not_committed() {
        let (data, ha) = tables();
        let (backend, fence) = PostgresBackend::open_ha(&pg_url(), &data, &ha).unwrap();
        let mut a = HaLock::new(&pg_url(), &ha, "node-a").unwrap();
        let mut b = HaLock::new(&pg_url(), &ha, "node-b").unwrap();
        let epoch = a.acquire("a", Duration::from_secs(5)).unwrap().unwrap();
        fence.set(FenceState::Held {
            identity: "node-a".into(),
            epoch,
        });
        backend.put("k", b"1").unwrap();
        a.release(epoch).unwrap();
        b.acquire("b", Duration::from_secs(5)).unwrap().unwrap();
        let err = backend
            .batch(vec![
                BatchOp::Put("k".into(), b"2".to_vec()),
                BatchOp::Put("j".into(), b"3".to_vec()),
            ])
            .unwrap_err();
        assert!(
            err.to_string().contains("does not hold the HA lock"),
            "{err}"
        );
        assert_eq!(backend.get("k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(backend.get("j").unwrap(), None);
        fence.set(FenceState::Closed);
        assert!(backend.put("j", b"3").is_err());
        drop(backend);
        drop_tables(&[&data, &ha]);
    }
}
