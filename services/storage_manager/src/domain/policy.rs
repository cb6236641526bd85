//! Bucket policies: AWS's JSON grammar for the principals this platform has, and the one decision
//! every S3 request goes through ([`decide`]).
//!
//! Principals are `*` (anyone, signed or not), an access key id, or the user who created access
//! keys (by name, or as an ARN ending in `:user/<name>`). Actions are `s3:<Operation>` with `*`
//! and `?` wildcards; resources are `arn:aws:s3:::<bucket>` and `arn:aws:s3:::<bucket>/<key
//! pattern>`. `Condition`, `NotPrincipal`, `NotAction` and `NotResource` are refused as
//! `MalformedPolicy` rather than ignored: a policy that says more than it is enforced to say would
//! be a lie about who can read what.

use aerekos_common::{ApiError, ApiResult};
use serde_json::Value;

/// The most a policy document may be (S3's limit).
pub const MAX_POLICY_BYTES: usize = 20 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub effect: Effect,
    /// `*` or principal names (access key ids, owners).
    pub principals: Vec<String>,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// Who is asking: an access key, its owner and what the key may do, or nobody (an unsigned request).
#[derive(Debug, Clone, Default)]
pub struct Principal {
    pub access_key: Option<String>,
    pub owner: Option<String>,
    /// None: the key may do everything a policy allows.
    pub scopes: Option<std::sync::Arc<KeyScopes>>,
}

/// What kind of access an action is, as access key scopes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Access {
    pub fn of(action: &str) -> Self {
        match action.strip_prefix("s3:").unwrap_or(action) {
            "GetObject"
            | "ListBucket"
            | "GetObjectTagging"
            | "GetObjectAcl"
            | "ListMultipartUploadParts"
            | "ListBucketMultipartUploads"
            | "GetBucketLocation" => Self::Read,
            "PutObject"
            | "DeleteObject"
            | "AbortMultipartUpload"
            | "PutObjectTagging"
            | "DeleteObjectTagging"
            | "PutObjectAcl" => Self::Write,
            _ => Self::Admin,
        }
    }
}

/// An access key's scopes: `read|write|admin:<bucket pattern>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyScopes(pub Vec<(Access, String)>);

/// The most scopes one key carries.
pub const MAX_KEY_SCOPES: usize = 50;

impl KeyScopes {
    pub fn parse(scopes: &[String]) -> ApiResult<Self> {
        let bad = |why: String| Err(ApiError::bad_request("invalid_scopes", why));
        if scopes.len() > MAX_KEY_SCOPES {
            return bad(format!(
                "{} scopes given; a key takes at most {MAX_KEY_SCOPES}",
                scopes.len()
            ));
        }
        let mut parsed = Vec::with_capacity(scopes.len());
        for scope in scopes {
            let Some((access, bucket)) = scope.split_once(':') else {
                return bad(format!(
                    "scope {scope:?} is not <read|write|admin>:<bucket>"
                ));
            };
            let access = match access {
                "read" => Access::Read,
                "write" => Access::Write,
                "admin" => Access::Admin,
                other => {
                    return bad(format!(
                        "scope {scope:?}: {other:?} is not read, write or admin"
                    ));
                }
            };
            let name = bucket.strip_suffix('*').unwrap_or(bucket);
            let name_ok = name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if bucket.is_empty() || !name_ok || name.contains('*') {
                return bad(format!(
                    "scope {scope:?}: the bucket is a bucket name, *, or a name ending in *"
                ));
            }
            parsed.push((access, bucket.to_owned()));
        }
        Ok(Self(parsed))
    }

    pub fn allows(&self, access: Access, bucket: &str) -> bool {
        self.0
            .iter()
            .any(|(a, pattern)| *a == access && wildcard_match(pattern, bucket))
    }

    /// Whether the key may do anything at all with `bucket` (what ListBuckets shows it).
    pub fn touches(&self, bucket: &str) -> bool {
        self.0
            .iter()
            .any(|(_, pattern)| wildcard_match(pattern, bucket))
    }
}

