//! Between S3's DTOs and the domain: listings' encoding, conditions, kept headers, tags, lifecycle
//! rules, checksums, and our errors in S3's codes.

use super::*;

pub(super) const SSE_KMS: &str = "aws:kms";

/// `EncodingType=url` in a listing: keys, prefixes, delimiters and markers in the answer are
/// percent-encoded (boto3 asks for it by default and decodes them, `+` included).
#[derive(Clone, Copy)]
pub(super) struct ListEncoding {
    pub(super) url: bool,
}

/// What S3 leaves unencoded in a url-encoded listing: RFC 3986's unreserved characters and `/`.
pub(super) const LISTING_UNENCODED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');

impl ListEncoding {
    pub(super) fn of(encoding_type: Option<&dto::EncodingType>) -> S3Result<Self> {
        match encoding_type.map(|e| e.as_str()) {
            None => Ok(Self { url: false }),
            Some(e) if e.eq_ignore_ascii_case("url") => Ok(Self { url: true }),
            Some(other) => Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("EncodingType {other:?} is not offered: the one encoding is \"url\""),
            )),
        }
    }

    pub(super) fn apply(self, text: String) -> String {
        if self.url {
            percent_encoding::utf8_percent_encode(&text, LISTING_UNENCODED).to_string()
        } else {
            text
        }
    }

    pub(super) fn apply_opt(self, text: Option<String>) -> Option<String> {
        text.map(|t| self.apply(t))
    }

    pub(super) fn echo(self) -> Option<dto::EncodingType> {
        self.url
            .then(|| dto::EncodingType::from_static(dto::EncodingType::URL))
    }
}

pub(super) fn list_entry(
    info: &ObjectInfo,
    owner: Option<&dto::Owner>,
    encoding: ListEncoding,
) -> dto::Object {
    dto::Object {
        key: Some(encoding.apply(info.key.clone())),
        size: Some(info.size as i64),
        e_tag: Some(etag(info)),
        last_modified: Some(timestamp(&info.last_modified)),
        storage_class: Some(dto::ObjectStorageClass::from_static(
            dto::ObjectStorageClass::STANDARD,
        )),
        owner: owner.cloned(),
        ..Default::default()
    }
}

pub(super) fn common_prefix_entries(
    page: &ObjectList,
    encoding: ListEncoding,
) -> Option<Vec<dto::CommonPrefix>> {
    let prefixes: Vec<_> = page
        .common_prefixes
        .iter()
        .map(|p| dto::CommonPrefix {
            prefix: Some(encoding.apply(p.clone())),
        })
        .collect();
    (!prefixes.is_empty()).then_some(prefixes)
}

/// S3's conditional read headers as the domain evaluates them.
pub(super) fn read_conditions(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
    if_modified_since: Option<Timestamp>,
    if_unmodified_since: Option<Timestamp>,
) -> ReadConditions {
    ReadConditions {
        if_match: if_match.map(|c| condition_text(&c)),
        if_none_match: if_none_match.map(|c| condition_text(&c)),
        if_modified_since: if_modified_since.map(chrono_time),
        if_unmodified_since: if_unmodified_since.map(chrono_time),
    }
}

pub(super) fn condition_text(condition: &ETagCondition) -> String {
    match condition {
        ETagCondition::Any => "*".to_owned(),
        ETagCondition::ETag(tag) => tag.value().to_owned(),
    }
}

pub(super) fn chrono_time(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    let t = time::OffsetDateTime::from(t);
    chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default()
}

/// What a PUT (or a multipart completion) with `If-Match`/`If-None-Match` requires of the key.
pub(super) fn write_precondition(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
) -> S3Result<Precondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::None),
        (None, Some(ETagCondition::Any)) => Ok(Precondition::Absent),
        (Some(ETagCondition::ETag(tag)), None) => Ok(Precondition::ETag(tag.value().to_owned())),
        (Some(ETagCondition::Any), None) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "If-Match on a write takes an ETag; to write only where nothing is, use If-None-Match: *",
        )),
        (None, Some(ETagCondition::ETag(_))) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "If-None-Match on a write takes only *, which writes only where there is no object yet",
        )),
        (Some(_), Some(_)) => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "give If-Match or If-None-Match on a write, not both",
        )),
    }
}

