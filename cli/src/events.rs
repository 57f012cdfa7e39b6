//! The history file (`--events FILE`): every tracing event with target `keel::events` is
//! appended as one JSON line `{"ts_ms", "process", "role", "event", ...fields}`, for the chaos
//! checker and for post-mortems. Lines are flushed one by one so a killed process loses at
//! most the line it was writing.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

pub struct EventsLayer {
    file: Mutex<File>,
    process: String,
    role: &'static str,
}

impl EventsLayer {
    pub fn open(path: &std::path::Path, process: &str, role: &'static str) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file: Mutex::new(file), process: process.to_string(), role })
    }
}

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        // Display-formatted numbers (epochs) become numbers.
        let v = text.parse::<i64>().map(Value::from).unwrap_or(Value::from(text.trim_matches('"').to_string()));
        self.0.insert(field.name().to_string(), v);
    }
}

impl<S: Subscriber> Layer<S> for EventsLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "keel::events" {
            return;
        }
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        line.insert("ts_ms".into(), Value::from(ts));
        line.insert("process".into(), Value::from(self.process.clone()));
        line.insert("role".into(), Value::from(self.role));
        for (k, v) in fields.0 {
            if k != "message" {
                line.insert(k, v);
            }
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(text.as_bytes());
        }
    }
}