impl Principal {
    pub fn anonymous() -> Self {
        Self::default()
    }

    fn is(&self, name: &str) -> bool {
        if name == "*" {
            return true;
        }
        let name = name.rsplit_once(":user/").map_or(name, |(_, user)| user);
        self.access_key.as_deref() == Some(name) || self.owner.as_deref() == Some(name)
    }
}

/// What a request asks to do: the IAM action and the resource ARN it acts on.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub action: &'a str,
    pub resource: String,
}

pub fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

fn malformed(why: impl Into<String>) -> ApiError {
    ApiError::bad_request("malformed_policy", why.into())
}

/// One string or a list of them, as the grammar allows for Action, Resource and principals.
fn strings(value: &Value, field: &str) -> ApiResult<Vec<String>> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_owned).ok_or_else(|| {
                    malformed(format!("{field} lists something that is not a string"))
                })
            })
            .collect(),
        _ => Err(malformed(format!(
            "{field} must be a string or a non-empty list of strings"
        ))),
    }
}

impl Policy {
    /// Parses and checks a policy for `bucket`: every resource must name it.
    pub fn parse(text: &str, bucket: &str) -> ApiResult<Self> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(malformed(format!(
                "the policy is {} bytes; at most {MAX_POLICY_BYTES} are allowed",
                text.len()
            )));
        }
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| malformed(format!("the policy is not JSON: {e}")))?;
        let Some(doc) = doc.as_object() else {
            return Err(malformed("the policy must be a JSON object"));
        };
        if let Some(version) = doc.get("Version")
            && version != "2012-10-17"
            && version != "2008-10-17"
        {
            return Err(malformed(format!(
                "Version {version} is not one of 2012-10-17 and 2008-10-17"
            )));
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) if !list.is_empty() => list.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => {
                return Err(malformed(
                    "Statement must be an object or a non-empty list of them",
                ));
            }
        };
        let own_arn = bucket_arn(bucket);
        let mut parsed = Vec::with_capacity(statements.len());
        for statement in statements {
            let Some(s) = statement.as_object() else {
                return Err(malformed("each statement must be a JSON object"));
            };
            for unsupported in ["Condition", "NotPrincipal", "NotAction", "NotResource"] {
                if s.contains_key(unsupported) {
                    return Err(malformed(format!(
                        "{unsupported} is not supported in bucket policies here"
                    )));
                }
            }
            let effect = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => return Err(malformed("Effect must be \"Allow\" or \"Deny\"")),
            };
            let principals = match s.get("Principal") {
                Some(Value::String(star)) if star == "*" => vec!["*".to_owned()],
                Some(Value::Object(p)) => match (p.get("AWS"), p.len()) {
                    (Some(aws), 1) => strings(aws, "Principal.AWS")?,
                    _ => {
                        return Err(malformed(
                            "Principal must be \"*\" or {\"AWS\": ...} naming access keys or their owners",
                        ));
                    }
                },
                _ => {
                    return Err(malformed(
                        "every statement needs a Principal: \"*\" or {\"AWS\": ...}",
                    ));
                }
            };
            let actions = strings(s.get("Action").unwrap_or(&Value::Null), "Action")?;
            if let Some(bad) = actions
                .iter()
                .find(|a| !(*a == "*" || a.to_ascii_lowercase().starts_with("s3:")))
            {
                return Err(malformed(format!("action {bad:?} is not an s3: action")));
            }
            let resources = strings(s.get("Resource").unwrap_or(&Value::Null), "Resource")?;
            if let Some(bad) = resources
                .iter()
                .find(|r| !(**r == own_arn || r.starts_with(&format!("{own_arn}/"))))
            {
                return Err(malformed(format!(
                    "resource {bad:?} is not this bucket ({own_arn}) or an object pattern in it"
                )));
            }
            parsed.push(Statement {
                effect,
                principals,
                actions,
                resources,
            });
        }
        Ok(Self { statements: parsed })
    }

    /// Whether any statement lets anyone (`*`) in: what a public access block refuses.
    pub fn is_public(&self) -> bool {
        self.statements
            .iter()
            .any(|s| s.effect == Effect::Allow && s.principals.iter().any(|p| p == "*"))
    }

    fn matching(&self, effect: Effect, principal: &Principal, request: &Request<'_>) -> bool {
        self.statements.iter().any(|s| {
            s.effect == effect
                && s.principals.iter().any(|p| principal.is(p))
                && s.actions.iter().any(|a| {
                    wildcard_match(
                        &a.to_ascii_lowercase(),
                        &request.action.to_ascii_lowercase(),
                    )
                })
                && s.resources
                    .iter()
                    .any(|r| wildcard_match(r, &request.resource))
        })
    }
}

