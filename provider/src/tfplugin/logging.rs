//! Logs as Terraform expects them from a plugin: one hclog JSON object per line on stderr.
//!
//! go-plugin's client reads each stderr line, takes `@level`, `@message` and `@timestamp`
//! (which must have exactly six fractional digits, else the line is shown raw at debug), and
//! passes every other key on as a field. So `TF_LOG=debug tofu plan` shows our lines at their
//! own levels under `provider.terraform-provider-strata`.

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// The `@module` our lines carry.
pub const MODULE: &str = "provider.strata";

/// Escape hatch for developers: a full `tracing` filter (`EnvFilter` syntax) that replaces
/// the level taken from `TF_LOG_PROVIDER`/`TF_LOG`.
pub const ENV_STRATA_LOG: &str = "STRATA_LOG";

/// Libraries under us that log every frame and packet at debug/trace; they are capped at
/// info unless `STRATA_LOG` says otherwise, so `TF_LOG=trace` stays readable.
const NOISY_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "tonic",
    "rustls",
    "tokio_rustls",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_config",
];

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    #[error("{ENV_STRATA_LOG} is not a valid filter: {0}")]
    BadFilter(#[from] tracing_subscriber::filter::ParseError),
}

/// The level Terraform's own provider logger would show, read the way OpenTofu reads it:
/// `TF_LOG_PROVIDER` wins over `TF_LOG`; `JSON` means trace; an unrecognised value means
/// trace (as in OpenTofu). With neither set the CLI shows no provider logs at all; we still
/// write warnings and errors, which cost nothing when nobody reads them and help whoever
/// runs the plugin by hand in debug mode.
pub fn level_from_env(tf_log_provider: Option<&str>, tf_log: Option<&str>) -> LevelFilter {
    let chosen = tf_log_provider
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or_else(|| tf_log.map(str::trim).filter(|v| !v.is_empty()));
    match chosen.map(str::to_ascii_uppercase).as_deref() {
        None => LevelFilter::WARN,
        Some("OFF") => LevelFilter::OFF,
        Some("ERROR") => LevelFilter::ERROR,
        Some("WARN") => LevelFilter::WARN,
        Some("INFO") => LevelFilter::INFO,
        Some("DEBUG") => LevelFilter::DEBUG,
        Some(_) => LevelFilter::TRACE,
    }
}

/// hclog's name for a level.
pub fn hclog_level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Installs the global subscriber: hclog JSON on stderr at the level from the environment.
pub fn init() -> Result<(), LoggingError> {
    let layer = HclogLayer::stderr();
    if let Ok(directives) = std::env::var(ENV_STRATA_LOG) {
        let filter = EnvFilter::builder().parse(directives)?;
        tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .try_init()?;
    } else {
        let level = level_from_env(
            std::env::var("TF_LOG_PROVIDER").ok().as_deref(),
            std::env::var("TF_LOG").ok().as_deref(),
        );
        tracing_subscriber::registry()
            .with(layer.with_filter(filter_for(level)))
            .try_init()?;
    }
    Ok(())
}

/// `level` for our code, at most info for the chatty libraries underneath.
pub fn filter_for(level: LevelFilter) -> Targets {
    let noisy = level.min(LevelFilter::INFO);
    NOISY_TARGETS
        .iter()
        .fold(Targets::new().with_default(level), |t, target| {
            t.with_target(*target, noisy)
        })
}

/// A layer that writes each event as one hclog JSON line.
pub struct HclogLayer<W> {
    make_writer: W,
    module: &'static str,
    /// Serialises whole lines so concurrent events never interleave.
    lock: Mutex<()>,
}

impl<W> HclogLayer<W>
where
    W: Fn() -> Box<dyn Write> + Send + Sync + 'static,
{
    /// Lines go to whatever `make_writer` returns (stderr in production, a buffer in tests).
    pub fn with_writer(make_writer: W) -> Self {
        Self {
            make_writer,
            module: MODULE,
            lock: Mutex::new(()),
        }
    }
}

impl HclogLayer<fn() -> Box<dyn Write>> {
    /// Lines go to the process's stderr, which go-plugin clients read.
    pub fn stderr() -> Self {
        fn make() -> Box<dyn Write> {
            Box::new(std::io::stderr())
        }
        Self::with_writer(make)
    }
}

/// Fields recorded on a span, kept in its extensions until its events need them.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::Bool(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(value.to_string()));
        self.0.insert(field.name().to_owned(), v);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

/// `2026-11-27T05:49:18.123456Z`: hclog's layout, which go-plugin parses strictly.
pub fn hclog_timestamp(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

impl<S, W> Layer<S> for HclogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Fn() -> Box<dyn Write> + Send + Sync + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("@level".into(), hclog_level(meta.level()).into());
        line.insert("@module".into(), self.module.into());
        line.insert(
            "@timestamp".into(),
            hclog_timestamp(time::OffsetDateTime::now_utc()).into(),
        );
        if let (Some(file), Some(no)) = (meta.file(), meta.line()) {
            line.insert("@caller".into(), format!("{file}:{no}").into());
        }
        // Outer spans first, so the innermost value wins on a name clash.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in fields {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let message = fields
            .remove("message")
            .and_then(|m| match m {
                Value::String(s) => Some(s),
                _ => None,
            })
            .unwrap_or_default();
        line.insert("@message".into(), message.into());
        line.extend(fields);

        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // Nothing sensible to do if stderr is gone: the client has stopped listening.
        let _ = (self.make_writer)().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn level_follows_opentofu_rules() {
        assert_eq!(level_from_env(None, None), LevelFilter::WARN);
        assert_eq!(level_from_env(None, Some("debug")), LevelFilter::DEBUG);
        assert_eq!(
            level_from_env(Some("ERROR"), Some("trace")),
            LevelFilter::ERROR
        );
        assert_eq!(level_from_env(Some(""), Some("info")), LevelFilter::INFO);
        assert_eq!(level_from_env(None, Some("JSON")), LevelFilter::TRACE);
        assert_eq!(level_from_env(None, Some("off")), LevelFilter::OFF);
        assert_eq!(level_from_env(None, Some("loud")), LevelFilter::TRACE);
        assert_eq!(level_from_env(Some("warn"), None), LevelFilter::WARN);
    }

    #[test]
    fn timestamp_has_six_fraction_digits() {
        let at = time::macros::datetime!(2026-01-02 03:04:05.007 UTC);
        assert_eq!(hclog_timestamp(at), "2026-01-02T03:04:05.007000Z");
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_become_hclog_json_lines() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let layer = HclogLayer::with_writer(move || Box::new(sink.clone()) as Box<dyn Write>);
        let subscriber =
            tracing_subscriber::registry().with(layer.with_filter(filter_for(LevelFilter::DEBUG)));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rpc", tf_rpc = "PlanResourceChange");
            let _entered = span.enter();
            tracing::debug!(tf_resource_type = "strata_cluster", count = 3, "planning");
            tracing::warn!("careful");
            tracing::trace!("filtered out");
            tracing::debug!(target: "h2", "frame noise");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["@level"], "debug");
        assert_eq!(first["@message"], "planning");
        assert_eq!(first["@module"], MODULE);
        assert_eq!(first["tf_rpc"], "PlanResourceChange");
        assert_eq!(first["tf_resource_type"], "strata_cluster");
        assert_eq!(first["count"], 3);
        let ts = first["@timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-01-02T03:04:05.007000Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
        assert_eq!(lines[1]["@level"], "warn");
        assert_eq!(lines[1]["@message"], "careful");
    }
}
