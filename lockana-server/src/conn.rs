//! Guards on connections rather than requests: deadlines for clients that are silent,
//! slow to send their headers or idle between requests, and caps on how many
//! connections are open at once, overall and per client address.
//!
//! hyper times nothing before a request's first byte, and its header timeout starts
//! only once bytes arrive, so a socket that never sends anything would be held
//! forever. Here the connection's IO records when bytes arrive, the service records
//! when requests start and end, and a watchdog beside the connection closes it when
//! the phase it is in outlives its deadline (Vault's `http_read_header_timeout` and
//! `http_idle_timeout`; `http_read_timeout` for the body is kept by the request).
//! With `http_write_timeout`, an answer must also be written within it of its
//! request's headers: the IO records when a write waits on a client that is not
//! reading, and the watchdog closes the connection once that deadline passes.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
// tokio's clock, so tests can run it paused.
use tokio::time::Instant;

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request under way: waiting for a first byte since `since`. `first`: no
    /// request yet on this connection (the header timeout applies from the accept).
    Waiting { since: Instant, first: bool },
    /// Bytes of a request have arrived since `since`, its headers are not complete.
    Head { since: Instant },
    /// At least one request is being served; its own clocks apply.
    Busy,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    active: usize,
    /// When the answer to the latest request must be written by (`http_write_timeout`).
    write_by: Option<Instant>,
    /// A write is waiting for the client to read.
    write_blocked: bool,
}

/// One connection's deadlines, shared by its IO, its service and its watchdog.
#[derive(Debug)]
pub(crate) struct ConnClock {
    state: Mutex<State>,
    header_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No complete request headers in time (`http_read_header_timeout`), including a
    /// connection that never sent a byte.
    Header,
    /// Idle between requests for longer than `http_idle_timeout`.
    Idle,
    /// An answer not written (or still being served) `http_write_timeout` after its
    /// request's headers.
    Write,
}

impl ConnClock {
    /// A clock for a connection accepted now; zero durations mean no deadline.
    pub(crate) fn new(
        header_timeout: Duration,
        idle_timeout: Duration,
        write_timeout: Duration,
    ) -> Arc<ConnClock> {
        Arc::new(ConnClock {
            state: Mutex::new(State {
                phase: Phase::Waiting {
                    since: Instant::now(),
                    first: true,
                },
                active: 0,
                write_by: None,
                write_blocked: false,
            }),
            header_timeout,
            idle_timeout,
            write_timeout,
        })
    }

    /// A write started or stopped waiting for the client to read.
    fn write_blocked(&self, blocked: bool) {
        self.state.lock().write_blocked = blocked;
    }

    /// Bytes arrived: a waiting connection now has a request on its way.
    fn bytes_read(&self) {
        let mut s = self.state.lock();
        if let Phase::Waiting { since, first } = s.phase {
            // A new connection's header clock runs from the accept, so sending a
            // byte just before the deadline buys nothing.
            let since = if first { since } else { Instant::now() };
            s.phase = Phase::Head { since };
        }
    }

    /// A request's headers are complete and it is being served. Returns when its
    /// first byte arrived, for its body's `http_read_timeout`.
    fn request_started(&self) -> Instant {
        let mut s = self.state.lock();
        let started = match s.phase {
            Phase::Head { since } => since,
            _ => Instant::now(),
        };
        s.phase = Phase::Busy;
        s.active += 1;
        if !self.write_timeout.is_zero() {
            // Go's WriteTimeout runs from the end of the request's headers.
            s.write_by = Some(Instant::now() + self.write_timeout);
        }
        started
    }

    /// A request has been answered; with none left the connection waits again.
    fn request_finished(&self) {
        let mut s = self.state.lock();
        s.active = s.active.saturating_sub(1);
        if s.active == 0 {
            s.phase = Phase::Waiting {
                since: Instant::now(),
                first: false,
            };
        }
    }

