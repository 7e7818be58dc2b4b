//! `sys/metrics`: the vault's [`lockana::MetricsSnapshot`] rendered in Vault's two
//! shapes, go-metrics' in-memory JSON (the default) and the Prometheus text format
//! (`?format=prometheus`), with Vault's access rules and error texts.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use lockana::{HistogramValue, Metric, MetricValue, MetricsSnapshot, RawBody};
use serde_json::{Map, Value, json};

use super::response::{self, HttpResponse};
use super::{Handler, HttpError};

/// The Prometheus text exposition format, as Vault labels it.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Vault's content type for `sys/metrics` format errors.
const ERROR_CONTENT_TYPE: &str = "text/plain";

/// What `sys/metrics` serves on a listener: Vault's `telemetry` block and the
/// listener's `telemetry { unauthenticated_metrics_access }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Telemetry {
    /// `prometheus_retention_time`; zero turns `?format=prometheus` off with Vault's
    /// 400 `prometheus is not enabled`. Lockana's series are cumulative and never
    /// expire, so any other value only turns the format on.
    pub prometheus_retention_time: Duration,
    /// `disable_hostname`; when false, gauge names carry the host name
    /// (`vault.<host>.core.unsealed`), as Vault's do.
    pub disable_hostname: bool,
    /// The listener's `unauthenticated_metrics_access`: serve `sys/metrics` without a
    /// token (and without the vault's audit log), even while sealed.
    pub unauthenticated_metrics_access: bool,
}

impl Telemetry {
    /// What Vault's dev server uses: Prometheus on (24 h retention), no host names,
    /// metrics readable without a token.
    pub fn dev() -> Self {
        Telemetry {
            prometheus_retention_time: Duration::from_secs(24 * 3600),
            disable_hostname: true,
            unauthenticated_metrics_access: true,
        }
    }
}

/// Answers `GET sys/metrics`. Without unauthenticated access the request goes
/// through the vault first (token, `read` on `sys/metrics`, audit), as in Vault; the
/// format is checked after that, so a caller without a token learns nothing.
pub(super) fn answer<H: Handler>(
    handler: &H,
    telemetry: &Telemetry,
    req: lockana::Request,
    accept: Option<&str>,
) -> Result<HttpResponse, HttpError> {
    let format = match req.data.get("format") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(v)) => v.first().and_then(Value::as_str).unwrap_or("").to_owned(),
        _ => String::new(),
    };
    if !telemetry.unauthenticated_metrics_access {
        handler
            .handle(req)
            .map_err(|e| response::error_response(&e))?;
    }
    let format = if format.is_empty() {
        format_from_accept(accept)
    } else {
        format
    };
    let Some(snapshot) = handler.metrics() else {
        return Err(HttpError::empty(StatusCode::NOT_FOUND));
    };
    Ok(match format.as_str() {
        "" => raw(
            StatusCode::OK,
            "application/json",
            json(&snapshot, telemetry),
        ),
        "prometheus" if telemetry.prometheus_retention_time.is_zero() => {
            text_error("prometheus is not enabled".to_owned())
        }
        "prometheus" => raw(
            StatusCode::OK,
            PROMETHEUS_CONTENT_TYPE,
            prometheus(&snapshot, telemetry).into_bytes(),
        ),
        other => text_error(format!(
            "metric response format {} unknown",
            go_quote(other)
        )),
    })
}

/// Vault's `FormatFromRequest`: an OpenMetrics or Prometheus `Accept` asks for the
/// Prometheus format.
fn format_from_accept(accept: Option<&str>) -> String {
    match accept {
        Some(a)
            if a.starts_with("application/openmetrics-text")
                || a.contains("prometheus/telemetry") =>
        {
            "prometheus".to_owned()
        }
        _ => String::new(),
    }
}

fn raw(status: StatusCode, content_type: &'static str, bytes: Vec<u8>) -> HttpResponse {
    response::raw_response(
        status,
        RawBody {
            content_type,
            bytes,
        },
    )
}

fn text_error(msg: String) -> HttpResponse {
    raw(
        StatusCode::BAD_REQUEST,
        ERROR_CONTENT_TYPE,
        msg.into_bytes(),
    )
}

/// Go's `%q` for the strings a query can carry (JSON's escaping agrees on the
/// printable ASCII and the common escapes).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The host name, as Go's `os.Hostname` reads it on Linux.
fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

/// A metric's name as rendered: gauges get the host name after the service prefix
/// unless `disable_hostname` is set (go-metrics' `EnableHostname`).
fn display_name(m: &Metric, telemetry: &Telemetry) -> String {
    let host = hostname();
    if telemetry.disable_hostname || host.is_empty() || !matches!(m.value, MetricValue::Gauge(_)) {
        return m.name.clone();
    }
    match m.name.split_once('.') {
        Some((service, rest)) => format!("{service}.{host}.{rest}"),
        None => m.name.clone(),
    }
}

fn labels_json(m: &Metric) -> Value {
    Value::Object(
        m.labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<String, Value>>(),
    )
}