/// The HTTP headers an upload asks the object to keep (S3 drops the `aws-chunked` transfer
/// coding from Content-Encoding).
pub(super) fn stored_headers(
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<Timestamp>,
) -> BTreeMap<String, String> {
    let content_encoding = content_encoding
        .map(|e| {
            e.split(',')
                .map(str::trim)
                .filter(|c| !c.eq_ignore_ascii_case("aws-chunked"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|e| !e.is_empty());
    let expires = expires.and_then(|t| {
        let mut text = Vec::new();
        t.format(TimestampFormat::HttpDate, &mut text).ok()?;
        String::from_utf8(text).ok()
    });
    [
        ("cache-control", cache_control),
        ("content-disposition", content_disposition),
        ("content-encoding", content_encoding),
        ("content-language", content_language),
        ("expires", expires),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_owned(), value?)))
    .collect()
}

pub(super) fn header_of(info: &ObjectInfo, name: &str) -> Option<String> {
    info.headers.get(name).cloned()
}

pub(super) fn expires_of(info: &ObjectInfo) -> Option<Timestamp> {
    info.headers
        .get("expires")
        .and_then(|t| Timestamp::parse(TimestampFormat::HttpDate, t).ok())
}

/// The `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded).
pub(super) fn tagging_header(header: Option<&str>) -> BTreeMap<String, String> {
    header
        .map(|h| form_urlencoded::parse(h.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub(super) fn tag_set(tags: BTreeMap<String, String>) -> Vec<dto::Tag> {
    tags.into_iter()
        .map(|(key, value)| dto::Tag {
            key: Some(key),
            value: Some(value),
        })
        .collect()
}

/// A TagSet as a map; a key given twice is S3's InvalidTag.
pub(super) fn tag_map(tag_set: Vec<dto::Tag>) -> S3Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for tag in tag_set {
        let key = tag.key.unwrap_or_default();
        if tags
            .insert(key.clone(), tag.value.unwrap_or_default())
            .is_some()
        {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidTag,
                format!("tag key {key:?} is given twice"),
            ));
        }
    }
    Ok(tags)
}

/// A canned bucket ACL kept as a setting; `private` is the absence of one.
pub(super) fn set_canned_acl(
    settings: &mut BucketSettings,
    bucket: &str,
    acl: &str,
) -> Result<(), ApiError> {
    check_canned_acl(bucket, acl)?;
    settings.canned_acl = (acl != "private").then(|| acl.to_owned());
    settings.check_against_block(bucket)
}

pub(super) fn check_canned_acl(bucket: &str, acl: &str) -> Result<(), ApiError> {
    crate::domain::policy::canned_acl_grants(bucket, acl).map(|_| ())
}

/// An S3 lifecycle rule as the lifecycle task applies it (expiration, noncurrent-version
/// expiration and aborting uploads; the transitions of tiered storage are refused).
pub(super) fn lifecycle_rule(rule: dto::LifecycleRule) -> S3Result<LifecycleRule> {
    let unsupported = |what: &str| {
        Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!(
                "lifecycle {what} is not offered: only Expiration and AbortIncompleteMultipartUpload"
            ),
        ))
    };
    if rule.transitions.as_ref().is_some_and(|t| !t.is_empty()) {
        return unsupported("transitions");
    }
    if rule
        .noncurrent_version_transitions
        .as_ref()
        .is_some_and(|t| !t.is_empty())
    {
        return unsupported("noncurrent-version transitions");
    }
    if rule
        .noncurrent_version_expiration
        .as_ref()
        .is_some_and(|n| n.newer_noncurrent_versions.is_some())
    {
        return unsupported("NewerNoncurrentVersions");
    }
    let (mut prefix, mut tags) = (rule.prefix.unwrap_or_default(), BTreeMap::new());
    if let Some(filter) = rule.filter {
        if filter.object_size_greater_than.is_some() || filter.object_size_less_than.is_some() {
            return unsupported("size filters");
        }
        if let Some(p) = filter.prefix {
            prefix = p;
        }
        if let Some(tag) = filter.tag {
            tags.insert(tag.key.unwrap_or_default(), tag.value.unwrap_or_default());
        }
        if let Some(and) = filter.and {
            if and.object_size_greater_than.is_some() || and.object_size_less_than.is_some() {
                return unsupported("size filters");
            }
            prefix = and.prefix.unwrap_or(prefix);
            tags.extend(tag_map(and.tags.unwrap_or_default())?);
        }
    }
    let days = |d: Option<i32>| -> S3Result<Option<u32>> {
        d.map(|d| {
            u32::try_from(d).map_err(|_| {
                S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    "Days must be a positive number",
                )
            })
        })
        .transpose()
    };
    let expiration = rule.expiration.unwrap_or_default();
    if expiration.expired_object_delete_marker.is_some() {
        return unsupported("ExpiredObjectDeleteMarker (there is no versioning)");
    }
    Ok(LifecycleRule {
        id: rule.id,
        enabled: rule.status.as_str() == dto::ExpirationStatus::ENABLED,
        prefix,
        tags,
        expiration_days: days(expiration.days)?,
        expiration_date: expiration.date.map(|d| chrono_time(d).timestamp()),
        abort_incomplete_days: days(
            rule.abort_incomplete_multipart_upload
                .and_then(|a| a.days_after_initiation),
        )?,
        noncurrent_days: days(
            rule.noncurrent_version_expiration
                .and_then(|n| n.noncurrent_days),
        )?,
    })
}

