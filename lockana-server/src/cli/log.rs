//! Logging set-up for `lockana server`: text lines, or Vault's JSON lines.

use std::io::IsTerminal;

use anyhow::Context;
use lockana_server::LogFormat;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber: `level` unless LOCKANA_LOG gives a full filter.
pub(crate) fn init(level: Option<&str>, format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("LOCKANA_LOG") {
        Ok(spec) => EnvFilter::try_new(spec).context("LOCKANA_LOG is not a valid log filter")?,
        Err(_) => EnvFilter::try_new(level.unwrap_or("info")).with_context(|| {
            format!("log level {level:?} is not one of trace, debug, info, warn, error")
        })?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Standard => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.event_format(VaultJson).init(),
    }
    Ok(())
}

/// One JSON object per event with the keys Vault's `log_format = "json"` writes
/// (`@level`, `@message`, `@module`, `@timestamp`), then the event's own fields.
/// Written here rather than with tracing-subscriber's `json` feature, whose keys
/// (`level`, `fields.message`, `target`) are not the ones Vault's log pipelines read.
struct VaultJson;

impl<S, N> FormatEvent<S, N> for VaultJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let message = fields
            .0
            .remove("message")
            .unwrap_or(serde_json::Value::String(String::new()));
        let mut line = serde_json::Map::new();
        line.insert(
            "@level".into(),
            meta.level().as_str().to_ascii_lowercase().into(),
        );
        line.insert("@message".into(), message);
        line.insert("@module".into(), meta.target().into());
        line.insert(
            "@timestamp".into(),
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        line.extend(fields.0);
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// An event's fields as JSON values.
#[derive(Default)]
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}