/// Everything an access decision on one bucket needs, worked out once per change of its settings.
#[derive(Debug, Clone, Default)]
pub struct BucketAccess {
    pub policy: Option<Policy>,
    /// The statements the bucket's canned ACL stands for (none when public ACLs are ignored).
    pub public_grants: Policy,
    /// A public access block's RestrictPublicBuckets: statements allowing anyone do not let
    /// unsigned requests in.
    pub restrict_public: bool,
    /// A public access block's IgnorePublicAcls: public canned ACLs, the bucket's and its
    /// objects', grant nothing.
    pub ignore_public_acls: bool,
}

impl BucketAccess {
    /// The decision for one request. An explicit Deny wins. A signed request (an access key of
    /// this platform, whose owner holds every bucket) is otherwise allowed; an unsigned one only
    /// where a statement (or the public grants of a canned ACL) allows anyone.
    pub fn decide(&self, principal: &Principal, request: &Request<'_>) -> bool {
        if self
            .policy
            .as_ref()
            .is_some_and(|p| p.matching(Effect::Deny, principal, request))
        {
            return false;
        }
        if let Some(scopes) = &principal.scopes {
            let bucket = request
                .resource
                .strip_prefix("arn:aws:s3:::")
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default();
            if !scopes.allows(Access::of(request.action), bucket) {
                return false;
            }
        }
        if principal.access_key.is_some() {
            return true;
        }
        !self.restrict_public
            && (self
                .policy
                .as_ref()
                .is_some_and(|p| p.matching(Effect::Allow, principal, request))
                || self
                    .public_grants
                    .matching(Effect::Allow, principal, request))
    }
}

impl BucketAccess {
    /// Whether an object's own ACL may still let in a request [`Self::decide`] refused: an unsigned
    /// read of the object, that no statement denies, on a bucket that does not ignore public ACLs.
    /// (Signed requests never need it: this platform's access keys hold every bucket.)
    pub fn object_acl_may_allow(&self, principal: &Principal, request: &Request<'_>) -> bool {
        principal.access_key.is_none()
            && request.action.eq_ignore_ascii_case("s3:GetObject")
            && !self.ignore_public_acls
            && !self
                .policy
                .as_ref()
                .is_some_and(|p| p.matching(Effect::Deny, principal, request))
    }
}

/// The canned ACLs an object may have (S3's list). Only the public ones grant anything here:
/// this platform's access keys are the only authenticated users, and they hold every bucket.
pub const OBJECT_CANNED_ACLS: [&str; 7] = [
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

pub fn check_object_acl(acl: &str) -> ApiResult<()> {
    if OBJECT_CANNED_ACLS.contains(&acl) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "invalid_acl",
        format!(
            "canned ACL {acl:?} is not one of {}",
            OBJECT_CANNED_ACLS.join(", ")
        ),
    ))
}

/// A canned ACL that lets anyone read (what a public access block's BlockPublicAcls refuses).
pub fn is_public_acl(acl: &str) -> bool {
    acl.starts_with("public-")
}

/// A canned ACL that lets anyone read an object.
pub fn acl_grants_anyone_read(acl: &str) -> bool {
    matches!(acl, "public-read" | "public-read-write")
}