pub(super) fn lifecycle_rule_dto(rule: &LifecycleRule) -> dto::LifecycleRule {
    let tags = tag_set(rule.tags.clone());
    let filter = match tags.len() {
        0 => dto::LifecycleRuleFilter {
            prefix: Some(rule.prefix.clone()),
            ..Default::default()
        },
        1 if rule.prefix.is_empty() => dto::LifecycleRuleFilter {
            tag: tags.into_iter().next(),
            ..Default::default()
        },
        _ => dto::LifecycleRuleFilter {
            and: Some(dto::LifecycleRuleAndOperator {
                prefix: Some(rule.prefix.clone()),
                tags: Some(tags),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    let expiration =
        (rule.expiration_days.is_some() || rule.expiration_date.is_some()).then(|| {
            dto::LifecycleExpiration {
                days: rule.expiration_days.map(|d| d as i32),
                date: rule
                    .expiration_date
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map(|t| timestamp(&t)),
                ..Default::default()
            }
        });
    dto::LifecycleRule {
        id: rule.id.clone(),
        status: dto::ExpirationStatus::from_static(if rule.enabled {
            dto::ExpirationStatus::ENABLED
        } else {
            dto::ExpirationStatus::DISABLED
        }),
        filter: Some(filter),
        expiration,
        abort_incomplete_multipart_upload: rule.abort_incomplete_days.map(|d| {
            dto::AbortIncompleteMultipartUpload {
                days_after_initiation: Some(d as i32),
            }
        }),
        noncurrent_version_expiration: rule.noncurrent_days.map(|d| {
            dto::NoncurrentVersionExpiration {
                noncurrent_days: Some(d as i32),
                newer_noncurrent_versions: None,
            }
        }),
        noncurrent_version_transitions: None,
        prefix: None,
        transitions: None,
    }
}

pub(super) fn tag_count(info: &ObjectInfo) -> Option<i32> {
    (!info.tags.is_empty()).then_some(info.tags.len() as i32)
}

/// An object's canned ACL as a request gives it (`x-amz-acl`; None: private). ACL grants
/// (`x-amz-grant-*`) are refused rather than ignored: a grant not kept would be a lie about who
/// can read the object.
pub(super) fn requested_object_acl(
    acl: Option<&dto::ObjectCannedACL>,
    grants: bool,
) -> S3Result<Option<String>> {
    if grants {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "ACL grants (x-amz-grant-*, an AccessControlPolicy) are not offered: use a canned ACL (x-amz-acl) or a bucket policy",
        ));
    }
    let Some(acl) = acl.map(|a| a.as_str()) else {
        return Ok(None);
    };
    crate::domain::policy::check_object_acl(acl).map_err(to_s3)?;
    Ok((acl != "private").then(|| acl.to_owned()))
}

/// An ACL as S3 lists it: the owner's FULL_CONTROL, and what a canned ACL grants S3's groups.
pub(super) fn canned_acl_listing(
    owner: dto::Owner,
    acl: Option<&str>,
) -> (Option<Vec<dto::Grant>>, Option<dto::Owner>) {
    let grant = |grantee: dto::Grantee, permission: &'static str| dto::Grant {
        grantee: Some(grantee),
        permission: Some(dto::Permission::from_static(permission)),
    };
    let group = |uri: &str| dto::Grantee {
        type_: dto::Type::from_static(dto::Type::GROUP),
        uri: Some(uri.to_owned()),
        display_name: None,
        email_address: None,
        id: None,
    };
    const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
    const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
    let owner_grantee = dto::Grantee {
        display_name: owner.display_name.clone(),
        id: owner.id.clone(),
        type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
        email_address: None,
        uri: None,
    };
    let mut grants = vec![grant(owner_grantee, dto::Permission::FULL_CONTROL)];
    match acl {
        Some("public-read") => grants.push(grant(group(ALL_USERS), dto::Permission::READ)),
        Some("public-read-write") => {
            grants.extend([
                grant(group(ALL_USERS), dto::Permission::READ),
                grant(group(ALL_USERS), dto::Permission::WRITE),
            ]);
        }
        Some("authenticated-read") => {
            grants.push(grant(group(AUTHENTICATED_USERS), dto::Permission::READ))
        }
        _ => {}
    }
    (Some(grants), Some(owner))
}

/// Our API's errors in S3's terms (codes S3 SDKs know and act on).
pub(super) fn to_s3(e: ApiError) -> S3Error {
    let body = e.body();
    let code = match body.code.as_str() {
        "bucket_not_found" => S3ErrorCode::NoSuchBucket,
        "object_not_found" => S3ErrorCode::NoSuchKey,
        "upload_not_found" => S3ErrorCode::NoSuchUpload,
        "bucket_exists" => S3ErrorCode::BucketAlreadyOwnedByYou,
        "bucket_not_empty" => S3ErrorCode::BucketNotEmpty,
        "invalid_bucket_name" => S3ErrorCode::InvalidBucketName,
        "invalid_part" | "invalid_part_list" => S3ErrorCode::InvalidPart,
        "invalid_part_order" => S3ErrorCode::InvalidPartOrder,
        "range_not_satisfiable" => S3ErrorCode::InvalidRange,
        "object_too_large" => S3ErrorCode::EntityTooLarge,
        "upload_incomplete" => S3ErrorCode::IncompleteBody,
        "precondition_failed" => S3ErrorCode::PreconditionFailed,
        "not_modified" => S3ErrorCode::NotModified,
        "bad_digest" => S3ErrorCode::BadDigest,
        "invalid_digest" => S3ErrorCode::InvalidDigest,
        "part_too_small" => S3ErrorCode::EntityTooSmall,
        "copy_onto_itself" => S3ErrorCode::InvalidRequest,
        "invalid_tag" => S3ErrorCode::InvalidTag,
        "invalid_continuation_token" => S3ErrorCode::InvalidArgument,
        "invalid_request" => S3ErrorCode::InvalidRequest,
        "version_not_found" => S3ErrorCode::NoSuchVersion,
        "delete_marker" => S3ErrorCode::MethodNotAllowed,
        "malformed_policy" => S3ErrorCode::MalformedPolicy,
        "public_access_blocked" => S3ErrorCode::AccessDenied,
        "malformed_cors" | "malformed_lifecycle" => S3ErrorCode::MalformedXML,
        "invalid_acl" => S3ErrorCode::InvalidArgument,
        "encryption_key_not_found" => S3ErrorCode::Custom("KMS.NotFoundException".into()),
        "encryption_key_unusable" => S3ErrorCode::Custom("KMS.DisabledException".into()),
        _ => match e.status().as_u16() {
            400 => S3ErrorCode::InvalidArgument,
            403 => S3ErrorCode::AccessDenied,
            404 => S3ErrorCode::NoSuchKey,
            409 => S3ErrorCode::InvalidRequest,
            503 => S3ErrorCode::ServiceUnavailable,
            _ => S3ErrorCode::InternalError,
        },
    };
    let mut err = S3Error::with_message(code, body.message.clone());
    if body.code.starts_with("encryption_key") {
        err.set_status_code(http::StatusCode::BAD_REQUEST);
    }
    err
}

/// S3's additional checksums (`x-amz-checksum-crc32`, `-crc32c`, `-crc64nvme`, `-sha1`,
/// `-sha256`): the one an upload sends, in a header or (aws-chunked uploads) in a trailer after the
/// body, is computed over the bytes as they are stored and compared before the object is visible.
pub(super) struct S3Checksum {
    pub(super) algorithm: &'static str,
    pub(super) hasher: s3s::checksum::ChecksumHasher,
    pub(super) expected: ExpectedChecksum,
}

pub(super) enum ExpectedChecksum {
    Header(String),
    Trailer(s3s::TrailingHeaders),
}

pub(super) const CHECKSUM_ALGORITHMS: [&str; 5] =
    ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

impl S3Checksum {
    /// The check an S3 upload asks for, from its headers: a value in `x-amz-checksum-<algorithm>`,
    /// or one promised in `x-amz-trailer`.
    pub(super) fn of<T>(req: &S3Request<T>) -> S3Result<Option<Box<dyn BodyCheck>>> {
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut given = CHECKSUM_ALGORITHMS
            .iter()
            .filter_map(|a| Some((*a, header(&format!("x-amz-checksum-{a}"))?)));
        let first = given.next();
        if given.next().is_some() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "send one x-amz-checksum-* header, not several",
            ));
        }
        let (algorithm, expected) = match (first, header("x-amz-trailer")) {
            (Some((algorithm, value)), _) => (algorithm, ExpectedChecksum::Header(value)),
            (None, Some(trailer)) => {
                let trailer = trailer.trim().to_ascii_lowercase();
                let Some(algorithm) = CHECKSUM_ALGORITHMS
                    .iter()
                    .find(|a| trailer == format!("x-amz-checksum-{a}"))
                else {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidRequest,
                        format!("x-amz-trailer {trailer:?} is not an x-amz-checksum-* header"),
                    ));
                };
                let Some(trailers) = req.trailing_headers.clone() else {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidRequest,
                        "x-amz-trailer needs an aws-chunked body",
                    ));
                };
                (*algorithm, ExpectedChecksum::Trailer(trailers))
            }
            (None, None) => return Ok(None),
        };
        let mut hasher = s3s::checksum::ChecksumHasher::default();
        use s3s::crypto::Checksum as _;
        match algorithm {
            "crc32" => hasher.crc32 = Some(s3s::crypto::Crc32::new()),
            "crc32c" => hasher.crc32c = Some(s3s::crypto::Crc32c::new()),
            "crc64nvme" => hasher.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
            "sha1" => hasher.sha1 = Some(s3s::crypto::Sha1::new()),
            _ => hasher.sha256 = Some(s3s::crypto::Sha256::new()),
        }
        Ok(Some(Box::new(Self {
            algorithm,
            hasher,
            expected,
        })))
    }
}

