//! Time, behind a trait so TTL, lockout and version-expiry tests run on a fake clock.

use std::time::{Duration, SystemTime};

/// A source of wall-clock time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct FakeClock(parking_lot::Mutex<SystemTime>);

impl FakeClock {
    /// A clock stopped at `start`.
    pub fn new(start: SystemTime) -> Self {
        FakeClock(parking_lot::Mutex::new(start))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.0.lock() += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock()
    }
}

/// RFC 3339 with nanoseconds, as Vault prints times.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Parses a time written by [`rfc3339`].
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

/// Formats seconds as Go's `time.Duration` prints them (`0s`, `1h30m0s`).
pub(crate) fn go_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// Parses a duration the way Vault's API accepts it: an integer number of seconds
/// (number or string) or a Go-style duration (`90s`, `1h30m`, `10m`, `2d` is not Go but
/// Vault's parseutil accepts `d`).
pub(crate) fn parse_duration(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => parse_duration_str(s),
        _ => None,
    }
}

fn parse_duration_str(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let mut total: f64 = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next()?);
        }
        let value: f64 = num.parse().ok()?;
        num.clear();
        if c == 'u' || c == 'µ' || c == 'n' {
            // Go's `us`/`µs`/`ns`.
            if chars.next()? != 's' {
                return None;
            }
            unit.push('s');
        }
        let mult = match unit.as_str() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        total += value * mult;
        any = true;
    }
    if !num.is_empty() || !any || !total.is_finite() || !(0.0..=1e15).contains(&total) {
        return None;
    }
    Some(total as u64)
}

/// Go's `time.ParseDuration` error for a value [`parse_duration`] refused: scripts match
/// on Vault's `time: invalid duration "<x>"`. Durations are not secrets; the echo is
/// bounded all the same.
pub(crate) fn duration_error(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let quoted = go_quote(&s);
    let body = s.trim_start_matches(['+', '-']);
    let mut rest = body;
    if rest.is_empty() {
        return format!("time: invalid duration {quoted}");
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 || rest[..digits] == *"." {
            return format!("time: invalid duration {quoted}");
        }
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return format!("time: missing unit in duration {quoted}");
        }
        if !["ns", "us", "\u{b5}s", "\u{3bc}s", "ms", "s", "m", "h", "d"].contains(&unit) {
            return format!("time: unknown unit {} in duration {quoted}", go_quote(unit));
        }
        rest = &rest[unit_len..];
    }
    format!("time: invalid duration {quoted}")
}

/// Go's `strconv.Quote` for the ASCII cases, cut at 64 characters.
fn go_quote(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    format!("\"{}\"", cut.escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duration_errors_use_gos_text() {
        assert_eq!(
            duration_error(&json!("abc")),
            "time: invalid duration \"abc\""
        );
        assert_eq!(
            duration_error(&json!("1x")),
            "time: unknown unit \"x\" in duration \"1x\""
        );
        assert_eq!(duration_error(&json!("")), "time: invalid duration \"\"");
        assert_eq!(
            duration_error(&json!(true)),
            "time: invalid duration \"true\""
        );
    }

    #[test]
    fn durations_parse_like_vault() {
        assert_eq!(parse_duration(&json!(30)), Some(30));
        assert_eq!(parse_duration(&json!("30")), Some(30));
        assert_eq!(parse_duration(&json!("1h30m")), Some(5400));
        assert_eq!(parse_duration(&json!("10m5s")), Some(605));
        assert_eq!(parse_duration(&json!("2d")), Some(172800));
        assert_eq!(parse_duration(&json!("abc")), None);
        assert_eq!(parse_duration(&json!("5x")), None);
        assert_eq!(parse_duration(&json!(-1)), None);
        assert_eq!(go_duration(5400), "1h30m0s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(61), "1m1s");
    }
}