/// `*` matches any run of characters, `?` any one.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The statements a canned bucket ACL stands for (S3's grants to AllUsers / AuthenticatedUsers).
pub fn canned_acl_grants(bucket: &str, acl: &str) -> ApiResult<Policy> {
    let everyone = |actions: &[&str]| Statement {
        effect: Effect::Allow,
        principals: vec!["*".into()],
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        resources: vec![bucket_arn(bucket), format!("{}/*", bucket_arn(bucket))],
    };
    let statements = match acl {
        // Only this platform's access keys are "authenticated users", and they may do anything.
        "private" | "authenticated-read" => vec![],
        "public-read" => vec![everyone(&["s3:ListBucket", "s3:GetObject"])],
        "public-read-write" => vec![everyone(&[
            "s3:ListBucket",
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
        ])],
        other => {
            return Err(ApiError::bad_request(
                "invalid_acl",
                format!(
                    "canned ACL {other:?} is not one of private, public-read, public-read-write, authenticated-read"
                ),
            ));
        }
    };
    Ok(Policy { statements })
}

/// The IAM action an S3 operation needs (S3's own table, for the operations served here).
pub fn action_of(operation: &str) -> String {
    let action = match operation {
        "HeadObject" => "GetObject",
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => "ListBucket",
        "CopyObject"
        | "UploadPart"
        | "UploadPartCopy"
        | "CreateMultipartUpload"
        | "CompleteMultipartUpload" => "PutObject",
        "DeleteObjects" => "DeleteObject",
        "ListParts" => "ListMultipartUploadParts",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        "AbortMultipartUpload" => "AbortMultipartUpload",
        "GetBucketLifecycleConfiguration" => "GetLifecycleConfiguration",
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => "PutLifecycleConfiguration",
        "GetBucketCors" => "GetBucketCORS",
        "PutBucketCors" | "DeleteBucketCors" => "PutBucketCORS",
        "DeleteBucketTagging" => "PutBucketTagging",
        "DeleteObjectTagging" => "DeleteObjectTagging",
        "ListBuckets" => "ListAllMyBuckets",
        other => other,
    };
    format!("s3:{action}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anonymous_get(bucket: &str, key: &str) -> (Principal, Request<'static>) {
        (
            Principal::anonymous(),
            Request {
                action: "s3:GetObject",
                resource: object_arn(bucket, key),
            },
        )
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b/c"));
        assert!(wildcard_match("s3:get*", "s3:getobject"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match(
            "arn:aws:s3:::b/public/*",
            "arn:aws:s3:::b/private/x"
        ));
        assert!(!wildcard_match("abc", "abcd"));
    }

    #[test]
    fn a_public_read_policy_lets_anonymous_get_objects_only() {
        let policy = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::pub/public/*"}]}"#,
            "pub",
        )
        .unwrap();
        assert!(policy.is_public());
        let access = BucketAccess {
            policy: Some(policy),
            ..Default::default()
        };
        let (who, req) = anonymous_get("pub", "public/a.txt");
        assert!(access.decide(&who, &req));
        let (who, req) = anonymous_get("pub", "private/a.txt");
        assert!(!access.decide(&who, &req));
        let put = Request {
            action: "s3:PutObject",
            resource: object_arn("pub", "public/a.txt"),
        };
        assert!(!access.decide(&Principal::anonymous(), &put));
        // Signed requests are the owner's: allowed unless denied.
        let key = Principal {
            access_key: Some("AK1".into()),
            owner: Some("alice".into()),
            ..Default::default()
        };
        assert!(access.decide(&key, &put));
        // RestrictPublicBuckets shuts unsigned requests out whatever the policy says.
        let restricted = BucketAccess {
            restrict_public: true,
            ..access
        };
        let (who, req) = anonymous_get("pub", "public/a.txt");
        assert!(!restricted.decide(&who, &req));
    }

    #[test]
    fn deny_wins_and_names_keys_or_owners() {
        let policy = Policy::parse(
            r#"{"Statement":{"Effect":"Deny","Principal":{"AWS":["AKREADONLY","arn:aws:iam::123:user/bob"]},"Action":["s3:PutObject","s3:Delete*"],"Resource":"arn:aws:s3:::b/*"}}"#,
            "b",
        )
        .unwrap();
        let put = Request {
            action: "s3:PutObject",
            resource: object_arn("b", "k"),
        };
        let access = BucketAccess {
            policy: Some(policy),
            ..Default::default()
        };
        assert!(!access.decide(
            &Principal {
                access_key: Some("AKREADONLY".into()),
                owner: Some("alice".into()),
                ..Default::default()
            },
            &put
        ));
        assert!(!access.decide(
            &Principal {
                access_key: Some("AKOTHER".into()),
                owner: Some("bob".into()),
                ..Default::default()
            },
            &put
        ));
        assert!(access.decide(
            &Principal {
                access_key: Some("AKOTHER".into()),
                owner: Some("alice".into()),
                ..Default::default()
            },
            &put
        ));
    }

    #[test]
    fn what_is_not_enforced_is_refused() {
        for bad in [
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{}}}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}]}"#,
            r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"iam:CreateUser","Resource":"arn:aws:s3:::b/*"}]}"#,
            r#"not json"#,
        ] {
            let err = Policy::parse(bad, "b").unwrap_err();
            assert_eq!(err.body().code, "malformed_policy", "{bad}");
        }
    }

    #[test]
    fn key_scopes_limit_a_key_to_buckets_and_kinds_of_access() {
        let scopes = KeyScopes::parse(&["read:photos".into(), "write:uploads-*".into()]).unwrap();
        let key = Principal {
            access_key: Some("AK1".into()),
            owner: Some("alice".into()),
            scopes: Some(std::sync::Arc::new(scopes)),
        };
        let open = BucketAccess::default();
        let ask = |action: &'static str, bucket: &str| {
            open.decide(
                &key,
                &Request {
                    action,
                    resource: object_arn(bucket, "k"),
                },
            )
        };
        assert!(ask("s3:GetObject", "photos"));
        assert!(!ask("s3:PutObject", "photos"));
        assert!(ask("s3:PutObject", "uploads-2026"));
        assert!(!ask("s3:GetObject", "uploads-2026"));
        assert!(!ask("s3:GetObject", "secrets"));
        assert!(!ask("s3:PutBucketPolicy", "photos"));
        for bad in ["read", "delete:b", "read:", "read:Bad_Name", "read:a*b*"] {
            assert_eq!(
                KeyScopes::parse(&[bad.into()]).unwrap_err().body().code,
                "invalid_scopes",
                "{bad}"
            );
        }
    }

    #[test]
    fn an_object_acl_is_asked_only_for_unsigned_reads_nothing_denies() {
        let (anyone, get) = anonymous_get("b", "k");
        assert!(BucketAccess::default().object_acl_may_allow(&anyone, &get));
        let put = Request {
            action: "s3:PutObject",
            resource: object_arn("b", "k"),
        };
        assert!(!BucketAccess::default().object_acl_may_allow(&anyone, &put));
        let ignoring = BucketAccess {
            ignore_public_acls: true,
            ..Default::default()
        };
        assert!(!ignoring.object_acl_may_allow(&anyone, &get));
        let deny = Policy::parse(
            r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/k"}}"#,
            "b",
        );
        let denying = BucketAccess {
            policy: Some(deny.unwrap()),
            ..Default::default()
        };
        assert!(!denying.object_acl_may_allow(&anyone, &get));
        assert!(check_object_acl("bucket-owner-full-control").is_ok());
        assert_eq!(
            check_object_acl("log-delivery-write")
                .unwrap_err()
                .body()
                .code,
            "invalid_acl"
        );
    }

    #[test]
    fn canned_acls() {
        let with = |acl: &str| BucketAccess {
            public_grants: canned_acl_grants("b", acl).unwrap(),
            ..Default::default()
        };
        let (who, req) = anonymous_get("b", "x");
        assert!(with("public-read").decide(&who, &req));
        assert!(!with("private").decide(&who, &req));
        assert!(!BucketAccess::default().decide(&who, &req));
        assert!(canned_acl_grants("b", "log-delivery-write").is_err());
    }
}