impl BodyCheck for S3Checksum {
    fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
    }

    fn verdict(self: Box<Self>) -> Result<Option<String>, ApiError> {
        let name = format!("x-amz-checksum-{}", self.algorithm);
        let sums = self.hasher.finalize();
        let computed = [
            sums.checksum_crc32,
            sums.checksum_crc32c,
            sums.checksum_crc64nvme,
            sums.checksum_sha1,
            sums.checksum_sha256,
        ]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_default();
        let expected = match self.expected {
            ExpectedChecksum::Header(value) => Some(value),
            ExpectedChecksum::Trailer(trailers) => trailers
                .read(|h| {
                    h.get(&name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                })
                .flatten(),
        };
        match expected {
            Some(expected) if expected.trim() == computed => Ok(Some(format!(
                "{}:{computed}",
                self.algorithm.to_ascii_uppercase()
            ))),
            Some(expected) => Err(ApiError::bad_request(
                "bad_digest",
                format!(
                    "{name} is {expected} but the bytes received have {computed}; nothing was stored"
                ),
            )),
            None => Err(ApiError::bad_request(
                "invalid_request",
                format!("the trailer promised {name} and did not send it; nothing was stored"),
            )),
        }
    }
}

/// The stored checksum in the fields S3 answers carry.
pub(super) fn checksum_fields(info: &ObjectInfo) -> dto::Checksum {
    let mut out = dto::Checksum::default();
    if let Some((algorithm, value)) = info.checksum.as_deref().and_then(|c| c.split_once(':')) {
        let value = Some(value.to_owned());
        match algorithm {
            "CRC32" => out.checksum_crc32 = value,
            "CRC32C" => out.checksum_crc32c = value,
            "CRC64NVME" => out.checksum_crc64nvme = value,
            "SHA1" => out.checksum_sha1 = value,
            "SHA256" => out.checksum_sha256 = value,
            _ => {}
        }
    }
    out
}

