//! A per-client-address token bucket, checked before a request's body is read.
//!
//! Defaults: 2,000 requests/s with bursts of 4,000 per address; loopback clients are
//! exempt unless the config says otherwise (local tools and benchmarks; a reverse
//! proxy on the same host should set `rate_limit_exempt_loopback = false`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

/// Requests per second allowed per client address by default.
pub const DEFAULT_RATE_PER_SECOND: f64 = 2000.0;
/// Burst allowed per client address by default.
pub const DEFAULT_RATE_BURST: f64 = 4000.0;
/// Addresses tracked before idle buckets are dropped.
const MAX_TRACKED: usize = 100_000;

/// The limiter's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per address (0: no limit).
    pub per_second: f64,
    /// Bucket size: how many requests may arrive at once.
    pub burst: f64,
    /// Whether 127.0.0.0/8 and ::1 are exempt.
    pub exempt_loopback: bool,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: DEFAULT_RATE_PER_SECOND,
            burst: DEFAULT_RATE_BURST,
            exempt_loopback: true,
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per client address.
pub(crate) struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip` at `now`; false when the bucket is empty.
    pub(crate) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.limit.per_second <= 0.0 || (self.limit.exempt_loopback && ip.is_loopback()) {
            return true;
        }
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            // Drop the buckets that have refilled: they hold no state worth keeping.
            let (rate, burst) = (self.limit.per_second, self.limit.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.limit.burst,
            last: now,
        });
        let refill = now.duration_since(b.last).as_secs_f64() * self.limit.per_second;
        b.tokens = (b.tokens + refill).min(self.limit.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refill_per_address_and_loopback_exempt() {
        let l = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
            exempt_loopback: true,
        });
        let t0 = Instant::now();
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.8".parse().unwrap();
        assert!((0..3).all(|_| l.allow(a, t0)));
        assert!(!l.allow(a, t0), "burst spent");
        assert!(l.allow(b, t0), "another address has its own bucket");
        assert!(
            l.allow(a, t0 + Duration::from_millis(150)),
            "refilled at 10/s"
        );
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..100).all(|_| l.allow(lo, t0)));
        let strict = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 1.0,
            exempt_loopback: false,
        });
        assert!(strict.allow(lo, t0) && !strict.allow(lo, t0));
        let off = RateLimiter::new(RateLimit {
            per_second: 0.0,
            burst: 0.0,
            exempt_loopback: false,
        });
        assert!((0..100).all(|_| off.allow(a, t0)));
    }
}
