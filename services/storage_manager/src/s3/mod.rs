//! The S3 protocol face of the same buckets and objects, through the `s3s` crate: s3s parses S3
//! requests and checks SigV4 (headers, presigned URLs, POST policies, aws-chunked streams) against
//! the access keys; this module decides access (`access`), maps each operation onto `Storage`
//! (`operations`, with `convert` between S3's DTOs and the domain), and serves it all inside the
//! poem app (`endpoint`). Path style (`/<bucket>/<key>`) on every host, virtual-host style under
//! `S3_DOMAIN`, on the service's one port beside its own API.
//!
//! What S3 does that this service does not answers as S3 answers a bucket with nothing configured
//! where S3 has such an answer, and `NotImplemented` where it has none (docs/architecture.md lists
//! them).

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use aerekos_common::ApiError;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use poem::{Endpoint, IntoResponse as _, Request, Response};
use s3s::{
    S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result,
    auth::{S3Auth, SecretKey},
    dto::{self, ETag, ETagCondition, StreamingBlob, Timestamp, TimestampFormat},
    service::{S3Service, S3ServiceBuilder},
};

use crate::{
    domain::{
        access_keys::AccessKeys,
        bucket_settings::{
            self, BucketSettings, CorsRule, LifecycleRule, PublicAccessBlock, check_cors,
            check_lifecycle,
        },
        names::check_tags,
        objects::{
            BodyCheck, ByteRange, CopySource, NewObject, Precondition, ReadConditions, Storage,
            WriteChecks, refuse_upload,
        },
        policy::{self, Principal},
    },
    model::{ObjectInfo, ObjectList},
};

mod access;
mod convert;
mod endpoint;
mod operations;

use access::*;
use convert::*;
use endpoint::*;
pub use endpoint::{S3Endpoint, Spool};
use operations::*;

/// Builds the S3 service over `storage`, signed requests checked against `access_keys`; buckets
/// are also virtual hosts under `domains`.
pub fn service(
    storage: Arc<Storage>,
    access_keys: Arc<AccessKeys>,
    domains: &[String],
) -> Result<S3Service, String> {
    let mut builder = S3ServiceBuilder::new(S3Front {
        storage: storage.clone(),
        access_keys: access_keys.clone(),
    });
    if !domains.is_empty() {
        if let Some(bad) = domains
            .iter()
            .find(|d| d.contains(':') || d.split('.').any(|label| label.is_empty()))
        {
            return Err(format!(
                "S3_DOMAIN {bad:?} is not a domain name (give names such as s3.example.com, without ports)"
            ));
        }
        builder.set_host(VirtualHostDomains(domains.to_vec()));
    }
    builder.set_auth(AccessKeyAuth {
        access_keys: access_keys.clone(),
    });
    builder.set_access(PolicyAccess {
        storage,
        access_keys,
    });
    Ok(builder.build())
}
