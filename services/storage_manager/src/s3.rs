//! The S3 protocol face of the same buckets and objects, through the `s3s` crate: it parses S3
//! requests, checks SigV4 (headers and presigned URLs) against the access keys in `AccessKeys`,
//! and calls this `S3` implementation, which maps each operation onto `Storage`. Path style only
//! (`/<bucket>/<key>`), on the service's one port beside its own API.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use aerekos_common::ApiError;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use poem::{Endpoint, IntoResponse as _, Request, Response};
use s3s::{
    S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result,
    auth::{S3Auth, SecretKey},
    dto::{self, ETag, StreamingBlob, Timestamp},
    service::{S3Service, S3ServiceBuilder},
};

use crate::{
    domain::{
        access_keys::AccessKeys,
        objects::{ByteRange, CopySource, NewObject, Storage, refuse_upload},
    },
    model::ObjectInfo,
};

const SSE_KMS: &str = "aws:kms";

/// Builds the S3 service over `storage`, signed requests checked against `access_keys`.
pub fn service(storage: Arc<Storage>, access_keys: Arc<AccessKeys>) -> S3Service {
    let mut builder = S3ServiceBuilder::new(S3Front { storage });
    builder.set_auth(AccessKeyAuth { access_keys });
    builder.build()
}

/// Serves S3 requests inside the poem app: converts the request, runs s3s, converts the answer.
/// Bodies stream through in both directions.
pub struct S3Endpoint(pub S3Service);

impl Endpoint for S3Endpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let req: http::Request<_> = req.into();
        let req = req.map(s3s::Body::http_body);
        let resp = match self.0.call(req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(error = ?e, "the S3 layer failed");
                return Ok(http::StatusCode::INTERNAL_SERVER_ERROR.into_response());
            }
        };
        let (parts, body) = resp.into_parts();
        // (`take_bytes` would empty a streaming body too: look first.)
        let body = match body.bytes() {
            Some(bytes) => poem::Body::from(bytes),
            None => poem::Body::from_bytes_stream(body.map_err(std::io::Error::other)),
        };
        let mut out = Response::builder().status(parts.status).body(body);
        out.headers_mut().extend(parts.headers);
        // The access log and metrics label S3 requests as one operation.
        out.set_data(poem_openapi::OperationId("s3"));
        Ok(out)
    }
}

struct AccessKeyAuth {
    access_keys: Arc<AccessKeys>,
}

#[async_trait::async_trait]
impl S3Auth for AccessKeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.access_keys.active_secret(access_key) {
            Some(secret) => Ok(SecretKey::from(secret)),
            None => Err(S3Error::with_message(S3ErrorCode::InvalidAccessKeyId, "the access key does not exist or was revoked")),
        }
    }
}

struct S3Front {
    storage: Arc<Storage>,
}

/// Our API's errors in S3's terms (codes S3 SDKs know and act on).
fn to_s3(e: ApiError) -> S3Error {
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

fn timestamp(t: &chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from(SystemTime::from(*t))
}

fn etag(info: &ObjectInfo) -> ETag {
    ETag::Strong(info.etag.clone())
}

fn user_metadata(metadata: Option<dto::Metadata>) -> BTreeMap<String, String> {
    metadata.unwrap_or_default().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()
}

/// The key_manager key an S3 request asks for with SSE-KMS headers (None: the bucket's default).
fn requested_key(sse: Option<&dto::ServerSideEncryption>, key_id: Option<String>) -> S3Result<Option<String>> {
    match sse.map(|s| s.as_str()) {
        None => Ok(key_id),
        Some(SSE_KMS) => Ok(key_id),
        Some(other) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("server-side encryption {other:?} is not offered: use aws:kms with a key_manager key name"),
        )),
    }
}

