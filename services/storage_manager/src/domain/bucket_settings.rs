//! What a bucket's owner configures on it besides its objects: its policy, canned ACL, public
//! access block, CORS rules, lifecycle rules and tags. They are one JSON document in the bucket's
//! row (`buckets.settings`), written whole by each change, and held in memory with the access
//! decisions worked out from them (every S3 request needs those).

use std::collections::BTreeMap;

use aerekos_common::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};

use super::policy::{BucketAccess, Policy, canned_acl_grants, is_public_acl};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BucketSettings {
    /// The policy as its owner wrote it (S3 returns it unchanged).
    pub policy: Option<String>,
    pub canned_acl: Option<String>,
    pub public_access_block: Option<PublicAccessBlock>,
    pub cors: Option<Vec<CorsRule>>,
    pub lifecycle: Option<Vec<LifecycleRule>>,
    pub tags: Option<BTreeMap<String, String>>,
    /// S3 versioning: "Enabled" or "Suspended"; None: never enabled.
    pub versioning: Option<String>,
}

/// S3's four public access switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublicAccessBlock {
    /// Refuse canned ACLs that make the bucket public.
    pub block_public_acls: bool,
    /// Public canned ACLs grant nothing.
    pub ignore_public_acls: bool,
    /// Refuse policies that allow anyone.
    pub block_public_policy: bool,
    /// Unsigned requests are refused whatever the policy says.
    pub restrict_public_buckets: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsRule {
    pub id: Option<String>,
    /// Origins, each with at most one `*`.
    pub allowed_origins: Vec<String>,
    /// GET, PUT, POST, DELETE, HEAD.
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for, each with at most one `*`.
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_seconds: Option<i32>,
}

/// An expiration rule: objects under `prefix` (and carrying every tag in `tags`) are deleted
/// `expiration_days` after they were written, or from `expiration_date` on; uploads left
/// incomplete are aborted `abort_incomplete_days` after they began.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LifecycleRule {
    pub id: Option<String>,
    pub enabled: bool,
    pub prefix: String,
    pub tags: BTreeMap<String, String>,
    pub expiration_days: Option<u32>,
    /// Unix seconds.
    pub expiration_date: Option<i64>,
    pub abort_incomplete_days: Option<u32>,
    /// Earlier versions are deleted this many days after they stopped being current.
    pub noncurrent_days: Option<u32>,
}

/// S3's limits.
pub const MAX_CORS_RULES: usize = 100;
pub const MAX_LIFECYCLE_RULES: usize = 1000;
const CORS_METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

impl BucketSettings {
    pub fn from_json(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a bucket's settings do not parse; it is served with none");
            Self::default()
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("settings serialize")
    }

    /// Checks the settings together (a policy against the public access block, each rule set
    /// against S3's rules) and works out the access decisions they make.
    pub fn access(&self, bucket: &str) -> ApiResult<BucketAccess> {
        let block = self.public_access_block.unwrap_or_default();
        let policy = self
            .policy
            .as_deref()
            .map(|text| Policy::parse(text, bucket))
            .transpose()?;
        let public_grants = match (&self.canned_acl, block.ignore_public_acls) {
            (Some(acl), false) => canned_acl_grants(bucket, acl)?,
            _ => Policy::default(),
        };
        Ok(BucketAccess {
            policy,
            public_grants,
            restrict_public: block.restrict_public_buckets,
            ignore_public_acls: block.ignore_public_acls,
        })
    }

    /// Refusals S3 makes when a policy or ACL is put: a public one under a block saying no. (A
    /// block put over public settings is accepted: it governs later changes, and what is granted
    /// through IgnorePublicAcls and RestrictPublicBuckets.)
    pub fn check_against_block(&self, bucket: &str) -> ApiResult<()> {
        let block = self.public_access_block.unwrap_or_default();
        let access = self.access(bucket)?;
        let denied = |what: &str| {
            Err(ApiError::forbidden(
                "public_access_blocked",
                format!("the bucket's public access block refuses {what}; change the block first"),
            ))
        };
        if block.block_public_policy && access.policy.as_ref().is_some_and(Policy::is_public) {
            return denied("a policy that allows anyone");
        }
        if block.block_public_acls && self.canned_acl.as_deref().is_some_and(is_public_acl) {
            return denied("a public canned ACL");
        }
        Ok(())
    }
}