/// An upload refused because its body stream failed: where s3s's check of the signed bytes failed
/// (a chunk signature, the payload's SHA-256), the error S3 gives for that. s3s's stream errors
/// are private types, so their text is what tells them apart.
pub(super) fn body_refusal(e: ApiError) -> S3Error {
    let message = e.body().message.clone();
    if e.body().code == "upload_incomplete" {
        if message.contains("SignatureMismatch") {
            return S3Error::with_message(
                S3ErrorCode::SignatureDoesNotMatch,
                "a chunk's signature does not match its bytes; nothing was stored",
            );
        }
        if message.contains("Sha256Mismatch") {
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                "the body's SHA-256 is not the x-amz-content-sha256 it was signed with; nothing was stored",
            );
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            return err;
        }
    }
    to_s3(e)
}

pub(super) fn timestamp(t: &chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from(SystemTime::from(*t))
}

pub(super) fn etag(info: &ObjectInfo) -> ETag {
    ETag::Strong(info.etag.clone())
}

pub(super) fn user_metadata(metadata: Option<dto::Metadata>) -> BTreeMap<String, String> {
    metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// The key_manager key an S3 request asks for with SSE-KMS headers (None: the bucket's default).
pub(super) fn requested_key(
    sse: Option<&dto::ServerSideEncryption>,
    key_id: Option<String>,
) -> S3Result<Option<String>> {
    match sse.map(|s| s.as_str()) {
        None => Ok(key_id),
        Some(SSE_KMS) => Ok(key_id),
        Some(other) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!(
                "server-side encryption {other:?} is not offered: use aws:kms with a key_manager key name"
            ),
        )),
    }
}