fn sse_of(info: &ObjectInfo) -> (Option<dto::ServerSideEncryption>, Option<String>) {
    match &info.encryption_key {
        Some(key) => (Some(dto::ServerSideEncryption::from(SSE_KMS.to_owned())), Some(key.clone())),
        None => (None, None),
    }
}

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn list_buckets(&self, _req: S3Request<dto::ListBucketsInput>) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let buckets = self.storage.list_buckets();
        let buckets = buckets
            .into_iter()
            .map(|b| dto::Bucket { name: Some(b.name), creation_date: Some(timestamp(&b.created_at)), bucket_region: None })
            .collect();
        Ok(S3Response::new(dto::ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn create_bucket(&self, req: S3Request<dto::CreateBucketInput>) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let bucket = self.storage.create_bucket(&req.input.bucket, None).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::CreateBucketOutput { location: Some(format!("/{}", bucket.name)), ..Default::default() }))
    }

    async fn head_bucket(&self, req: S3Request<dto::HeadBucketInput>) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.storage.bucket(&req.input.bucket).map_err(to_s3)?;
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.storage.bucket(&req.input.bucket).map_err(to_s3)?;
        Ok(S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(&self, req: S3Request<dto::DeleteBucketInput>) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        self.storage.delete_bucket(&req.input.bucket).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketOutput {}))
    }

    async fn put_object(&self, req: S3Request<dto::PutObjectInput>) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let input = req.input;
        let body = input.body.unwrap_or_else(|| StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>()));
        let encryption_key = match requested_key(input.server_side_encryption.as_ref(), input.ssekms_key_id) {
            Ok(key) => key,
            Err(e) => return Err(refuse_upload(e, body).await),
        };
        let new = NewObject { content_type: input.content_type, metadata: user_metadata(input.metadata), encryption_key };
        let info = self.storage.put_object(&input.bucket, &input.key, new, body).await.map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(etag(&info)),
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<dto::GetObjectInput>) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let input = req.input;
        let range = input.range.map(|r| match r {
            dto::Range::Int { first, last } => ByteRange::From { first, last },
            dto::Range::Suffix { length } => ByteRange::Suffix { length },
        });
        let download = self.storage.get_object(&input.bucket, &input.key, range).await.map_err(to_s3)?;
        let info = download.info;
        let content_range = download
            .partial
            .then(|| format!("bytes {}-{}/{}", download.range.start, download.range.end - 1, info.size));
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(StreamingBlob::wrap(download.body)),
            content_length: Some((download.range.end - download.range.start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: Some(info.content_type.clone()),
            e_tag: Some(etag(&info)),
            last_modified: Some(timestamp(&info.last_modified)),
            metadata: Some(info.metadata.clone().into_iter().collect()),
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<dto::HeadObjectInput>) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let info = self.storage.head_object(&req.input.bucket, &req.input.key).await.map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        Ok(S3Response::new(dto::HeadObjectOutput {
            content_length: Some(info.size as i64),
            accept_ranges: Some("bytes".into()),
            content_type: Some(info.content_type.clone()),
            e_tag: Some(etag(&info)),
            last_modified: Some(timestamp(&info.last_modified)),
            metadata: Some(info.metadata.clone().into_iter().collect()),
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<dto::DeleteObjectInput>) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        // S3 answers 204 whether or not the key existed.
        self.storage.delete_object(&req.input.bucket, &req.input.key).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(&self, req: S3Request<dto::DeleteObjectsInput>) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let input = req.input;
        self.storage.bucket(&input.bucket).map_err(to_s3)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            match self.storage.delete_object(&input.bucket, &object.key).await {
                Ok(_) => {
                    if !quiet {
                        deleted.push(dto::DeletedObject { key: Some(object.key), ..Default::default() });
                    }
                }
                Err(e) => {
                    let s3 = to_s3(e);
                    errors.push(dto::Error {
                        key: Some(object.key),
                        code: Some(s3.code().as_str().to_owned()),
                        message: s3.message().map(str::to_owned),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<dto::ListObjectsV2Input>) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let input = req.input;
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
        let prefix = input.prefix.clone().unwrap_or_default();
        let (objects, prefixes, next) = if max_keys == 0 {
            self.storage.bucket(&input.bucket).map_err(to_s3)?;
            (Vec::new(), Vec::new(), None)
        } else {
            let page = self
                .storage
                .list_objects(
                    &input.bucket,
                    &prefix,
                    input.delimiter.as_deref(),
                    input.start_after.as_deref(),
                    input.continuation_token.as_deref(),
                    max_keys as u32,
                )
                .await
                .map_err(to_s3)?;
            (page.objects, page.common_prefixes, page.next_continuation_token)
        };
        let key_count = (objects.len() + prefixes.len()) as i32;
        let contents: Vec<dto::Object> = objects
            .iter()
            .map(|o| dto::Object {
                key: Some(o.key.clone()),
                size: Some(o.size as i64),
                e_tag: Some(etag(o)),
                last_modified: Some(timestamp(&o.last_modified)),
                storage_class: Some(dto::ObjectStorageClass::from_static(dto::ObjectStorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();
        let common_prefixes: Vec<dto::CommonPrefix> =
            prefixes.into_iter().map(|p| dto::CommonPrefix { prefix: Some(p) }).collect();
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            is_truncated: Some(next.is_some()),
            continuation_token: input.continuation_token,
            next_continuation_token: next,
            start_after: input.start_after,
            encoding_type: input.encoding_type,
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<dto::CopyObjectInput>) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let input = req.input;
        let dto::CopySource::Bucket { bucket, key, .. } = &input.copy_source else {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "copy from access points is not offered"));
        };
        let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == dto::MetadataDirective::REPLACE);
        let encryption_key = requested_key(input.server_side_encryption.as_ref(), input.ssekms_key_id)?;
        let source = CopySource {
            bucket: bucket.to_string(),
            key: key.to_string(),
            replace_metadata: replace.then(|| NewObject {
                content_type: input.content_type,
                metadata: user_metadata(input.metadata),
                encryption_key: None,
            }),
            encryption_key,
        };
        let info = self.storage.copy_object(source, &input.bucket, &input.key).await.map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(etag(&info)),
                last_modified: Some(timestamp(&info.last_modified)),
                ..Default::default()
            }),
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let input = req.input;
        let encryption_key = requested_key(input.server_side_encryption.as_ref(), input.ssekms_key_id)?;
        let new = NewObject { content_type: input.content_type, metadata: user_metadata(input.metadata), encryption_key };
        let upload = self.storage.create_upload(&input.bucket, &input.key, new).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(upload.bucket),
            key: Some(upload.key),
            upload_id: Some(upload.upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<dto::UploadPartInput>) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let input = req.input;
        let part_number = u32::try_from(input.part_number)
            .map_err(|_| S3Error::with_message(S3ErrorCode::InvalidArgument, "part numbers are 1 to 10000"))?;
        let body = input.body.unwrap_or_else(|| StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>()));
        let md5 = self
            .storage
            .upload_part(&input.bucket, &input.key, &input.upload_id, part_number, body)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::UploadPartOutput { e_tag: Some(ETag::Strong(md5)), ..Default::default() }))
    }

    async fn list_parts(&self, req: S3Request<dto::ListPartsInput>) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let input = req.input;
        let parts = self.storage.list_parts(&input.bucket, &input.key, &input.upload_id).await.map_err(to_s3)?;
        let parts = parts
            .into_iter()
            .map(|p| dto::Part {
                part_number: Some(p.part_number as i32),
                size: Some(p.size as i64),
                e_tag: Some(ETag::Strong(p.etag)),
                last_modified: Some(timestamp(&p.last_modified)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            parts: Some(parts),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let input = req.input;
        let uploads = self.storage.list_uploads(&input.bucket).await.map_err(to_s3)?;
        let uploads = uploads
            .into_iter()
            .map(|u| dto::MultipartUpload { key: Some(u.key), upload_id: Some(u.upload_id), ..Default::default() })
            .collect();
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            uploads: Some(uploads),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let input = req.input;
        let parts: Vec<(u32, String)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let number = p.part_number.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
                let etag = match p.e_tag {
                    Some(ETag::Strong(s) | ETag::Weak(s)) => s,
                    None => String::new(),
                };
                (number, etag)
            })
            .collect();
        let info = self
            .storage
            .complete_upload(&input.bucket, &input.key, &input.upload_id, &parts)
            .await
            .map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            bucket: Some(info.bucket.clone()),
            key: Some(info.key.clone()),
            e_tag: Some(etag(&info)),
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let input = req.input;
        self.storage.abort_upload(&input.bucket, &input.key, &input.upload_id).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }
}
