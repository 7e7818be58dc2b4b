//! PostgreSQL: one table of (key, value) rows, for teams that keep their data in a
//! database they already back up and replicate. Each batch is one transaction; the
//! default `synchronous_commit = on` makes a commit durable before it returns.
//!
//! The `postgres` client runs its own small runtime, which must not be entered from
//! an async task (the server answers reads inline on its runtime), so one worker
//! thread owns the connection and every call is sent to it. One connection: calls
//! are served in order; a connection the server closed (a restart, an operator's
//! `pg_terminate_backend`) is made again at the next call, which fails meanwhile.
//!
//! With HA (`ha_table`), every write transaction first checks that this node still
//! holds the lock with its epoch ([`super::postgres_ha`]).

use std::sync::mpsc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use postgres::{Client, NoTls};

use super::{Backend, BatchOp};
use crate::StorageError;

use super::postgres_ha::{Fence, FenceState, fence_sql, not_active};
use std::sync::Arc;

enum Job {
    Get(String, mpsc::Sender<Result<Option<Vec<u8>>, StorageError>>),
    Scan(String, mpsc::Sender<Result<Vec<String>, StorageError>>),
    Batch(Vec<BatchOp>, mpsc::Sender<Result<(), StorageError>>),
}

pub(crate) struct PostgresBackend {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Where to connect for a snapshot read (it has its own connection, so the
    /// worker keeps serving meanwhile). May hold a password: never printed.
    url: String,
    table: String,
}

pub(super) fn pg_err(e: postgres::Error) -> StorageError {
    // The driver's text names the failing operation, never row values.
    StorageError::Backend(format!("postgresql: {e}"))
}

/// Checks a table name: letters, digits and `_` only (it is put into SQL text).
pub(super) fn check_table(table: &str) -> Result<(), StorageError> {
    let ok = !table.is_empty()
        && table.len() <= 63
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !table.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StorageError::Backend(
            "postgresql: the table name may only hold letters, digits and '_'".into(),
        ))
    }
}

/// The smallest string greater than every key that starts with `prefix`, if any.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        if let Some(next) = char::from_u32(c as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl PostgresBackend {
    /// Connects with a libpq-style `url` (`postgres://user@host/db`) and creates the
    /// table if needed.
    pub(crate) fn open(url: &str, table: &str) -> Result<Self, StorageError> {
        Self::open_fenced(url, table, None)
    }

    /// As [`open`](Self::open), for a node of an HA cluster: writes are checked
    /// against the lock in `ha_table` (created if needed) as `fence` says.
    pub(crate) fn open_ha(
        url: &str,
        table: &str,
        ha_table: &str,
    ) -> Result<(Self, Arc<Fence>), StorageError> {
        check_table(ha_table)?;
        let fence = Arc::new(Fence::default());
        let backend = Self::open_fenced(url, table, Some((ha_table.to_owned(), fence.clone())))?;
        Ok((backend, fence))
    }

    fn open_fenced(
        url: &str,
        table: &str,
        ha: Option<(String, Arc<Fence>)>,
    ) -> Result<Self, StorageError> {
        check_table(table)?;
        let mut client = Client::connect(url, NoTls).map_err(pg_err)?;
        if let Some((ha_table, _)) = &ha {
            super::postgres_ha::create_table(&mut client, ha_table)?;
        }
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (key TEXT COLLATE \"C\" PRIMARY KEY, value BYTEA NOT NULL)"
            ))
            .map_err(pg_err)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let owned = table.to_owned();
        let url_owned = url.to_owned();
        let worker = std::thread::Builder::new()
            .name("lockana-postgres".into())
            .spawn(move || serve(client, &url_owned, &owned, ha, rx))
            .map_err(|e| StorageError::Backend(format!("postgresql worker: {e}")))?;
        Ok(PostgresBackend {
            jobs: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            url: url.to_owned(),
            table: table.to_owned(),
        })
    }

    fn send<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Job) -> Result<T, StorageError> {
        let (tx, rx) = mpsc::channel();
        let gone = || StorageError::Backend("postgresql: the connection worker stopped".into());
        self.jobs
            .lock()
            .as_ref()
            .ok_or_else(gone)?
            .send(make(tx))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())
    }
}

