//! Names more than one component checks: a secret's (secrets_manager keeps secrets under it, and
//! deployments name them in `secret_env`).

/// The longest secret name.
pub const MAX_SECRET_NAME_CHARS: usize = 512;

/// `apps/shop/db-password`: segments of letters, digits, `.`, `_`, `-` joined by `/`, none of them
/// `.` or `..` (URL normalisation would remove it from a path), at most [`MAX_SECRET_NAME_CHARS`].
pub fn is_secret_name(name: &str) -> bool {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    !name.is_empty() && name.len() <= MAX_SECRET_NAME_CHARS && name.split('/').all(segment_ok)
}