    fn deadline(&self) -> Option<(Instant, Expired)> {
        let s = self.state.lock();
        let phase = match s.phase {
            Phase::Waiting { since, first: true } | Phase::Head { since } => {
                Some((since, self.header_timeout, Expired::Header))
            }
            Phase::Waiting { since, .. } => Some((since, self.idle_timeout, Expired::Idle)),
            Phase::Busy => None,
        }
        .filter(|(_, limit, _)| !limit.is_zero())
        .map(|(since, limit, why)| (since + limit, why));
        // The answer's deadline holds while it is being served or written; an answer
        // written in full leaves no write waiting.
        let write = s
            .write_by
            .filter(|_| matches!(s.phase, Phase::Busy) || s.write_blocked)
            .map(|at| (at, Expired::Write));
        match (phase, write) {
            (Some(p), Some(w)) => Some(if w.0 < p.0 { w } else { p }),
            (p, w) => p.or(w),
        }
    }

    /// Completes when the connection has outlived the deadline of its phase.
    ///
    /// Nothing wakes the watchdog when the phase changes (that cost a task wake-up and
    /// a new timer per change, three per request); it looks again at least every
    /// `check`, the shortest deadline in use, and sleeps no further than the deadline
    /// it sees. That is enough: a deadline set after the watchdog last looked is at
    /// least `check` after that moment, so it wakes up in time to see it.
    pub(crate) async fn expired(&self) -> Expired {
        let shortest = [self.header_timeout, self.idle_timeout, self.write_timeout]
            .into_iter()
            .filter(|d| !d.is_zero())
            .min();
        let Some(check) = shortest else {
            return std::future::pending().await;
        };
        loop {
            let now = Instant::now();
            let next = match self.deadline() {
                Some((at, why)) if at <= now => return why,
                Some((at, _)) => at.min(now + check),
                None => now + check,
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

/// Keeps a connection's clock in its busy phase while held: by the request's future,
/// and by a task still draining a body the answer did not need (its late bytes are not
/// the start of a next request). The connection waits again when the last one drops.
pub(crate) struct InFlight(Arc<ConnClock>);

impl InFlight {
    /// Marks a request started on `clock`; returns when its first byte arrived (for
    /// its body's `http_read_timeout`) and the guard.
    pub(crate) fn start(clock: &Arc<ConnClock>) -> (Instant, Arc<InFlight>) {
        let started = clock.request_started();
        (started, Arc::new(InFlight(Arc::clone(clock))))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A connection's IO that tells its [`ConnClock`] when bytes arrive.
pub(crate) struct ClockedIo<I> {
    inner: I,
    clock: Arc<ConnClock>,
    /// What the clock was last told of writes waiting (told only on a change).
    write_blocked: bool,
}

impl<I> ClockedIo<I> {
    pub(crate) fn new(inner: I, clock: Arc<ConnClock>) -> Self {
        ClockedIo {
            inner,
            clock,
            write_blocked: false,
        }
    }

    /// Tells the clock when writes start or stop waiting for the client, if it keeps
    /// a write deadline.
    fn wrote<T>(&mut self, polled: Poll<T>) -> Poll<T> {
        if !self.clock.write_timeout.is_zero() {
            let blocked = polled.is_pending();
            if blocked != self.write_blocked {
                self.write_blocked = blocked;
                self.clock.write_blocked(blocked);
            }
        }
        polled
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ClockedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ClockedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How often a refused connection is logged at most (per cap).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Caps on open connections, checked at accept.
#[derive(Debug)]
pub(crate) struct ConnCaps {
    total: Arc<Semaphore>,
    max_total: usize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    max_per_client: usize,
    exempt_loopback: bool,
    total_log: RefusalLog,
    client_log: RefusalLog,
}

/// A rate-limited warning: the first refusal logs, later ones are counted and
/// reported with the next line.
#[derive(Debug)]
struct RefusalLog {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RefusalLog {
    fn new() -> Self {
        RefusalLog {
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log now, and how many refusals went unlogged before this one.
    fn should_log(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock();
        if last.is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// A connection's place under the caps; released when dropped.
#[derive(Debug)]
pub(crate) struct Admission {
    _total: OwnedSemaphorePermit,
    client: Option<(Arc<ConnCaps>, IpAddr)>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some((caps, ip)) = self.client.take() {
            let mut map = caps.per_client.lock();
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

impl ConnCaps {
    /// Caps of `max_total` connections (at least 1) and `max_per_client` per address
    /// (0: none; loopback exempt when `exempt_loopback`).
    pub(crate) fn new(max_total: usize, max_per_client: usize, exempt_loopback: bool) -> Arc<Self> {
        let max_total = max_total.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(ConnCaps {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_client: Mutex::new(HashMap::new()),
            max_per_client,
            exempt_loopback,
            total_log: RefusalLog::new(),
            client_log: RefusalLog::new(),
        })
    }

    /// Admits a connection from `ip`, or `None` (logged, at most once per 10 s per
    /// cap) when a cap is reached: the caller closes the socket.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let Ok(permit) = Arc::clone(&self.total).try_acquire_owned() else {
            if let Some(suppressed) = self.total_log.should_log() {
                tracing::warn!(
                    client = %ip,
                    max_connections = self.max_total,
                    refused_since_last_report = suppressed,
                    "connection refused: max_connections reached"
                );
            }
            return None;
        };
        let capped = self.max_per_client > 0 && !(self.exempt_loopback && ip.is_loopback());
        if !capped {
            return Some(Admission {
                _total: permit,
                client: None,
            });
        }
        {
            let mut map = self.per_client.lock();
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_client {
                drop(map);
                if let Some(suppressed) = self.client_log.should_log() {
                    tracing::warn!(
                        client = %ip,
                        max_connections_per_client = self.max_per_client,
                        refused_since_last_report = suppressed,
                        "connection refused: max_connections_per_client reached"
                    );
                }
                return None;
            }
            *n += 1;
        }
        Some(Admission {
            _total: permit,
            client: Some((Arc::clone(self), ip)),
        })
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), read from `/proc/self/limits`
/// (Linux; `None` elsewhere or when unlimited).
pub(crate) fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const V4B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    const LOOP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn per_client_cap_counts_each_address_and_releases_on_drop() {
        let caps = ConnCaps::new(100, 2, true);
        let a1 = caps.admit(V4).expect("first");
        let _a2 = caps.admit(V4).expect("second");
        assert!(caps.admit(V4).is_none(), "third from the same address");
        assert!(caps.admit(V4B).is_some(), "another address is not affected");
        drop(a1);
        assert!(
            caps.admit(V4).is_some(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn total_cap_applies_to_every_address_loopback_included() {
        let caps = ConnCaps::new(2, 0, true);
        let _a = caps.admit(LOOP).expect("first");
        let _b = caps.admit(V4).expect("second");
        assert!(caps.admit(V4B).is_none());
        assert!(caps.admit(LOOP).is_none());
    }

    #[test]
    fn loopback_is_exempt_from_the_per_client_cap_only_when_asked() {
        let exempt = ConnCaps::new(100, 1, true);
        let _a = exempt.admit(LOOP).expect("first");
        assert!(exempt.admit(LOOP).is_some());
        let strict = ConnCaps::new(100, 1, false);
        let _b = strict.admit(LOOP).expect("first");
        assert!(strict.admit(LOOP).is_none());
    }

    #[test]
    fn refusals_are_logged_once_per_interval() {
        let log = RefusalLog::new();
        assert_eq!(log.should_log(), Some(0));
        assert_eq!(log.should_log(), None);
        assert_eq!(log.should_log(), None);
        assert_eq!(log.suppressed.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_connection_expires_at_the_header_timeout() {
        let clock = ConnClock::new(
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::ZERO,
        );
        let started = tokio::time::Instant::now();
        assert_eq!(clock.expired().await, Expired::Header);
        assert!(started.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_expires_at_the_idle_timeout_not_before() {
        let clock = ConnClock::new(
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::ZERO,
        );
        clock.bytes_read();
        clock.request_started();
        clock.request_finished();
        let started = tokio::time::Instant::now();
        assert_eq!(clock.expired().await, Expired::Idle);
        assert!(started.elapsed() >= Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn answer_not_written_in_time_expires_at_the_write_timeout() {
        let clock = ConnClock::new(
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(30),
        );
        clock.bytes_read();
        let started = tokio::time::Instant::now();
        let (_, in_flight) = InFlight::start(&clock);
        drop(in_flight);
        // Answered, but its write waits on a client that does not read.
        clock.write_blocked(true);
        assert_eq!(clock.expired().await, Expired::Write);
        assert!(started.elapsed() >= Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn written_answer_leaves_only_the_idle_timeout() {
        let clock = ConnClock::new(
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        clock.bytes_read();
        let started = tokio::time::Instant::now();
        let (_, in_flight) = InFlight::start(&clock);
        drop(in_flight);
        clock.write_blocked(true);
        clock.write_blocked(false);
        assert_eq!(clock.expired().await, Expired::Idle);
        assert!(started.elapsed() >= Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn answer_still_being_served_expires_at_the_write_timeout() {
        let clock = ConnClock::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(20),
        );
        let (_, _in_flight) = InFlight::start(&clock);
        let started = tokio::time::Instant::now();
        assert_eq!(clock.expired().await, Expired::Write);
        assert!(started.elapsed() >= Duration::from_secs(20));
    }

    /// The IO tells the clock when a write waits and when it goes through.
    #[tokio::test(start_paused = true)]
    async fn io_reports_writes_that_wait_on_the_client() {
        use tokio::io::AsyncWriteExt;
        let clock = ConnClock::new(Duration::ZERO, Duration::ZERO, Duration::from_secs(5));
        let (near, mut far) = tokio::io::duplex(16);
        let mut io = ClockedIo::new(near, Arc::clone(&clock));
        let (_, in_flight) = InFlight::start(&clock);
        drop(in_flight);
        let write = tokio::spawn(async move {
            let _ = io.write_all(&[7u8; 64]).await;
            io
        });
        // The far side reads nothing: the write waits, and the deadline closes it.
        assert_eq!(clock.expired().await, Expired::Write);
        let mut sink = vec![0u8; 64];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut sink)
            .await
            .expect("read");
        let _io = write.await.expect("writer");
        assert!(!clock.state.lock().write_blocked);
    }

    /// A partial request on a connection idle for minutes is cut at the header
    /// deadline, though nothing told the watchdog the phase changed.
    #[tokio::test(start_paused = true)]
    async fn header_deadline_set_while_idle_is_kept_on_time() {
        let clock = ConnClock::new(
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::ZERO,
        );
        clock.bytes_read();
        let (_, in_flight) = InFlight::start(&clock);
        drop(in_flight);
        let watchdog = {
            let clock = Arc::clone(&clock);
            tokio::spawn(async move { clock.expired().await })
        };
        tokio::time::sleep(Duration::from_secs(203)).await;
        let partial_at = tokio::time::Instant::now();
        clock.bytes_read();
        assert_eq!(watchdog.await.expect("watchdog"), Expired::Header);
        let cut_after = partial_at.elapsed();
        assert!(
            cut_after >= Duration::from_secs(10) && cut_after <= Duration::from_secs(11),
            "cut {cut_after:?} after the partial request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connection_never_expires() {
        let clock = ConnClock::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::ZERO,
        );
        clock.request_started();
        let waited = tokio::time::timeout(Duration::from_secs(3600), clock.expired()).await;
        assert!(waited.is_err(), "a connection serving a request was closed");
    }
}