pub(super) fn sse_of(info: &ObjectInfo) -> (Option<dto::ServerSideEncryption>, Option<String>) {
    match &info.encryption_key {
        Some(key) => (
            Some(dto::ServerSideEncryption::from(SSE_KMS.to_owned())),
            Some(key.clone()),
        ),
        None => (None, None),
    }
}

pub(super) fn checksum_mode_enabled(mode: Option<&dto::ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(dto::ChecksumMode::ENABLED))
}

pub(super) fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n).map_err(|_| {
        S3Error::with_message(S3ErrorCode::InvalidArgument, "part numbers are 1 to 10000")
    })
}

/// The object a copy reads, with the conditions it must meet; what the copy writes is filled in by
/// the caller.
pub(super) fn copy_source(
    source: &dto::CopySource,
    conditions: ReadConditions,
) -> S3Result<CopySource> {
    let dto::CopySource::Bucket {
        bucket,
        key,
        version_id,
    } = source
    else {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "copy from access points is not offered",
        ));
    };
    Ok(CopySource {
        bucket: bucket.to_string(),
        key: key.to_string(),
        replace_metadata: None,
        replace_tags: None,
        encryption_key: None,
        acl: None,
        conditions,
        version: version_id.as_ref().map(|v| v.to_string()),
    })
}
