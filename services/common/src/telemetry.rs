//! Logging set-up for binaries: `RUST_LOG` filters (default `info`; s3s's per-request error lines
//! are off unless RUST_LOG names s3s), `LOG_FORMAT=json` for JSON lines.
//!
//! A process that runs a worker also keeps its own lines for log shipping
//! ([`init_capturing`]): each line, as the text format writes it (no colours), goes into a
//! bounded queue the worker's shipper takes ([`take_captured`]). A full queue drops the line and
//! counts it, rather than slowing the code that logs.

use std::{
    io,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use tracing::{Level, Metadata};
use tracing_subscriber::{
    EnvFilter, Layer as _, fmt, fmt::MakeWriter, layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

/// One of the process's own log lines.
#[derive(Debug, Clone)]
pub struct CapturedLine {
    pub level: Level,
    /// `worker` for the worker library's lines, else the process's component (`conductor` for
    /// `aerekos up`).
    pub component: &'static str,
    /// The line as the text format writes it (time, level, spans, message, fields), no newline.
    pub text: String,
}

/// Lines kept for the shipper while it is slow or not yet started.
const CAPTURE_QUEUE: usize = 16_384;

struct Capture {
    tx: tokio::sync::mpsc::Sender<CapturedLine>,
    rx: Mutex<Option<tokio::sync::mpsc::Receiver<CapturedLine>>>,
    dropped: AtomicU64,
    component: &'static str,
}

static CAPTURE: OnceLock<Capture> = OnceLock::new();

pub fn init_from_env() {
    init(None);
}

/// Like [`init_from_env`], and keeps the process's own lines for [`take_captured`];
/// `component` names the lines of code other than the worker's.
pub fn init_capturing(component: &'static str) {
    init(Some(component));
}

/// The process's captured lines (once: the first caller gets them), when [`init_capturing`] set
/// capture up.
pub fn take_captured() -> Option<tokio::sync::mpsc::Receiver<CapturedLine>> {
    CAPTURE.get()?.rx.lock().ok()?.take()
}

/// Lines captured but dropped because the queue was full.
pub fn captured_dropped() -> u64 {
    CAPTURE
        .get()
        .map_or(0, |c| c.dropped.load(Ordering::Relaxed))
}

fn filter() -> EnvFilter {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    // s3s (storage_manager's S3 layer) logs every S3 error answer at ERROR, a 404 for a key that is
    // not there included; the access log already records each request and its status. Name s3s in
    // RUST_LOG to see its lines.
    let spec = if spec.contains("s3s") {
        spec
    } else {
        format!("{spec},s3s=off")
    };
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info,s3s=off"))
}

fn init(capture: Option<&'static str>) {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let console = if json {
        fmt::layer().with_target(false).json().boxed()
    } else {
        fmt::layer().with_target(false).boxed()
    };
    let captured = capture.map(|component| {
        let (tx, rx) = tokio::sync::mpsc::channel(CAPTURE_QUEUE);
        let _ = CAPTURE.set(Capture {
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            component,
        });
        fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .with_writer(CaptureWriter)
    });
    // try_init: a test harness or an embedding process may have installed a subscriber already.
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(console)
        .with(captured)
        .try_init();
}

/// Hands each formatted line to the capture queue (the fmt layer writes one event per writer).
struct CaptureWriter;

struct LineWriter {
    level: Level,
    component: &'static str,
    buf: Vec<u8>,
}

impl<'a> MakeWriter<'a> for CaptureWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            level: Level::INFO,
            component: component_of(""),
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            level: *meta.level(),
            component: component_of(meta.target()),
            buf: Vec::new(),
        }
    }
}

fn component_of(target: &str) -> &'static str {
    if target.starts_with("aerekos_worker") {
        "worker"
    } else {
        CAPTURE.get().map_or("aerekos", |c| c.component)
    }
}

impl io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let Some(capture) = CAPTURE.get() else {
            return;
        };
        while self.buf.last().is_some_and(|b| *b == b'\n') {
            self.buf.pop();
        }
        if self.buf.is_empty() {
            return;
        }
        let line = CapturedLine {
            level: self.level,
            component: self.component,
            text: String::from_utf8_lossy(&self.buf).into_owned(),
        };
        if capture.tx.try_send(line).is_err() {
            capture.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
