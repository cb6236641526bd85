//! What a bucket name, an object key and user metadata may be, with messages that say what to fix.
//! Bucket names follow S3's rules for new buckets, so every bucket here is reachable by every S3 SDK.

use std::collections::BTreeMap;

use aerekos_common::{ApiError, ApiResult};

/// S3 allows object keys up to 1024 bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// S3 limits user metadata to 2 KiB (names and values together).
pub const MAX_METADATA_BYTES: usize = 2048;
/// The HTTP headers an upload may set and reads serve back (S3's list), lowercase.
pub const STORED_HEADERS: [&str; 5] = [
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];
/// S3's limits on an object's tags.
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_KEY_CHARS: usize = 128;
pub const MAX_TAG_VALUE_CHARS: usize = 256;

pub fn check_bucket_name(name: &str) -> ApiResult<()> {
    let bad = |why: &str| {
        Err(ApiError::bad_request(
            "invalid_bucket_name",
            format!("bucket name {name:?} {why}"),
        ))
    };
    if name.len() < 3 || name.len() > 63 {
        return bad("must be 3 to 63 characters long");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return bad(&format!(
            "has {c:?}: use only lowercase letters, digits, '-' and '.'"
        ));
    }
    let first_last_ok =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_last_ok(name.chars().next()) || !first_last_ok(name.chars().last()) {
        return bad("must begin and end with a letter or a digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return bad("must not have '..', '.-' or '-.'");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not look like an IP address");
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return bad(&format!("must not begin with {prefix:?} (reserved by S3)"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3"] {
        if name.ends_with(suffix) {
            return bad(&format!("must not end with {suffix:?} (reserved by S3)"));
        }
    }
    Ok(())
}

pub fn check_key(key: &str) -> ApiResult<()> {
    if key.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_object_key",
            "the object key is empty; give at least one character",
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(
            "invalid_object_key",
            format!(
                "the object key is {} bytes of UTF-8; at most {MAX_KEY_BYTES} are allowed",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// Names become `x-amz-meta-<name>` headers in S3, so they are lowercased HTTP token characters.
pub fn check_metadata(metadata: &BTreeMap<String, String>) -> ApiResult<()> {
    let mut total = 0;
    for (name, value) in metadata {
        let token = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(ApiError::bad_request(
                "invalid_metadata",
                format!("metadata name {name:?}: use lowercase letters, digits, '-', '_' and '.'"),
            ));
        }
        if value.chars().any(|c| c.is_control()) {
            return Err(ApiError::bad_request(
                "invalid_metadata",
                format!("metadata {name:?} has a control character"),
            ));
        }
        total += name.len() + value.len();
    }
    if total > MAX_METADATA_BYTES {
        return Err(ApiError::bad_request(
            "invalid_metadata",
            format!("user metadata is {total} bytes; at most {MAX_METADATA_BYTES} are allowed"),
        ));
    }
    Ok(())
}

/// Stored headers: names from [`STORED_HEADERS`], values that are valid HTTP header values.
pub fn check_headers(headers: &BTreeMap<String, String>) -> ApiResult<()> {
    for (name, value) in headers {
        if !STORED_HEADERS.contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_header",
                format!("{name:?} is not a header objects keep: {STORED_HEADERS:?}"),
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(ApiError::bad_request(
                "invalid_header",
                format!("{name} has a character HTTP headers cannot carry"),
            ));
        }
    }
    Ok(())
}

/// S3's tag rules: at most 10, keys of 1 to 128 characters and values of up to 256, Unicode
/// letters, digits, spaces and `+ - = . _ : / @`; keys may not begin with `aws:`.
pub fn check_tags(tags: &BTreeMap<String, String>) -> ApiResult<()> {
    let bad = |why: String| Err(ApiError::bad_request("invalid_tag", why));
    if tags.len() > MAX_TAGS {
        return bad(format!(
            "{} tags given; an object may have at most {MAX_TAGS}",
            tags.len()
        ));
    }
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c);
    for (key, value) in tags {
        let key_chars = key.chars().count();
        if key_chars == 0 || key_chars > MAX_TAG_KEY_CHARS {
            return bad(format!(
                "tag key {key:?} is {key_chars} characters; give 1 to {MAX_TAG_KEY_CHARS}"
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE_CHARS {
            return bad(format!(
                "the value of tag {key:?} is longer than {MAX_TAG_VALUE_CHARS} characters"
            ));
        }
        if key.starts_with("aws:") {
            return bad(format!(
                "tag key {key:?} begins with \"aws:\", which is reserved"
            ));
        }
        if let Some(c) = key.chars().chain(value.chars()).find(|c| !allowed(*c)) {
            return bad(format!(
                "tag {key:?} has {c:?}: use letters, digits, spaces and + - = . _ : / @"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.logs", "a1b", &"a".repeat(63)] {
            assert!(check_bucket_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ab", "3 to 63"),
            ("My-Bucket", "'M'"),
            ("-abc", "begin and end"),
            ("abc.", "begin and end"),
            ("a..b", "'..'"),
            ("192.168.1.1", "IP address"),
            ("xn--abc", "reserved"),
            ("abc-s3alias", "reserved"),
            ("under_score", "'_'"),
        ] {
            let err = check_bucket_name(bad).unwrap_err();
            assert!(
                err.body().message.contains(why),
                "{bad}: {}",
                err.body().message
            );
        }
    }

    #[test]
    fn tags_follow_s3_rules() {
        let tags = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(
            check_tags(&tags(&[
                ("team", "storage"),
                ("cost-centre", "a/b:c@d"),
                ("ünï", "")
            ]))
            .is_ok()
        );
        for bad in [
            tags(&[("", "v")]),
            tags(&[("aws:x", "v")]),
            tags(&[("k", "semi;colon")]),
            tags(&[(&"k".repeat(129), "v")]),
        ] {
            assert!(check_tags(&bad).is_err(), "{bad:?}");
        }
        let eleven: BTreeMap<String, String> =
            (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(check_tags(&eleven).is_err());
    }

    #[test]
    fn keys_may_be_any_utf8_up_to_1024_bytes() {
        assert!(check_key("a/b/c d/ümlaut/日本/🙂").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"x".repeat(1025)).is_err());
    }
}