/// go-metrics' in-memory sink shape (`Timestamp`, `Gauges`, `Points`, `Counters`,
/// `Samples`). Vault reports the current 10-second interval; Lockana's values are
/// totals since the vault was opened, and `Rate` is per second over that time.
fn json(snapshot: &MetricsSnapshot, telemetry: &Telemetry) -> Vec<u8> {
    let secs = snapshot.uptime.as_secs_f64().max(1.0);
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
    let mut samples = Vec::new();
    for m in &snapshot.metrics {
        let name = display_name(m, telemetry);
        match &m.value {
            MetricValue::Gauge(v) => {
                gauges.push(json!({"Name": name, "Value": v, "Labels": labels_json(m)}));
            }
            MetricValue::Counter(n) => {
                // Every increment is 1.
                let (sum, one) = (*n as f64, if *n > 0 { 1.0 } else { 0.0 });
                counters.push(json!({
                    "Name": name, "Count": n, "Rate": sum / secs, "Sum": sum,
                    "Min": one, "Max": one, "Mean": one, "Stddev": 0.0,
                    "Labels": labels_json(m),
                }));
            }
            MetricValue::Histogram(h) => {
                let mean = if h.count > 0 {
                    h.sum / h.count as f64
                } else {
                    0.0
                };
                samples.push(json!({
                    "Name": name, "Count": h.count, "Rate": h.sum / secs, "Sum": h.sum,
                    "Min": h.min, "Max": h.max, "Mean": mean, "Stddev": stddev(h, mean),
                    "Labels": labels_json(m),
                }));
            }
            _ => {}
        }
    }
    let body = json!({
        "Timestamp": go_timestamp(SystemTime::now()),
        "Gauges": gauges,
        "Points": [],
        "Counters": counters,
        "Samples": samples,
    });
    serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
}

/// A standard deviation estimated from the buckets (each value taken at its
/// bucket's midpoint, kept within the smallest and largest value seen).
fn stddev(h: &HistogramValue, mean: f64) -> f64 {
    if h.count < 2 {
        return 0.0;
    }
    let (mut prev_bound, mut prev_count, mut acc) = (0.0f64, 0u64, 0.0f64);
    for (bound, cumulative) in &h.buckets {
        let n = cumulative - prev_count;
        let mid = ((prev_bound + bound) / 2.0).clamp(h.min, h.max);
        acc += n as f64 * (mid - mean).powi(2);
        (prev_bound, prev_count) = (*bound, *cumulative);
    }
    acc += (h.count - prev_count) as f64 * (h.max - mean).powi(2);
    (acc / (h.count - 1) as f64).sqrt()
}

/// Go's `time.Time.String()` for a UTC time, truncated to the 10-second interval as
/// go-metrics' interval start is: `2026-11-29 23:19:30 +0000 UTC`.
fn go_timestamp(now: SystemTime) -> String {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs - secs % 10);
    let rfc = humantime::format_rfc3339_seconds(at).to_string();
    format!(
        "{} +0000 UTC",
        rfc.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// A name in Prometheus' alphabet: what go-metrics' Prometheus sink does (`.` and
/// `-` and anything else outside `[a-zA-Z0-9_:]` become `_`).
fn prom_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn prom_labels(labels: &[(String, String)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra)
        .map(|(k, v)| format!("{}=\"{}\"", prom_name(k), escape_label(v)))
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    parts.sort();
    format!("{{{}}}", parts.join(","))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Go's `%g`-like float text Prometheus parsers accept.
fn prom_float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{v}")
    }
}

/// The Prometheus text exposition format, one family per name (`# HELP`, `# TYPE`,
/// then its series). Latencies are milliseconds, as Vault's are; they are
/// histograms (`_bucket`, `_sum`, `_count`) where Vault's are summaries.
fn prometheus(snapshot: &MetricsSnapshot, telemetry: &Telemetry) -> String {
    let mut out = String::new();
    let mut last_family = String::new();
    for m in &snapshot.metrics {
        let name = prom_name(&display_name(m, telemetry));
        let kind = match m.value {
            MetricValue::Counter(_) => "counter",
            MetricValue::Gauge(_) => "gauge",
            MetricValue::Histogram(_) => "histogram",
            _ => continue,
        };
        if name != last_family {
            let _ = writeln!(out, "# HELP {name} {}", m.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            last_family.clone_from(&name);
        }
        match &m.value {
            MetricValue::Counter(n) => {
                let _ = writeln!(out, "{name}{} {n}", prom_labels(&m.labels, None));
            }
            MetricValue::Gauge(v) => {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    prom_labels(&m.labels, None),
                    prom_float(*v)
                );
            }
            MetricValue::Histogram(h) => {
                for (bound, cumulative) in &h.buckets {
                    let le = prom_float(*bound);
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        prom_labels(&m.labels, Some(("le", &le)))
                    );
                }
                let labels = prom_labels(&m.labels, None);
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    prom_labels(&m.labels, Some(("le", "+Inf"))),
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{labels} {}", prom_float(h.sum));
                let _ = writeln!(out, "{name}_count{labels} {}", h.count);
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_go_metrics_prometheus_sink() {
        assert_eq!(
            prom_name("vault.route.create.secret-"),
            "vault_route_create_secret_"
        );
        assert_eq!(
            prom_name("lockana.storage.commit"),
            "lockana_storage_commit"
        );
        assert_eq!(prom_name("vault.route.read.kv-é"), "vault_route_read_kv__");
    }

    #[test]
    fn timestamp_is_go_time_string_on_a_ten_second_boundary() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_994_377);
        assert_eq!(go_timestamp(t), "2026-11-29 23:19:30 +0000 UTC");
    }

    #[test]
    fn accept_header_selects_prometheus_as_vault_does() {
        assert_eq!(
            format_from_accept(Some("application/openmetrics-text; version=1.0.0")),
            "prometheus"
        );
        assert_eq!(
            format_from_accept(Some("text/plain, prometheus/telemetry")),
            "prometheus"
        );
        assert_eq!(format_from_accept(Some("application/json")), "");
        assert_eq!(format_from_accept(None), "");
    }

    #[test]
    fn label_values_are_escaped() {
        let labels = vec![("type".to_owned(), "a\"b\\c\nd".to_owned())];
        assert_eq!(
            prom_labels(&labels, Some(("le", "0.5"))),
            r#"{le="0.5",type="a\"b\\c\nd"}"#
        );
    }
}