pub fn check_cors(rules: &[CorsRule]) -> ApiResult<()> {
    let bad = |why: String| Err(ApiError::bad_request("malformed_cors", why));
    if rules.is_empty() || rules.len() > MAX_CORS_RULES {
        return bad(format!("give 1 to {MAX_CORS_RULES} CORS rules"));
    }
    for rule in rules {
        if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
            return bad(
                "each CORS rule needs at least one AllowedOrigin and one AllowedMethod".into(),
            );
        }
        if let Some(m) = rule
            .allowed_methods
            .iter()
            .find(|m| !CORS_METHODS.contains(&m.as_str()))
        {
            return bad(format!(
                "AllowedMethod {m:?} is not one of {CORS_METHODS:?}"
            ));
        }
        if let Some(o) = rule
            .allowed_origins
            .iter()
            .chain(&rule.allowed_headers)
            .find(|o| o.matches('*').count() > 1)
        {
            return bad(format!("{o:?} has more than one '*'"));
        }
    }
    Ok(())
}

pub fn check_lifecycle(rules: &[LifecycleRule]) -> ApiResult<()> {
    let bad = |why: String| Err(ApiError::bad_request("malformed_lifecycle", why));
    if rules.is_empty() || rules.len() > MAX_LIFECYCLE_RULES {
        return bad(format!("give 1 to {MAX_LIFECYCLE_RULES} lifecycle rules"));
    }
    let mut ids = std::collections::HashSet::new();
    for rule in rules {
        if let Some(id) = &rule.id
            && !ids.insert(id)
        {
            return bad(format!("rule ID {id:?} is used twice"));
        }
        if rule.expiration_days.is_none()
            && rule.expiration_date.is_none()
            && rule.abort_incomplete_days.is_none()
            && rule.noncurrent_days.is_none()
        {
            return bad(
                "each rule needs an Expiration (Days or Date), a NoncurrentVersionExpiration or an AbortIncompleteMultipartUpload".into(),
            );
        }
        if rule.expiration_days.is_some() && rule.expiration_date.is_some() {
            return bad("an Expiration gives Days or Date, not both".into());
        }
        if rule.expiration_days == Some(0)
            || rule.abort_incomplete_days == Some(0)
            || rule.noncurrent_days == Some(0)
        {
            return bad("Days must be a positive number".into());
        }
    }
    Ok(())
}

/// The first rule letting `origin` make a `method` request with `headers` (a preflight's
/// Access-Control-Request-Headers; none for an actual request).
pub fn cors_rule_for<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    let fits = |pattern: &str, value: &str| match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(value),
        Some((head, tail)) => {
            let value = value.to_ascii_lowercase();
            value.len() >= head.len() + tail.len()
                && value.starts_with(&head.to_ascii_lowercase())
                && value.ends_with(&tail.to_ascii_lowercase())
        }
    };
    rules.iter().find(|rule| {
        rule.allowed_origins.iter().any(|o| fits(o, origin))
            && rule
                .allowed_methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method))
            && headers
                .iter()
                .all(|h| rule.allowed_headers.iter().any(|allowed| fits(allowed, h)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        CorsRule {
            allowed_origins: list(origins),
            allowed_methods: list(methods),
            allowed_headers: list(headers),
            ..Default::default()
        }
    }

    #[test]
    fn cors_rules_match_origin_method_and_headers() {
        let rules = vec![
            rule(
                &["https://*.example.com"],
                &["PUT"],
                &["content-type", "x-amz-*"],
            ),
            rule(&["*"], &["GET"], &[]),
        ];
        let h = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            cors_rule_for(
                &rules,
                "https://app.example.com",
                "PUT",
                &h(&["Content-Type", "x-amz-date"])
            )
            .is_some()
        );
        assert!(
            cors_rule_for(
                &rules,
                "https://app.example.com",
                "PUT",
                &h(&["authorization"])
            )
            .is_none()
        );
        assert!(cors_rule_for(&rules, "https://evil.com", "PUT", &[]).is_none());
        assert_eq!(
            cors_rule_for(&rules, "https://evil.com", "GET", &[])
                .unwrap()
                .allowed_origins,
            vec!["*"]
        );
        assert!(check_cors(&[rule(&["*"], &["PATCH"], &[])]).is_err());
        assert!(check_cors(&rules).is_ok());
    }

    #[test]
    fn a_public_policy_under_a_block_is_refused() {
        let policy = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
        let mut settings = BucketSettings {
            policy: Some(policy.into()),
            ..Default::default()
        };
        assert!(settings.check_against_block("b").is_ok());
        settings.public_access_block = Some(PublicAccessBlock {
            block_public_policy: true,
            ..Default::default()
        });
        assert_eq!(
            settings.check_against_block("b").unwrap_err().body().code,
            "public_access_blocked"
        );
    }
}
