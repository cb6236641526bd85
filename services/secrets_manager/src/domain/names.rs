//! What secret names, staging labels and tags may be.

use std::collections::BTreeMap;

use aerekos_common::{ApiError, ApiResult};

pub use aerekos_common::names::MAX_SECRET_NAME_CHARS as MAX_NAME_CHARS;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
pub const MAX_LABEL_CHARS: usize = 64;
/// Labels one write may add, and tags one secret may carry.
pub const MAX_LABELS: usize = 20;
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_CHARS: usize = 256;
/// The most versions a secret may be told to keep.
pub const MAX_VERSIONS_LIMIT: u32 = 1000;

/// The spec's pattern for a secret name (what [`check_name`] accepts, but for its length): a
/// segment is not `.` or `..` (a URL would lose it on the way).
pub const NAME_PATTERN: &str = r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)(?:/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+))*$";
pub const LABEL_PATTERN: &str = r"^[A-Za-z0-9._-]{1,64}$";

fn segment_ok(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `apps/shop/db-password`: segments of letters, digits, `.`, `_`, `-` joined by `/`.
pub fn check_name(name: &str) -> ApiResult<()> {
    if !aerekos_common::names::is_secret_name(name) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "secret name {name:?}: give 1–{MAX_NAME_CHARS} characters, segments of letters, digits, '.', '_' and '-' joined by '/', \
                 none of them '.' or '..' (e.g. apps/shop/db-password)"
            ),
        ));
    }
    Ok(())
}

pub fn check_label(label: &str) -> ApiResult<()> {
    if label.len() > MAX_LABEL_CHARS || !segment_ok(label) {
        return Err(ApiError::bad_request(
            "invalid_label",
            format!("label {label:?}: give 1–{MAX_LABEL_CHARS} letters, digits, '.', '_' or '-'"),
        ));
    }
    Ok(())
}

pub fn check_description(description: &str) -> ApiResult<()> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::bad_request(
            "invalid_description",
            format!("a description is at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(())
}

pub fn check_tags(tags: &BTreeMap<String, String>) -> ApiResult<()> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(
            "invalid_tags",
            format!("{} tags; a secret carries at most {MAX_TAGS}", tags.len()),
        ));
    }
    for (key, value) in tags {
        if key.is_empty()
            || key.chars().count() > MAX_TAG_CHARS
            || value.chars().count() > MAX_TAG_CHARS
        {
            return Err(ApiError::bad_request(
                "invalid_tags",
                format!(
                    "tag {key:?}: keys are 1–{MAX_TAG_CHARS} characters, values at most {MAX_TAG_CHARS}"
                ),
            ));
        }
    }
    Ok(())
}

pub fn check_max_versions(max: u32) -> ApiResult<()> {
    if !(1..=MAX_VERSIONS_LIMIT).contains(&max) {
        return Err(ApiError::bad_request(
            "invalid_max_versions",
            format!("max_versions must be between 1 and {MAX_VERSIONS_LIMIT}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_paths_of_plain_segments() {
        for ok in ["db", "apps/shop/db-password", "a.b_c-d/e", "x/y/z/0"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a b",
            "apps/shop/ü",
            "a\\b",
            ".",
            "..",
            "a/../b",
            "a/./b",
            &"x".repeat(513),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        // The spec's pattern accepts and refuses the same names (its length is maxLength's).
        let pattern = regex::Regex::new(NAME_PATTERN).unwrap();
        for name in [
            "db",
            "apps/shop/db-password",
            "",
            "/a",
            "a/",
            "a//b",
            "a b",
            "apps/shop/ü",
            ".",
            "..",
            "a/../b",
            ".env",
            "..x",
            "...",
            "a.",
        ] {
            assert_eq!(pattern.is_match(name), check_name(name).is_ok(), "{name}");
        }
        let label = regex::Regex::new(LABEL_PATTERN).unwrap();
        for name in ["AWSCURRENT", "", "a/b", &"l".repeat(65)] {
            assert_eq!(label.is_match(name), check_label(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn labels_and_tags() {
        assert!(check_label("AWSCURRENT").is_ok() && check_label("blue-green.2").is_ok());
        assert!(
            check_label("").is_err()
                && check_label("a/b").is_err()
                && check_label(&"l".repeat(65)).is_err()
        );
        assert!(check_tags(&BTreeMap::from([("team".into(), "shop".into())])).is_ok());
        assert!(check_tags(&BTreeMap::from([(String::new(), "x".into())])).is_err());
        assert!(
            check_max_versions(0).is_err()
                && check_max_versions(1001).is_err()
                && check_max_versions(10).is_ok()
        );
    }
}