fn serve(
    mut client: Client,
    url: &str,
    table: &str,
    ha: Option<(String, Arc<Fence>)>,
    jobs: mpsc::Receiver<Job>,
) {
    let fence_check = ha.as_ref().map(|(t, _)| fence_sql(t));
    let get_sql = format!("SELECT value FROM {table} WHERE key = $1");
    let scan_sql = format!("SELECT key FROM {table} WHERE key >= $1 AND key < $2 ORDER BY key");
    let scan_all_sql = format!("SELECT key FROM {table} WHERE key >= $1 ORDER BY key");
    let put_sql = format!(
        "INSERT INTO {table} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    );
    let del_sql = format!("DELETE FROM {table} WHERE key = $1");
    let clear_sql = format!("DELETE FROM {table}");
    let put_many_sql = format!(
        "INSERT INTO {table} (key, value) SELECT * FROM UNNEST($1::text[], $2::bytea[]) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    );
    for job in jobs {
        if client.is_closed() {
            match Client::connect(url, NoTls) {
                Ok(c) => {
                    tracing::info!("postgresql: reconnected");
                    client = c;
                }
                Err(e) => {
                    let e = pg_err(e);
                    match job {
                        Job::Get(_, r) => drop(r.send(Err(e))),
                        Job::Scan(_, r) => drop(r.send(Err(e))),
                        Job::Batch(_, r) => drop(r.send(Err(e))),
                    }
                    continue;
                }
            }
        }
        match job {
            Job::Get(key, reply) => {
                let r = client
                    .query_opt(&get_sql, &[&key])
                    .map(|row| row.map(|r| r.get::<_, Vec<u8>>(0)))
                    .map_err(pg_err);
                let _ = reply.send(r);
            }
            Job::Scan(prefix, reply) => {
                let rows = match prefix_end(&prefix) {
                    Some(end) => client.query(&scan_sql, &[&prefix, &end]),
                    None => client.query(&scan_all_sql, &[&prefix]),
                };
                let r = rows
                    .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
                    .map_err(pg_err);
                let _ = reply.send(r);
            }
            Job::Batch(ops, reply) => {
                let fence = ha.as_ref().map(|(_, f)| f.get());
                if matches!(fence, Some(FenceState::Closed)) {
                    let _ = reply.send(Err(not_active()));
                    continue;
                }
                let mut deposed = false;
                let r = (|| {
                    let mut tx = client.transaction()?;
                    if let (Some(FenceState::Held { identity, epoch }), Some(check)) =
                        (&fence, &fence_check)
                    {
                        let held =
                            tx.query_opt(check, &[&super::postgres_ha::LOCK_KEY, identity, epoch])?;
                        if held.is_none() {
                            deposed = true;
                            return tx.rollback();
                        }
                    }
                    let mut puts = Puts::default();
                    for op in &ops {
                        match op {
                            BatchOp::Put(k, v) => {
                                puts.add(&mut tx, &put_sql, &put_many_sql, k, v)?
                            }
                            BatchOp::Delete(k) => {
                                puts.flush(&mut tx, &put_sql, &put_many_sql)?;
                                tx.execute(&del_sql, &[k])?;
                            }
                            BatchOp::Clear => {
                                puts.flush(&mut tx, &put_sql, &put_many_sql)?;
                                tx.execute(&clear_sql, &[])?;
                            }
                        };
                    }
                    puts.flush(&mut tx, &put_sql, &put_many_sql)?;
                    tx.commit()
                })()
                .map_err(pg_err)
                .and_then(|()| if deposed { Err(not_active()) } else { Ok(()) });
                let _ = reply.send(r);
            }
        }
    }
}

/// Rows one multi-row insert carries.
const PUT_CHUNK: usize = 1000;

/// A run of puts, sent as multi-row inserts: a restore writes every entry in one
/// batch, and one round trip per row would make that minutes on a large vault. A
/// key already in the run starts a new statement (one statement cannot upsert a
/// row twice), so later puts still win.
#[derive(Default)]
struct Puts<'a> {
    keys: Vec<&'a str>,
    values: Vec<&'a [u8]>,
    seen: std::collections::HashSet<&'a str>,
}

impl<'a> Puts<'a> {
    fn add(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        one: &str,
        many: &str,
        key: &'a str,
        value: &'a [u8],
    ) -> Result<(), postgres::Error> {
        if self.keys.len() >= PUT_CHUNK || self.seen.contains(key) {
            self.flush(tx, one, many)?;
        }
        self.seen.insert(key);
        self.keys.push(key);
        self.values.push(value);
        Ok(())
    }

    fn flush(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        one: &str,
        many: &str,
    ) -> Result<(), postgres::Error> {
        match self.keys.len() {
            0 => {}
            1 => {
                tx.execute(one, &[&self.keys[0], &self.values[0]])?;
            }
            _ => {
                tx.execute(many, &[&self.keys, &self.values])?;
            }
        }
        self.keys.clear();
        self.values.clear();
        self.seen.clear();
        Ok(())
    }
}

/// Every row as of one instant: a REPEATABLE READ, READ ONLY transaction on a
/// connection of its own, read through a cursor in pages.
fn read_all(url: &str, table: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
    let mut client = Client::connect(url, NoTls).map_err(pg_err)?;
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg_err)?;
    let portal = tx
        .bind(&format!("SELECT key, value FROM {table} ORDER BY key"), &[])
        .map_err(pg_err)?;
    let mut out = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 2048).map_err(pg_err)?;
        if rows.is_empty() {
            break;
        }
        out.extend(
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1))),
        );
    }
    tx.commit().map_err(pg_err)?;
    Ok(out)
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop; wait so the connection closes.
        self.jobs.lock().take();
        if let Some(w) = self.worker.lock().take() {
            let _ = w.join();
        }
    }
}

impl Backend for PostgresBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.send(|tx| Job::Get(key.to_owned(), tx))?
    }

    fn scan(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.send(|tx| Job::Scan(prefix.to_owned(), tx))?
    }

    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        self.send(|tx| Job::Batch(ops, tx))?
    }

    fn entries(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        // The driver's blocking calls run their own runtime, which must not start on a
        // thread that belongs to one: give the read a thread of its own.
        let (url, table) = (self.url.clone(), self.table.clone());
        std::thread::Builder::new()
            .name("lockana-postgres-snapshot".into())
            .spawn(move || read_all(&url, &table))
            .map_err(|e| StorageError::Backend(format!("postgresql snapshot reader: {e}")))?
            .join()
            .map_err(|_| StorageError::Backend("postgresql: the snapshot reader failed".into()))?
    }

    fn kind(&self) -> &'static str {
        "postgresql"
    }
}
