//! Who is asking and whether they may: SigV4 secrets of the access keys for s3s, and every
//! request's decision by the bucket's policy, canned ACL, public access block and the key's scopes.

use super::*;

/// Who signed a request (nobody: unsigned), as bucket policies name principals.
pub(super) fn principal_of(
    access_keys: &AccessKeys,
    credentials: Option<&s3s::auth::Credentials>,
) -> Principal {
    match credentials {
        Some(c) => access_keys
            .principal(&c.access_key)
            .unwrap_or_else(|| Principal {
                access_key: Some(c.access_key.clone()),
                ..Default::default()
            }),
        None => Principal::anonymous(),
    }
}

/// The bucket's policy decision on `action` over the bucket or one of its objects. A bucket that
/// does not exist is left to the operation (NoSuchBucket) for signed requests.
pub(super) fn allowed(
    storage: &Storage,
    principal: &Principal,
    action: &str,
    bucket: &str,
    key: Option<&str>,
) -> bool {
    let resource = match key {
        Some(key) => policy::object_arn(bucket, key),
        None => policy::bucket_arn(bucket),
    };
    match storage.known_bucket(bucket) {
        Ok(known) => known
            .access
            .decide(principal, &policy::Request { action, resource }),
        // No such bucket (yet): a signed request within its key's scopes goes on to the operation.
        Err(_) => {
            principal.access_key.is_some()
                && principal
                    .scopes
                    .as_ref()
                    .is_none_or(|s| s.allows(policy::Access::of(action), bucket))
        }
    }
}

pub(super) fn access_denied() -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, "Access Denied")
}

/// Every S3 request's authorization, after s3s checked its signature (if it has one): the
/// bucket's policy, canned ACL and public access block decide ([`policy::BucketAccess`]).
pub(super) struct PolicyAccess {
    pub(super) storage: Arc<Storage>,
    pub(super) access_keys: Arc<AccessKeys>,
}

#[async_trait::async_trait]
impl s3s::access::S3Access for PolicyAccess {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let principal = principal_of(&self.access_keys, cx.credentials());
        let operation = cx.s3_op().name();
        let action = policy::action_of(operation);
        let ok = match cx.s3_path() {
            s3s::path::S3Path::Root => principal.access_key.is_some(),
            // Decided key by key in the operation itself.
            s3s::path::S3Path::Bucket { .. } if operation == "DeleteObjects" => true,
            s3s::path::S3Path::Bucket { bucket } => {
                allowed(&self.storage, &principal, &action, bucket, None)
            }
            s3s::path::S3Path::Object { bucket, key } => {
                allowed(&self.storage, &principal, &action, bucket, Some(key))
                    || self
                        .object_acl_allows(&principal, &action, bucket, key, cx.uri())
                        .await
            }
        };
        if ok { Ok(()) } else { Err(access_denied()) }
    }
}

impl PolicyAccess {
    /// What the bucket refused, an object's public canned ACL may still allow: an unsigned read of
    /// that object (the version the query names, else the current one).
    async fn object_acl_allows(
        &self,
        principal: &Principal,
        action: &str,
        bucket: &str,
        key: &str,
        uri: &http::Uri,
    ) -> bool {
        let Ok(known) = self.storage.known_bucket(bucket) else {
            return false;
        };
        let request = policy::Request {
            action,
            resource: policy::object_arn(bucket, key),
        };
        if !known.access.object_acl_may_allow(principal, &request) {
            return false;
        }
        let version = uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "versionId")
                .map(|(_, value)| value.into_owned())
        });
        matches!(self.storage.object_acl(bucket, key, version.as_deref()).await, Ok(Some(acl)) if policy::acl_grants_anyone_read(&acl))
    }
}

pub(super) struct AccessKeyAuth {
    pub(super) access_keys: Arc<AccessKeys>,
}

#[async_trait::async_trait]
impl S3Auth for AccessKeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.access_keys.active_secret(access_key) {
            Some(secret) => Ok(SecretKey::from(secret)),
            None => Err(S3Error::with_message(
                S3ErrorCode::InvalidAccessKeyId,
                "the access key does not exist or was revoked",
            )),
        }
    }
}
