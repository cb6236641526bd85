//! What a query asks of a record, and the conversions between the API's records and the stored
//! ones.

use chrono::{DateTime, TimeZone, Utc};
use regex::Regex;

use crate::{
    model::{IngestRecord, LogLevel, LogRecord, LogStream},
    store::Stored,
};

/// The longest line kept, in characters.
pub const MAX_MESSAGE_CHARS: usize = 65_536;
/// The most records in one ingest.
pub const MAX_BATCH: usize = 10_000;
/// The longest source name, and the longest of the other short fields.
pub const MAX_NAME_CHARS: usize = 256;
/// The longest regular expression a query may give.
pub const MAX_REGEX_CHARS: usize = 1024;

pub fn stream_name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::Log => "log",
    }
}

fn stream_of(name: &str) -> LogStream {
    match name {
        "stdout" => LogStream::Stdout,
        "stderr" => LogStream::Stderr,
        _ => LogStream::Log,
    }
}

pub fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

fn level_of(name: &str) -> Option<LogLevel> {
    Some(match name {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        _ => return None,
    })
}

pub fn to_stored(id: u64, source: &str, record: IngestRecord) -> Stored {
    Stored {
        id,
        t: record.time.timestamp_millis(),
        source: source.to_owned(),
        seq: record.seq,
        worker: record.worker,
        service: record.service,
        instance: record.instance,
        stream: stream_name(record.stream).to_owned(),
        level: record.level.map(|l| level_name(l).to_owned()),
        request_id: record.request_id,
        message: record.message,
    }
}

pub fn from_stored(s: Stored) -> LogRecord {
    LogRecord {
        id: s.id,
        time: millis_to_time(s.t),
        source: s.source,
        worker: s.worker,
        service: s.service,
        instance: s.instance,
        stream: stream_of(&s.stream),
        level: s.level.as_deref().and_then(level_of),
        message: s.message,
        request_id: s.request_id,
    }
}

pub fn millis_to_time(t: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t).single().unwrap_or_default()
}

/// The records a query or a tail wants.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub since_t: Option<i64>,
    pub until_t: Option<i64>,
    pub service: Option<String>,
    pub instance: Option<String>,
    pub worker: Option<String>,
    /// This level and above.
    pub min_level: Option<LogLevel>,
    pub request_id: Option<String>,
    /// A substring of the message.
    pub contains: Option<String>,
    pub regex: Option<Regex>,
}

impl Filter {
    /// Bytes every matching record's JSON line contains, to skip the others without parsing
    /// them: the substring as JSON writes it inside a string.
    pub fn needle(&self) -> Option<Vec<u8>> {
        let text = self
            .contains
            .as_deref()
            .or(self.request_id.as_deref())
            .filter(|s| !s.is_empty())?;
        let quoted = serde_json::to_string(text).ok()?;
        Some(quoted.as_bytes()[1..quoted.len() - 1].to_vec())
    }

    /// Whether a segment whose times span `[min_t, max_t]` can hold a match.
    pub fn overlaps(&self, min_t: i64, max_t: i64) -> bool {
        self.since_t.is_none_or(|since| max_t >= since)
            && self.until_t.is_none_or(|until| min_t < until)
    }

    pub fn matches(&self, r: &Stored) -> bool {
        fn eq(want: &Option<String>, have: &Option<String>) -> bool {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        }
        self.since_t.is_none_or(|since| r.t >= since)
            && self.until_t.is_none_or(|until| r.t < until)
            && eq(&self.service, &r.service)
            && eq(&self.instance, &r.instance)
            && eq(&self.worker, &r.worker)
            && eq(&self.request_id, &r.request_id)
            && self.min_level.is_none_or(|min| {
                r.level
                    .as_deref()
                    .and_then(level_of)
                    .is_some_and(|l| l >= min)
            })
            && self
                .contains
                .as_deref()
                .is_none_or(|needle| r.message.contains(needle))
            && self.regex.as_ref().is_none_or(|re| re.is_match(&r.message))
    }
}
