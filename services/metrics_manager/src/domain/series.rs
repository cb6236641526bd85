//! Series identity: label sets (the metric's name is the label `__name__`), their canonical key
//! (`name{a="1",b="2"}`, labels sorted, as Prometheus prints them), label matchers, and the
//! Prometheus text exposition format scrapes read.

use std::collections::BTreeMap;

use regex::Regex;

pub type Labels = BTreeMap<String, String>;

pub const NAME: &str = "__name__";

/// The canonical key of a label set.
pub fn key(labels: &Labels) -> String {
    let mut out = labels.get(NAME).cloned().unwrap_or_default();
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().filter(|(k, _)| k.as_str() != NAME) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// A label set back from its key (or a series line of the exposition format).
pub fn parse_key(key: &str) -> Option<Labels> {
    let (labels, rest) = parse_series(key)?;
    rest.trim().is_empty().then_some(labels)
}

/// The longest metric name taken.
pub const MAX_METRIC_NAME: usize = 200;

/// A metric's name as queries, pushes and rules take it.
pub fn valid_metric_name(name: &str) -> bool {
    name.len() <= MAX_METRIC_NAME && valid_name(name)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{a="1",…}` at the start of `text`: the labels and what follows.
fn parse_series(text: &str) -> Option<(Labels, &str)> {
    let name_end = text
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(text.len());
    let name = &text[..name_end];
    if !valid_name(name) {
        return None;
    }
    let mut labels = Labels::new();
    labels.insert(NAME.into(), name.into());
    let mut rest = &text[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut s = inner;
        loop {
            s = s.trim_start_matches([' ', ',']);
            if let Some(after) = s.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = s.find('=')?;
            let label = s[..eq].trim();
            if !valid_name(label) {
                return None;
            }
            s = s[eq + 1..].trim_start().strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = s.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            };
            labels.insert(label.to_owned(), value);
            s = &s[end + 1..];
        }
    }
    Some((labels, rest))
}

/// A sample value as the exposition format writes it.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        v => v.parse().ok(),
    }
}

/// The samples of a scrape (Prometheus text format 0.0.4), each with the target's labels added;
/// a label the target's set also has is kept as `exported_<label>`. Lines that do not parse are
/// counted in the second value and skipped.
pub fn parse_exposition(text: &str, target: &Labels) -> (Vec<(Labels, f64, Option<i64>)>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = parse_series(line).and_then(|(mut labels, rest)| {
            let mut fields = rest.split_whitespace();
            let value = parse_value(fields.next()?)?;
            let timestamp = match fields.next() {
                Some(t) => Some(t.parse::<i64>().ok()?),
                None => None,
            };
            for (k, v) in target {
                if let Some(own) = labels.insert(k.clone(), v.clone()) {
                    labels.insert(format!("exported_{k}"), own);
                }
            }
            Some((labels, value, timestamp))
        });
        match parsed {
            Some(sample) => out.push(sample),
            None => bad += 1,
        }
    }
    (out, bad)
}

/// A label matcher: `label=value`, `label!=value`, `label=~regex`, `label!~regex` (regexes match
/// whole values, as Prometheus's do). A missing label matches as the empty value.
#[derive(Debug, Clone)]
pub enum Matcher {
    Equal(String, String),
    NotEqual(String, String),
    Matches(String, Regex),
    NotMatches(String, Regex),
}

impl Matcher {
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let (at, op) = ["!=", "=~", "!~", "="]
            .iter()
            .filter_map(|op| text.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
            .ok_or_else(|| {
                format!("matcher {text:?} is not label=value, label!=value, label=~regex or label!~regex")
            })?;
        let label = text[..at].trim().to_owned();
        if !valid_name(&label) {
            return Err(format!("matcher {text:?}: {label:?} is not a label name"));
        }
        let value = text[at + op.len()..].to_owned();
        let regex = || {
            Regex::new(&format!("^(?:{value})$"))
                .map_err(|e| format!("matcher {text:?}: the regex does not compile: {e}"))
        };
        Ok(match op {
            "=" => Matcher::Equal(label, value),
            "!=" => Matcher::NotEqual(label, value),
            "=~" => Matcher::Matches(label, regex()?),
            _ => Matcher::NotMatches(label, regex()?),
        })
    }

    pub fn name(name: &str) -> Matcher {
        Matcher::Equal(NAME.into(), name.into())
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let value = |l: &String| labels.get(l).map(String::as_str).unwrap_or("");
        match self {
            Matcher::Equal(l, v) => value(l) == v,
            Matcher::NotEqual(l, v) => value(l) != v,
            Matcher::Matches(l, r) => r.is_match(value(l)),
            Matcher::NotMatches(l, r) => !r.is_match(value(l)),
        }
    }
}

/// A Prometheus series selector, as federation's `match[]` takes it: `name`, `name{…}` or `{…}`,
/// with `label="value"`, `!=`, `=~` and `!~` inside the braces.
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, String> {
    let text = text.trim();
    let (name, rest) = match text.find('{') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let mut matchers = Vec::new();
    if !name.is_empty() {
        if !valid_name(name) {
            return Err(format!("selector {text:?}: {name:?} is not a metric name"));
        }
        matchers.push(Matcher::name(name));
    }
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| format!("selector {text:?}: braces do not close"))?;
        let mut s = inner.trim();
        while !s.is_empty() {
            let op_at = s
                .find(['=', '!'])
                .ok_or_else(|| format!("selector {text:?}: expected label=\"value\""))?;
            let label = s[..op_at].trim();
            let op_len = if s[op_at..].starts_with("!=")
                || s[op_at..].starts_with("=~")
                || s[op_at..].starts_with("!~")
            {
                2
            } else {
                1
            };
            let op = &s[op_at..op_at + op_len];
            let after = s[op_at + op_len..].trim_start();
            let quoted = after
                .strip_prefix('"')
                .ok_or_else(|| format!("selector {text:?}: label values are quoted"))?;
            let mut value = String::new();
            let mut end = None;
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("selector {text:?}: a quote does not close"))?;
            matchers.push(Matcher::parse(&format!("{label}{op}{value}"))?);
            s = quoted[end + 1..]
                .trim_start()
                .trim_start_matches(',')
                .trim_start();
        }
    }
    if matchers.is_empty() {
        return Err(format!(
            "selector {text:?} selects nothing: give a name or a matcher"
        ));
    }
    Ok(matchers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_canonical_and_read_back() {
        let mut labels = Labels::new();
        labels.insert(NAME.into(), "http_total".into());
        labels.insert("z".into(), "a \"quoted\"\\ line\nbreak".into());
        labels.insert("a".into(), "1".into());
        let k = key(&labels);
        assert!(k.starts_with("http_total{a=\"1\",z="), "{k}");
        assert_eq!(parse_key(&k), Some(labels));
    }

    #[test]
    fn the_exposition_format_parses_with_target_labels() {
        let text = "# HELP x X.\n# TYPE x counter\nx{job=\"own\",le=\"+Inf\"} 3 1700000000000\ny 2.5e3\ny{bad 1\nz{a=\"b\"} NaN\n";
        let mut target = Labels::new();
        target.insert("job".into(), "worker".into());
        let (samples, bad) = parse_exposition(text, &target);
        assert_eq!(bad, 1);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].0["job"], "worker");
        assert_eq!(samples[0].0["exported_job"], "own");
        assert_eq!(samples[0].2, Some(1_700_000_000_000));
        assert_eq!(samples[1].1, 2500.0);
        assert!(samples[2].1.is_nan());
    }

    #[test]
    fn matchers() {
        let labels = parse_key("m{status=\"503\",op=\"get\"}").unwrap();
        assert!(Matcher::parse("status=~5..").unwrap().matches(&labels));
        assert!(!Matcher::parse("status!~5..").unwrap().matches(&labels));
        assert!(Matcher::parse("op!=put").unwrap().matches(&labels));
        assert!(Matcher::parse("missing=").unwrap().matches(&labels));
        assert!(Matcher::parse("x=~(").is_err());
        assert!(Matcher::parse("nothing").is_err());
        assert!(Matcher::parse("1a=b").is_err());
        let m = parse_selector("m{status=~\"5..\", op!=\"put\"}").unwrap();
        assert_eq!(m.len(), 3);
        assert!(m.iter().all(|m| m.matches(&labels)));
        assert_eq!(parse_selector("{op=\"get\"}").unwrap().len(), 1);
        assert!(parse_selector("{op=get}").is_err());
        assert!(parse_selector("").is_err());
    }
}
