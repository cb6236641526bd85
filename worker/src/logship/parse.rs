//! What a line says about itself: its time, level and request id, when it says them. Tracing's
//! text format (`2026-12-07T11:00:00.123Z  INFO request{request_id=…}: …`), its JSON format,
//! and logfmt's `level=` are understood; anything else is kept as it is, stamped with the time
//! it was read. Terminal colours are taken out.

use aerekos_sdk::logs_manager::types::LogLevel;
use chrono::{DateTime, Utc};

#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub message: String,
    pub time: Option<DateTime<Utc>>,
    pub level: Option<LogLevel>,
    pub request_id: Option<String>,
}

/// The longest line shipped, in characters (logs_manager's limit); longer ones are cut.
pub const MAX_LINE_CHARS: usize = 65_536;
/// A request id is kept to this many characters (`X-Request-Id`'s own limit; logs_manager takes
/// 256), so no line an app prints can make a batch one logs_manager refuses.
const MAX_REQUEST_ID_CHARS: usize = 128;

pub fn parse(raw: &str) -> Parsed {
    let clean = strip_ansi(raw.trim_end_matches(['\n', '\r']));
    let message = cut(clean);
    let mut parsed = if message.starts_with('{') {
        json_line(&message)
    } else {
        text_line(&message)
    };
    parsed.message = message;
    parsed
}

fn cut(mut s: String) -> String {
    if let Some((at, _)) = s.char_indices().nth(MAX_LINE_CHARS) {
        s.truncate(at);
    }
    s
}

fn level_of(word: &str) -> Option<LogLevel> {
    Some(match word.to_ascii_lowercase().as_str() {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" | "warning" => LogLevel::Warn,
        "error" | "err" | "fatal" | "critical" => LogLevel::Error,
        _ => return None,
    })
}

fn time_of(word: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(word)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn json_line(line: &str) -> Parsed {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line) else {
        return text_line(line);
    };
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
    let request_id = text(map.get("request_id"))
        .or_else(|| text(map.get("span").and_then(|s| s.get("request_id"))))
        .or_else(|| {
            map.get("spans")?
                .as_array()?
                .iter()
                .rev()
                .find_map(|s| text(s.get("request_id")))
        })
        .map(|id| id.chars().take(MAX_REQUEST_ID_CHARS).collect::<String>())
        .filter(|id| !id.is_empty());
    Parsed {
        message: String::new(),
        time: ["timestamp", "time", "ts"]
            .iter()
            .find_map(|k| text(map.get(*k)).as_deref().and_then(time_of)),
        level: ["level", "severity", "lvl"]
            .iter()
            .find_map(|k| text(map.get(*k)).as_deref().and_then(level_of)),
        request_id,
    }
}

fn text_line(line: &str) -> Parsed {
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or("");
    let time = time_of(first);
    let level = match time {
        Some(_) => words.next().and_then(level_of),
        None => level_of(first.trim_matches(|c| c == '[' || c == ']' || c == ':')),
    }
    .or_else(|| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("level="))
            .and_then(|v| level_of(v.trim_matches('"')))
    });
    Parsed {
        message: String::new(),
        time,
        level,
        request_id: request_id_in(line),
    }
}

/// `request_id=<id>` (tracing's span fields, logfmt) or `"request_id":"<id>"`.
fn request_id_in(line: &str) -> Option<String> {
    let at = line.find("request_id")?;
    let rest = &line[at + "request_id".len()..];
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix("\":").map(str::trim_start))?;
    let rest = rest.trim_start_matches('"');
    let id: String = rest
        .chars()
        .take_while(|c| !matches!(c, '"' | '}' | ',' | ' ' | ']' | ';'))
        .take(MAX_REQUEST_ID_CHARS)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// The line without ANSI escape sequences (a program that colours its output even when it is
/// not on a terminal).
fn strip_ansi(line: &str) -> String {
    if !line.contains('\u{1b}') {
        return line.to_owned();
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in @–~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_text_with_colours() {
        let p = parse(
            "\u{1b}[2m2026-12-07T11:00:00.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[1mrequest\u{1b}[0m{request_id=abc-123}: request method=GET status=200\n",
        );
        assert_eq!(p.level, Some(LogLevel::Info));
        assert_eq!(p.request_id.as_deref(), Some("abc-123"));
        assert_eq!(p.time, Some("2026-12-07T11:00:00.123456Z".parse().unwrap()));
        assert!(!p.message.contains('\u{1b}'), "{:?}", p.message);
        assert!(
            p.message
                .starts_with("2026-12-07T11:00:00.123456Z  INFO request{request_id=abc-123}"),
            "{:?}",
            p.message
        );
    }

    #[test]
    fn tracing_json() {
        let p = parse(
            r#"{"timestamp":"2026-12-07T11:00:01Z","level":"WARN","fields":{"message":"slow"},"span":{"request_id":"r-9","name":"request"}}"#,
        );
        assert_eq!(p.level, Some(LogLevel::Warn));
        assert_eq!(p.request_id.as_deref(), Some("r-9"));
        assert!(p.time.is_some());
    }

    #[test]
    fn an_over_long_request_id_is_cut_to_what_logs_manager_takes() {
        let long = "r".repeat(1000);
        let p = parse(&format!("{{\"level\":\"info\",\"request_id\":\"{long}\"}}"));
        assert_eq!(p.request_id.map(|r| r.len()), Some(MAX_REQUEST_ID_CHARS));
        let p = parse(&format!("INFO request{{request_id={long}}}: x"));
        assert_eq!(p.request_id.map(|r| r.len()), Some(MAX_REQUEST_ID_CHARS));
    }

    #[test]
    fn plain_and_logfmt() {
        let p = parse("hello world");
        assert_eq!(
            p,
            Parsed {
                message: "hello world".into(),
                ..Default::default()
            }
        );
        let p = parse("ts=1 level=error msg=\"boom\" request_id=\"q1\"");
        assert_eq!(p.level, Some(LogLevel::Error));
        assert_eq!(p.request_id.as_deref(), Some("q1"));
        assert_eq!(parse("[ERROR] disk full").level, Some(LogLevel::Error));
    }
}
