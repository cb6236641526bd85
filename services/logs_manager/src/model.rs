//! logs_manager's API data shapes. Doc comments are spec text.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};

pub use aerekos_common::ErrorBody;

/// Where a line came from: an instance's `stdout` or `stderr`, or a platform process's own log
/// (`log`: a worker's or the conductor's lines).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    Log,
}

/// A line's level, when the line says it (tracing's text and JSON formats, logfmt `level=`).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[oai(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One line as its sender ships it.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct IngestRecord {
    /// The record's position in its source's stream: strictly increasing within a batch and
    /// across batches. A record at or below the highest `seq` already stored for its source is a
    /// repeat (a batch sent again after a lost answer) and is skipped, so a sender may retry
    /// whole batches safely.
    pub seq: u64,
    /// When the line was written (the line's own timestamp when it has one).
    pub time: DateTime<Utc>,
    /// The worker it came from (its id).
    pub worker: Option<String>,
    /// The service of the instance that wrote it.
    pub service: Option<String>,
    /// The instance that wrote it (its id).
    pub instance: Option<String>,
    pub stream: LogStream,
    pub level: Option<LogLevel>,
    /// The line, without its newline; at most 65536 characters.
    pub message: String,
    /// The request the line is about (`X-Request-Id`), when it names one.
    pub request_id: Option<String>,
}

/// A batch of lines from one source.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct IngestRequest {
    /// The sender's stream (a worker ships as `worker/<worker id>/<spool id>`): what `seq` counts
    /// in. An API key writes only sources its `logs_manager:write:<source prefix*>` scopes name.
    pub source: String,
    /// At most 10000 records.
    pub records: Vec<IngestRecord>,
    /// How many lines the sender has dropped in all, unsent, because its buffer was full while
    /// logs_manager could not be reached (reported in `GET /stats` and the metrics).
    pub dropped_total: Option<u64>,
}

/// What an ingest stored.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct IngestResult {
    /// Records stored now.
    pub stored: u32,
    /// Records skipped because their source had already stored their `seq`.
    pub duplicates: u32,
    /// The highest `seq` stored for the source.
    pub last_seq: Option<u64>,
}

/// A stored line.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(skip_serializing_if_is_none)]
pub struct LogRecord {
    /// Its position in logs_manager's store: later arrivals have higher ids.
    pub id: u64,
    pub time: DateTime<Utc>,
    pub source: String,
    pub worker: Option<String>,
    pub service: Option<String>,
    pub instance: Option<String>,
    pub stream: LogStream,
    pub level: Option<LogLevel>,
    pub message: String,
    pub request_id: Option<String>,
}

/// A page of records, in the order asked for.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct LogPage {
    pub records: Vec<LogRecord>,
    /// Pass as `cursor` for the next page. Present while there may be more: a page can hold
    /// fewer records than `limit` (even none) when the query has read its share of the store for
    /// one request; the next page goes on from there.
    pub next_cursor: Option<String>,
}

/// One source's position.
#[derive(Object, Debug, Clone)]
pub struct SourceStats {
    pub source: String,
    /// The highest `seq` stored.
    pub last_seq: u64,
    /// Lines the source reported it dropped unsent.
    pub dropped_total: u64,
}

/// What the store holds.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct LogStats {
    /// Segment files, the one being written included.
    pub segments: u32,
    pub bytes: u64,
    pub records: u64,
    /// The oldest and newest line times kept.
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
    /// Segments removed by retention since the service started.
    pub segments_removed: u64,
    pub sources: Vec<SourceStats>,
}

#[derive(Object, Debug, Clone)]
pub struct Health {
    pub status: String,
    pub version: String,
}
