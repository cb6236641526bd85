//! The S3 operations, each mapped onto `Storage` (the domain does the work; this maps the
//! protocol's inputs and outputs).

use super::*;

/// S3's limit on the keys one DeleteObjects request names.
pub(super) const MAX_DELETE_KEYS: usize = 1000;

pub(super) struct S3Front {
    pub(super) storage: Arc<Storage>,
    pub(super) access_keys: Arc<AccessKeys>,
}

impl S3Front {
    /// The owner S3 names in listings and ACLs: whoever created the access key that signed.
    pub(super) fn owner<T>(&self, req: &S3Request<T>) -> dto::Owner {
        let name = principal_of(&self.access_keys, req.credentials.as_ref())
            .owner
            .unwrap_or_default();
        dto::Owner {
            display_name: Some(name.clone()),
            id: Some(name),
        }
    }

    /// The `x-amz-version-id` S3 answers for an object: its version id, "null" for the null version
    /// of a bucket that has had versioning, nothing for a bucket that never had it.
    pub(super) fn version_header(&self, info: &ObjectInfo) -> Option<String> {
        info.version_id.clone().or_else(|| {
            let versioned = self
                .storage
                .known_bucket(&info.bucket)
                .is_ok_and(|b| b.settings.versioning.is_some());
            versioned.then(|| crate::store::NULL_VERSION.to_owned())
        })
    }

    /// A copy reads its source: the source bucket's policy must allow that too.
    pub(super) fn may_read_source<T>(
        &self,
        req: &S3Request<T>,
        source: &dto::CopySource,
    ) -> S3Result<()> {
        let dto::CopySource::Bucket { bucket, key, .. } = source else {
            return Ok(());
        };
        let principal = principal_of(&self.access_keys, req.credentials.as_ref());
        if allowed(&self.storage, &principal, "s3:GetObject", bucket, Some(key)) {
            Ok(())
        } else {
            Err(access_denied())
        }
    }

    /// Refuses an operation on a bucket that does not exist, as S3 does before anything else.
    pub(super) fn bucket_exists(&self, bucket: &str) -> S3Result<()> {
        self.storage.bucket(bucket).map(|_| ()).map_err(to_s3)
    }

    /// One listing page for ListObjects and ListObjectsV2 (`max_keys` 0 only checks the bucket).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
        continuation_token: Option<&str>,
        max_keys: i32,
    ) -> S3Result<ObjectList> {
        if max_keys == 0 {
            self.bucket_exists(bucket)?;
            return Ok(ObjectList {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                delimiter: delimiter.map(str::to_owned),
                objects: vec![],
                common_prefixes: vec![],
                next_continuation_token: None,
            });
        }
        self.storage
            .list_objects(
                bucket,
                prefix,
                delimiter,
                start_after,
                continuation_token,
                max_keys as u32,
            )
            .await
            .map_err(to_s3)
    }
}

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let owner = self.owner(&req);
        // A key limited by scopes sees the buckets its scopes name.
        let principal = principal_of(&self.access_keys, req.credentials.as_ref());
        let buckets = self.storage.list_buckets();
        let buckets = buckets
            .into_iter()
            .filter(|b| principal.scopes.as_ref().is_none_or(|s| s.touches(&b.name)))
            .map(|b| dto::Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(&b.created_at)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let acl = req
            .input
            .acl
            .as_ref()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| "private".into());
        check_canned_acl(&req.input.bucket, &acl).map_err(to_s3)?;
        let bucket = self
            .storage
            .create_bucket(&req.input.bucket, None)
            .await
            .map_err(to_s3)?;
        if acl != "private" {
            self.storage
                .update_bucket_settings(&bucket.name, |s| set_canned_acl(s, &bucket.name, &acl))
                .await
                .map_err(to_s3)?;
        }
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(format!("/{}", bucket.name)),
            ..Default::default()
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Ok(S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        self.storage
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketOutput {}))
    }

    // ---- bucket settings (policy, ACL, public access block, CORS, lifecycle, tags)

    async fn get_bucket_acl(
        &self,
        req: S3Request<dto::GetBucketAclInput>,
    ) -> S3Result<S3Response<dto::GetBucketAclOutput>> {
        let bucket = self
            .storage
            .known_bucket(&req.input.bucket)
            .map_err(to_s3)?;
        let (grants, owner) =
            canned_acl_listing(self.owner(&req), bucket.settings.canned_acl.as_deref());
        Ok(S3Response::new(dto::GetBucketAclOutput { grants, owner }))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<dto::PutBucketAclInput>,
    ) -> S3Result<S3Response<dto::PutBucketAclOutput>> {
        let input = req.input;
        if input.access_control_policy.is_some()
            || input.grant_read.is_some()
            || input.grant_write.is_some()
            || input.grant_full_control.is_some()
        {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "ACL grants are not offered: use a canned ACL or a bucket policy",
            ));
        }
        let acl = input
            .acl
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| "private".into());
        self.storage
            .update_bucket_settings(&input.bucket, |s| set_canned_acl(s, &input.bucket, &acl))
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketAclOutput {}))
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<dto::PutBucketPolicyInput>,
    ) -> S3Result<S3Response<dto::PutBucketPolicyOutput>> {
        let input = req.input;
        self.storage
            .update_bucket_settings(&input.bucket, |s| {
                s.policy = Some(input.policy.clone());
                s.check_against_block(&input.bucket)
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketPolicyOutput {}))
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<dto::GetBucketPolicyInput>,
    ) -> S3Result<S3Response<dto::GetBucketPolicyOutput>> {
        let bucket = self
            .storage
            .known_bucket(&req.input.bucket)
            .map_err(to_s3)?;
        match &bucket.settings.policy {
            Some(policy) => Ok(S3Response::new(dto::GetBucketPolicyOutput {
                policy: Some(policy.clone()),
            })),
            None => Err(S3Error::with_message(
                S3ErrorCode::NoSuchBucketPolicy,
                "the bucket has no policy",
            )),
        }
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<dto::GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<dto::GetBucketPolicyStatusOutput>> {
        let bucket = self
            .storage
            .known_bucket(&req.input.bucket)
            .map_err(to_s3)?;
        let Some(policy) = &bucket.access.policy else {
            return Err(S3Error::with_message(
                S3ErrorCode::NoSuchBucketPolicy,
                "the bucket has no policy",
            ));
        };
        let is_public = policy.is_public() && !bucket.access.restrict_public;
        Ok(S3Response::new(dto::GetBucketPolicyStatusOutput {
            policy_status: Some(dto::PolicyStatus {
                is_public: Some(is_public),
            }),
        }))
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<dto::DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketPolicyOutput>> {
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| Ok(s.policy = None))
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketPolicyOutput {}))
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<dto::PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::PutPublicAccessBlockOutput>> {
        let c = req.input.public_access_block_configuration;
        let block = PublicAccessBlock {
            block_public_acls: c.block_public_acls.unwrap_or(false),
            ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
            block_public_policy: c.block_public_policy.unwrap_or(false),
            restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
        };
        // A block does not refuse what is already there (S3 neither): it governs later changes
        // and, through IgnorePublicAcls and RestrictPublicBuckets, what the settings grant.
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| {
                s.public_access_block = Some(block);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutPublicAccessBlockOutput {}))
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<dto::GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::GetPublicAccessBlockOutput>> {
        let bucket = self
            .storage
            .known_bucket(&req.input.bucket)
            .map_err(to_s3)?;
        let Some(block) = bucket.settings.public_access_block else {
            let mut none = S3Error::with_message(
                S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
                "the bucket has no public access block configuration",
            );
            none.set_status_code(http::StatusCode::NOT_FOUND);
            return Err(none);
        };
        Ok(S3Response::new(dto::GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(dto::PublicAccessBlockConfiguration {
                block_public_acls: Some(block.block_public_acls),
                ignore_public_acls: Some(block.ignore_public_acls),
                block_public_policy: Some(block.block_public_policy),
                restrict_public_buckets: Some(block.restrict_public_buckets),
            }),
        }))
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<dto::DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<dto::DeletePublicAccessBlockOutput>> {
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| Ok(s.public_access_block = None))
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::DeletePublicAccessBlockOutput {}))
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<dto::PutBucketCorsInput>,
    ) -> S3Result<S3Response<dto::PutBucketCorsOutput>> {
        let rules: Vec<CorsRule> = req
            .input
            .cors_configuration
            .cors_rules
            .into_iter()
            .map(|r| CorsRule {
                id: r.id,
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: r.allowed_headers.unwrap_or_default(),
                expose_headers: r.expose_headers.unwrap_or_default(),
                max_age_seconds: r.max_age_seconds,
            })
            .collect();
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| {
                check_cors(&rules)?;
                s.cors = Some(rules);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketCorsOutput::default()))
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<dto::GetBucketCorsInput>,
    ) -> S3Result<S3Response<dto::GetBucketCorsOutput>> {
        let bucket = self
            .storage
            .known_bucket(&req.input.bucket)
            .map_err(to_s3)?;
        let Some(rules) = &bucket.settings.cors else {
            return Err(S3Error::with_message(
                S3ErrorCode::NoSuchCORSConfiguration,
                "the bucket has no CORS configuration",
            ));
        };
        let rules = rules
            .iter()
            .map(|r| dto::CORSRule {
                id: r.id.clone(),
                allowed_origins: r.allowed_origins.clone(),
                allowed_methods: r.allowed_methods.clone(),
                allowed_headers: (!r.allowed_headers.is_empty()).then(|| r.allowed_headers.clone()),
                expose_headers: (!r.expose_headers.is_empty()).then(|| r.expose_headers.clone()),
                max_age_seconds: r.max_age_seconds,
            })
            .collect();
        Ok(S3Response::new(dto::GetBucketCorsOutput {
            cors_rules: Some(rules),
        }))
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<dto::DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketCorsOutput>> {
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| Ok(s.cors = None))
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketCorsOutput {}))
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<dto::PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<dto::PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        let rules = input
            .lifecycle_configuration
            .map(|c| c.rules)
            .unwrap_or_default();
        let rules = rules
            .into_iter()
            .map(lifecycle_rule)
            .collect::<S3Result<Vec<_>>>()?;
        self.storage
            .update_bucket_settings(&input.bucket, |s| {
                check_lifecycle(&rules)?;
                s.lifecycle = Some(rules);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(
            dto::PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<dto::GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLifecycleConfigurationOutput>> {
        let bucket = self
            .storage
            .known_bucket(&req.input.bucket)
            .map_err(to_s3)?;
        let Some(rules) = &bucket.settings.lifecycle else {
            return Err(S3Error::with_message(
                S3ErrorCode::NoSuchLifecycleConfiguration,
                "the bucket has no lifecycle configuration",
            ));
        };
        let rules = rules.iter().map(lifecycle_rule_dto).collect();
        Ok(S3Response::new(
            dto::GetBucketLifecycleConfigurationOutput {
                rules: Some(rules),
                ..Default::default()
            },
        ))
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<dto::DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketLifecycleOutput>> {
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| Ok(s.lifecycle = None))
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketLifecycleOutput {}))
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<dto::PutBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::PutBucketTaggingOutput>> {
        let tags = tag_map(req.input.tagging.tag_set)?;
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| {
                check_tags(&tags)?;
                s.tags = Some(tags);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketTaggingOutput {}))
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<dto::GetBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::GetBucketTaggingOutput>> {
        let bucket = self
            .storage
            .known_bucket(&req.input.bucket)
            .map_err(to_s3)?;
        match &bucket.settings.tags {
            Some(tags) => Ok(S3Response::new(dto::GetBucketTaggingOutput {
                tag_set: tag_set(tags.clone()),
            })),
            None => Err(S3Error::with_message(
                S3ErrorCode::NoSuchTagSet,
                "the bucket has no tags",
            )),
        }
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<dto::DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketTaggingOutput>> {
        self.storage
            .update_bucket_settings(&req.input.bucket, |s| Ok(s.tags = None))
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketTaggingOutput {}))
    }

    // ---- bucket settings this service does not offer: S3's answers for a bucket without them

    async fn get_bucket_website(
        &self,
        req: S3Request<dto::GetBucketWebsiteInput>,
    ) -> S3Result<S3Response<dto::GetBucketWebsiteOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Err(S3Error::with_message(
            S3ErrorCode::NoSuchWebsiteConfiguration,
            "the bucket has no website configuration",
        ))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<dto::GetBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::GetBucketVersioningOutput>> {
        // Never enabled: S3 answers with no status.
        let bucket = self
            .storage
            .known_bucket(&req.input.bucket)
            .map_err(to_s3)?;
        let status = bucket
            .settings
            .versioning
            .clone()
            .map(dto::BucketVersioningStatus::from);
        Ok(S3Response::new(dto::GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<dto::PutBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::PutBucketVersioningOutput>> {
        let input = req.input;
        let config = input.versioning_configuration;
        if config
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == dto::MFADelete::ENABLED)
        {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "MFA delete is not offered",
            ));
        }
        let status = match config.status.as_ref().map(|s| s.as_str()) {
            Some(s @ ("Enabled" | "Suspended")) => s.to_owned(),
            other => {
                return Err(S3Error::with_message(
                    S3ErrorCode::MalformedXML,
                    format!("versioning Status {other:?} is not Enabled or Suspended"),
                ));
            }
        };
        self.storage
            .update_bucket_settings(&input.bucket, |s| {
                // Once enabled, a bucket is versioned or suspended, never unversioned again (as in S3).
                if s.versioning.is_none() && status == "Suspended" {
                    return Ok(());
                }
                s.versioning = Some(status);
                Ok(())
            })
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutBucketVersioningOutput {}))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        let owner = self.owner(&req);
        let input = req.input;
        let encoding = ListEncoding::of(input.encoding_type.as_ref())?;
        let max_keys = input.max_keys.unwrap_or(1000).clamp(1, 1000);
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = self
            .storage
            .list_versions(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                input.key_marker.as_deref(),
                input.version_id_marker.as_deref(),
                max_keys as u32,
            )
            .await
            .map_err(to_s3)?;
        let (mut versions, mut markers) = (Vec::new(), Vec::new());
        for entry in page.entries {
            if entry.delete_marker {
                markers.push(dto::DeleteMarkerEntry {
                    key: Some(encoding.apply(entry.key)),
                    version_id: Some(entry.version_id),
                    is_latest: Some(entry.is_latest),
                    last_modified: Some(timestamp(&entry.last_modified)),
                    owner: Some(owner.clone()),
                });
            } else {
                versions.push(dto::ObjectVersion {
                    key: Some(encoding.apply(entry.key)),
                    version_id: Some(entry.version_id),
                    is_latest: Some(entry.is_latest),
                    last_modified: Some(timestamp(&entry.last_modified)),
                    e_tag: Some(ETag::Strong(entry.etag)),
                    size: Some(entry.size as i64),
                    storage_class: Some(dto::ObjectVersionStorageClass::from_static(
                        dto::ObjectVersionStorageClass::STANDARD,
                    )),
                    owner: Some(owner.clone()),
                    ..Default::default()
                });
            }
        }
        let (next_key, next_version) = page
            .next
            .map_or((None, None), |(k, v)| (Some(encoding.apply(k)), v));
        let common_prefixes: Vec<_> = page
            .common_prefixes
            .into_iter()
            .map(|p| dto::CommonPrefix {
                prefix: Some(encoding.apply(p)),
            })
            .collect();
        Ok(S3Response::new(dto::ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            key_marker: input.key_marker.map(|k| encoding.apply(k)),
            version_id_marker: input.version_id_marker,
            max_keys: Some(max_keys),
            is_truncated: Some(next_key.is_some()),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            encoding_type: encoding.echo(),
            versions: (!versions.is_empty()).then_some(versions),
            delete_markers: (!markers.is_empty()).then_some(markers),
            delimiter: encoding.apply_opt(input.delimiter.filter(|d| !d.is_empty())),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            ..Default::default()
        }))
    }

    async fn get_object_acl(
        &self,
        req: S3Request<dto::GetObjectAclInput>,
    ) -> S3Result<S3Response<dto::GetObjectAclOutput>> {
        let input = &req.input;
        let acl = self
            .storage
            .object_acl(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(to_s3)?;
        let (grants, owner) = canned_acl_listing(self.owner(&req), acl.as_deref());
        Ok(S3Response::new(dto::GetObjectAclOutput {
            grants,
            owner,
            ..Default::default()
        }))
    }

    async fn put_object_acl(
        &self,
        req: S3Request<dto::PutObjectAclInput>,
    ) -> S3Result<S3Response<dto::PutObjectAclOutput>> {
        let input = req.input;
        let grants = input.access_control_policy.is_some()
            || input.grant_full_control.is_some()
            || input.grant_read.is_some()
            || input.grant_read_acp.is_some()
            || input.grant_write.is_some()
            || input.grant_write_acp.is_some();
        let acl = requested_object_acl(input.acl.as_ref(), grants)?;
        let acl = acl.as_deref().unwrap_or("private");
        self.storage
            .set_object_acl(&input.bucket, &input.key, input.version_id.as_deref(), acl)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutObjectAclOutput::default()))
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<dto::GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<dto::GetObjectLockConfigurationOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Err(S3Error::with_message(
            S3ErrorCode::ObjectLockConfigurationNotFoundError,
            "object lock is not configured on the bucket",
        ))
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<dto::GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<dto::GetBucketEncryptionOutput>> {
        let bucket = self.storage.bucket(&req.input.bucket).map_err(to_s3)?;
        let Some(key) = bucket.default_encryption_key else {
            return Err(S3Error::with_message(
                S3ErrorCode::ServerSideEncryptionConfigurationNotFoundError,
                "the bucket has no default encryption key",
            ));
        };
        let rule = dto::ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(dto::ServerSideEncryptionByDefault {
                sse_algorithm: dto::ServerSideEncryption::from(SSE_KMS.to_owned()),
                kms_master_key_id: Some(key),
            }),
            bucket_key_enabled: None,
        };
        Ok(S3Response::new(dto::GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(dto::ServerSideEncryptionConfiguration {
                rules: vec![rule],
            }),
        }))
    }

    // ---- objects

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let body_check = S3Checksum::of(&req);
        // A form upload (POST object, which s3s hands on as a PUT) names its key with the file's
        // own name where the form says `${filename}`.
        let file_name = req
            .extensions
            .get::<FormFileName>()
            .and_then(FormFileName::get);
        let mut input = req.input;
        if let Some(name) = file_name {
            input.key = input.key.replace(FormFileName::PLACEHOLDER, &name);
        }
        let body = input.body.unwrap_or_else(|| {
            StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>())
        });
        let checked = (|| {
            let grants = input.grant_full_control.is_some()
                || input.grant_read.is_some()
                || input.grant_read_acp.is_some()
                || input.grant_write_acp.is_some();
            let acl = requested_object_acl(input.acl.as_ref(), grants)?;
            let encryption_key =
                requested_key(input.server_side_encryption.as_ref(), input.ssekms_key_id)?;
            let precondition = write_precondition(input.if_match, input.if_none_match)?;
            Ok((acl, encryption_key, precondition, body_check?))
        })();
        let (acl, encryption_key, precondition, body_check) = match checked {
            Ok(checked) => checked,
            Err(e) => return Err(refuse_upload(e, body).await),
        };
        let new = NewObject {
            content_type: input.content_type,
            metadata: user_metadata(input.metadata),
            headers: stored_headers(
                input.cache_control,
                input.content_disposition,
                input.content_encoding,
                input.content_language,
                input.expires,
            ),
            tags: tagging_header(input.tagging.as_deref()),
            encryption_key,
            acl,
        };
        let checks = WriteChecks {
            content_md5: input.content_md5,
            precondition,
            body_check,
        };
        let info = self
            .storage
            .put_object(&input.bucket, &input.key, new, checks, body)
            .await
            .map_err(body_refusal)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        let sums = checksum_fields(&info);
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(etag(&info)),
            version_id: self.version_header(&info),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let input = req.input;
        let range = input.range.map(|r| match r {
            dto::Range::Int { first, last } => ByteRange::From { first, last },
            dto::Range::Suffix { length } => ByteRange::Suffix { length },
        });
        let conditions = read_conditions(
            input.if_match,
            input.if_none_match,
            input.if_modified_since,
            input.if_unmodified_since,
        );
        let version = input.version_id.as_deref();
        let download = self
            .storage
            .get_object_if(&input.bucket, &input.key, version, range, &conditions)
            .await
            .map_err(to_s3)?;
        let info = download.info;
        let content_range = download.partial.then(|| {
            format!(
                "bytes {}-{}/{}",
                download.range.start,
                download.range.end - 1,
                info.size
            )
        });
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        // The whole object's checksum, when asked for and the whole object is served.
        let sums = if checksum_mode_enabled(input.checksum_mode.as_ref()) && !download.partial {
            checksum_fields(&info)
        } else {
            dto::Checksum::default()
        };
        // `response-*` query parameters (presigned download links use them) override what is stored.
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(StreamingBlob::wrap(download.body)),
            content_length: Some((download.range.end - download.range.start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: Some(
                input
                    .response_content_type
                    .unwrap_or_else(|| info.content_type.clone()),
            ),
            cache_control: input
                .response_cache_control
                .or_else(|| header_of(&info, "cache-control")),
            content_disposition: input
                .response_content_disposition
                .or_else(|| header_of(&info, "content-disposition")),
            content_encoding: input
                .response_content_encoding
                .or_else(|| header_of(&info, "content-encoding")),
            content_language: input
                .response_content_language
                .or_else(|| header_of(&info, "content-language")),
            expires: input.response_expires.or_else(|| expires_of(&info)),
            e_tag: Some(etag(&info)),
            last_modified: Some(timestamp(&info.last_modified)),
            metadata: Some(info.metadata.clone().into_iter().collect()),
            tag_count: tag_count(&info),
            version_id: self.version_header(&info),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let input = req.input;
        let conditions = read_conditions(
            input.if_match,
            input.if_none_match,
            input.if_modified_since,
            input.if_unmodified_since,
        );
        let info = self
            .storage
            .head_object_if(
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                &conditions,
            )
            .await
            .map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        let sums = if checksum_mode_enabled(input.checksum_mode.as_ref()) {
            checksum_fields(&info)
        } else {
            dto::Checksum::default()
        };
        Ok(S3Response::new(dto::HeadObjectOutput {
            content_length: Some(info.size as i64),
            accept_ranges: Some("bytes".into()),
            content_type: Some(
                input
                    .response_content_type
                    .unwrap_or_else(|| info.content_type.clone()),
            ),
            cache_control: input
                .response_cache_control
                .or_else(|| header_of(&info, "cache-control")),
            content_disposition: input
                .response_content_disposition
                .or_else(|| header_of(&info, "content-disposition")),
            content_encoding: input
                .response_content_encoding
                .or_else(|| header_of(&info, "content-encoding")),
            content_language: input
                .response_content_language
                .or_else(|| header_of(&info, "content-language")),
            expires: input.response_expires.or_else(|| expires_of(&info)),
            e_tag: Some(etag(&info)),
            last_modified: Some(timestamp(&info.last_modified)),
            metadata: Some(info.metadata.clone().into_iter().collect()),
            version_id: self.version_header(&info),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<dto::GetObjectAttributesInput>,
    ) -> S3Result<S3Response<dto::GetObjectAttributesOutput>> {
        let input = req.input;
        let info = self
            .storage
            .head_object(&input.bucket, &input.key)
            .await
            .map_err(to_s3)?;
        // One header may list them all, comma-separated.
        let wants = |name: &str| {
            input
                .object_attributes
                .iter()
                .flat_map(|a| a.as_str().split(','))
                .any(|a| a.trim().eq_ignore_ascii_case(name))
        };
        let sums = checksum_fields(&info);
        // A multipart object's ETag ends in "-<parts>"; the parts themselves are not kept apart.
        let parts = info
            .etag
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<i32>().ok());
        Ok(S3Response::new(dto::GetObjectAttributesOutput {
            e_tag: wants(dto::ObjectAttributes::ETAG).then(|| etag(&info)),
            object_size: wants(dto::ObjectAttributes::OBJECT_SIZE).then_some(info.size as i64),
            storage_class: wants(dto::ObjectAttributes::STORAGE_CLASS)
                .then(|| dto::StorageClass::from_static(dto::StorageClass::STANDARD)),
            checksum: (wants(dto::ObjectAttributes::CHECKSUM) && info.checksum.is_some())
                .then_some(sums),
            object_parts: (wants(dto::ObjectAttributes::OBJECT_PARTS) && parts.is_some()).then(
                || dto::GetObjectAttributesParts {
                    total_parts_count: parts,
                    ..Default::default()
                },
            ),
            last_modified: Some(timestamp(&info.last_modified)),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        // S3 answers 204 whether or not the key (or version) existed.
        let input = req.input;
        let output = match &input.version_id {
            Some(version) => {
                let removed = self
                    .storage
                    .delete_version(&input.bucket, &input.key, version)
                    .await
                    .map_err(to_s3)?;
                dto::DeleteObjectOutput {
                    version_id: Some(version.clone()),
                    delete_marker: removed.is_some_and(|r| r.delete_marker).then_some(true),
                    ..Default::default()
                }
            }
            None => {
                let deleted = self
                    .storage
                    .delete_object(&input.bucket, &input.key)
                    .await
                    .map_err(to_s3)?;
                let marker = deleted.delete_marker;
                dto::DeleteObjectOutput {
                    delete_marker: marker.is_some().then_some(true),
                    version_id: marker,
                    ..Default::default()
                }
            }
        };
        Ok(S3Response::new(output))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let principal = principal_of(&self.access_keys, req.credentials.as_ref());
        let input = req.input;
        self.bucket_exists(&input.bucket)?;
        if input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                format!(
                    "{} keys named; one DeleteObjects request takes at most {MAX_DELETE_KEYS}",
                    input.delete.objects.len()
                ),
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            if !allowed(
                &self.storage,
                &principal,
                "s3:DeleteObject",
                &input.bucket,
                Some(&object.key),
            ) {
                errors.push(dto::Error {
                    key: Some(object.key),
                    code: Some("AccessDenied".into()),
                    message: Some("Access Denied".into()),
                    ..Default::default()
                });
                continue;
            }
            let done = match &object.version_id {
                Some(version) => self
                    .storage
                    .delete_version(&input.bucket, &object.key, version)
                    .await
                    .map(|removed| dto::DeletedObject {
                        version_id: Some(version.clone()),
                        delete_marker: removed.is_some_and(|r| r.delete_marker).then_some(true),
                        ..Default::default()
                    }),
                None => self
                    .storage
                    .delete_object(&input.bucket, &object.key)
                    .await
                    .map(|d| dto::DeletedObject {
                        delete_marker: d.delete_marker.is_some().then_some(true),
                        delete_marker_version_id: d.delete_marker,
                        ..Default::default()
                    }),
            };
            match done {
                Ok(entry) => {
                    if !quiet {
                        deleted.push(dto::DeletedObject {
                            key: Some(object.key),
                            ..entry
                        });
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

    /// ListObjects (v1): pages by `Marker`, the last key (or common prefix) seen.
    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let owner = self.owner(&req);
        let input = req.input;
        let encoding = ListEncoding::of(input.encoding_type.as_ref())?;
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
        let delimiter = input.delimiter.filter(|d| !d.is_empty());
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = input.marker.filter(|m| !m.is_empty());
        let page = self
            .page(
                &input.bucket,
                &prefix,
                delimiter.as_deref(),
                marker.as_deref(),
                None,
                max_keys,
            )
            .await?;
        let truncated = page.next_continuation_token.is_some();
        // S3 gives NextMarker only with a delimiter; without one clients use the last key.
        let last_key = page.objects.last().map(|o| o.key.clone());
        let last_prefix = page.common_prefixes.last().cloned();
        let next_marker = (truncated && delimiter.is_some())
            .then(|| last_key.max(last_prefix))
            .flatten();
        let contents: Vec<_> = page
            .objects
            .iter()
            .map(|o| list_entry(o, Some(&owner), encoding))
            .collect();
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            delimiter: encoding.apply_opt(delimiter),
            marker: Some(encoding.apply(marker.unwrap_or_default())),
            next_marker: encoding.apply_opt(next_marker),
            max_keys: Some(max_keys),
            is_truncated: Some(truncated),
            encoding_type: encoding.echo(),
            common_prefixes: common_prefix_entries(&page, encoding),
            contents: (!contents.is_empty()).then_some(contents),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let owner = req
            .input
            .fetch_owner
            .unwrap_or(false)
            .then(|| self.owner(&req));
        let input = req.input;
        let encoding = ListEncoding::of(input.encoding_type.as_ref())?;
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
        let delimiter = input.delimiter.filter(|d| !d.is_empty());
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = self
            .page(
                &input.bucket,
                &prefix,
                delimiter.as_deref(),
                input.start_after.as_deref(),
                input.continuation_token.as_deref(),
                max_keys,
            )
            .await?;
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        let contents: Vec<_> = page
            .objects
            .iter()
            .map(|o| list_entry(o, owner.as_ref(), encoding))
            .collect();
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            delimiter: encoding.apply_opt(delimiter),
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            is_truncated: Some(page.next_continuation_token.is_some()),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next_continuation_token.clone(),
            start_after: encoding.apply_opt(input.start_after),
            encoding_type: encoding.echo(),
            common_prefixes: common_prefix_entries(&page, encoding),
            contents: (!contents.is_empty()).then_some(contents),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.may_read_source(&req, &req.input.copy_source)?;
        let input = req.input;
        let grants = input.grant_full_control.is_some()
            || input.grant_read.is_some()
            || input.grant_read_acp.is_some()
            || input.grant_write_acp.is_some();
        let acl = requested_object_acl(input.acl.as_ref(), grants)?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == dto::MetadataDirective::REPLACE);
        let replace_tags = input
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == dto::TaggingDirective::REPLACE);
        let encryption_key =
            requested_key(input.server_side_encryption.as_ref(), input.ssekms_key_id)?;
        let source = copy_source(
            &input.copy_source,
            read_conditions(
                input.copy_source_if_match,
                input.copy_source_if_none_match,
                input.copy_source_if_modified_since,
                input.copy_source_if_unmodified_since,
            ),
        )?;
        let source = CopySource {
            replace_metadata: replace.then(|| NewObject {
                content_type: input.content_type,
                metadata: user_metadata(input.metadata),
                headers: stored_headers(
                    input.cache_control,
                    input.content_disposition,
                    input.content_encoding,
                    input.content_language,
                    input.expires,
                ),
                ..Default::default()
            }),
            replace_tags: replace_tags.then(|| tagging_header(input.tagging.as_deref())),
            encryption_key,
            acl,
            ..source
        };
        let copy_source_version = source.version.clone();
        let info = self
            .storage
            .copy_object(source, &input.bucket, &input.key)
            .await
            .map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(etag(&info)),
                last_modified: Some(timestamp(&info.last_modified)),
                ..Default::default()
            }),
            version_id: self.version_header(&info),
            copy_source_version_id: copy_source_version,
            server_side_encryption,
            ssekms_key_id,
            ..Default::default()
        }))
    }

    // ---- tags

    async fn get_object_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        let tags = self
            .storage
            .object_tags(&req.input.bucket, &req.input.key)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::GetObjectTaggingOutput {
            tag_set: tag_set(tags),
            version_id: None,
        }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<dto::PutObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = tag_map(input.tagging.tag_set)?;
        self.storage
            .set_object_tags(&input.bucket, &input.key, tags)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::PutObjectTaggingOutput::default()))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        self.storage
            .set_object_tags(&req.input.bucket, &req.input.key, BTreeMap::new())
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteObjectTaggingOutput::default()))
    }

    // ---- multipart uploads

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let input = req.input;
        let grants = input.grant_full_control.is_some()
            || input.grant_read.is_some()
            || input.grant_read_acp.is_some()
            || input.grant_write_acp.is_some();
        let acl = requested_object_acl(input.acl.as_ref(), grants)?;
        let encryption_key =
            requested_key(input.server_side_encryption.as_ref(), input.ssekms_key_id)?;
        let new = NewObject {
            content_type: input.content_type,
            metadata: user_metadata(input.metadata),
            headers: stored_headers(
                input.cache_control,
                input.content_disposition,
                input.content_encoding,
                input.content_language,
                input.expires,
            ),
            tags: tagging_header(input.tagging.as_deref()),
            encryption_key,
            acl,
        };
        let upload = self
            .storage
            .create_upload(&input.bucket, &input.key, new)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(upload.bucket),
            key: Some(upload.key),
            upload_id: Some(upload.upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        // A part's checksum is verified; it is not kept (objects made of parts carry no checksum).
        let body_check = S3Checksum::of(&req);
        let input = req.input;
        let body = input.body.unwrap_or_else(|| {
            StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>())
        });
        let (part_number, body_check) =
            match part_number(input.part_number).and_then(|n| Ok((n, body_check?))) {
                Ok(checked) => checked,
                Err(e) => return Err(refuse_upload(e, body).await),
            };
        let md5 = self
            .storage
            .upload_part(
                &input.bucket,
                &input.key,
                &input.upload_id,
                part_number,
                body_check,
                body,
            )
            .await
            .map_err(body_refusal)?;
        Ok(S3Response::new(dto::UploadPartOutput {
            e_tag: Some(ETag::Strong(md5)),
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        self.may_read_source(&req, &req.input.copy_source)?;
        let input = req.input;
        let part_number = part_number(input.part_number)?;
        let source = copy_source(
            &input.copy_source,
            read_conditions(
                input.copy_source_if_match,
                input.copy_source_if_none_match,
                input.copy_source_if_modified_since,
                input.copy_source_if_unmodified_since,
            ),
        )?;
        let range = match input.copy_source_range.as_deref() {
            None => None,
            // Only `bytes=first-last` here (S3's rule for UploadPartCopy).
            Some(text) => match ByteRange::parse(text) {
                Ok(range @ ByteRange::From { last: Some(_), .. }) => Some(range),
                _ => {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidArgument,
                        format!("x-amz-copy-source-range {text:?} must be bytes=<first>-<last>"),
                    ));
                }
            },
        };
        let part = self
            .storage
            .upload_part_copy(
                &input.bucket,
                &input.key,
                &input.upload_id,
                part_number,
                &source,
                range,
            )
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::UploadPartCopyOutput {
            copy_part_result: Some(dto::CopyPartResult {
                e_tag: Some(ETag::Strong(part.etag)),
                last_modified: Some(timestamp(&part.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let input = req.input;
        let max_parts = input.max_parts.unwrap_or(1000).clamp(1, 1000);
        let marker = input.part_number_marker.unwrap_or(0);
        let parts = self
            .storage
            .list_parts(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(to_s3)?;
        let mut page: Vec<_> = parts
            .into_iter()
            .filter(|p| p.part_number as i32 > marker)
            .collect();
        let truncated = page.len() > max_parts as usize;
        page.truncate(max_parts as usize);
        let next_marker = page.last().map(|p| p.part_number as i32);
        let parts = page
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
            max_parts: Some(max_parts),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: truncated.then_some(next_marker).flatten(),
            is_truncated: Some(truncated),
            ..Default::default()
        }))
    }

    /// Uploads in key order (then by when they began), paged by key and upload id markers, with
    /// `prefix` and `delimiter` as in listings.
    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let input = req.input;
        let encoding = ListEncoding::of(input.encoding_type.as_ref())?;
        let max_uploads = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let all = self
            .storage
            .list_uploads(&input.bucket)
            .await
            .map_err(to_s3)?;
        // Past the markers: keys after the key marker, or the marker's key after the upload id marker.
        let after_markers = match &input.upload_id_marker {
            Some(id) if !key_marker.is_empty() => {
                let at = all
                    .iter()
                    .position(|u| u.key == key_marker && &u.upload_id == id);
                all.iter()
                    .enumerate()
                    .filter(|(i, u)| {
                        u.key > key_marker || (u.key == key_marker && at.is_some_and(|at| *i > at))
                    })
                    .map(|(_, u)| u)
                    .collect::<Vec<_>>()
            }
            _ => all.iter().filter(|u| u.key > key_marker).collect(),
        };
        let (mut uploads, mut common_prefixes, mut truncated) =
            (Vec::new(), Vec::<String>::new(), false);
        let mut last = None;
        for upload in after_markers
            .into_iter()
            .filter(|u| u.key.starts_with(&prefix))
        {
            let rolled = delimiter.as_deref().and_then(|d| {
                upload.key[prefix.len()..]
                    .find(d)
                    .map(|at| upload.key[..prefix.len() + at + d.len()].to_owned())
            });
            if let Some(common) = &rolled
                && common_prefixes.last() == Some(common)
            {
                continue;
            }
            if uploads.len() + common_prefixes.len() == max_uploads {
                truncated = true;
                break;
            }
            last = Some((upload.key.clone(), upload.upload_id.clone()));
            match rolled {
                Some(common) => common_prefixes.push(common),
                None => uploads.push(dto::MultipartUpload {
                    key: Some(encoding.apply(upload.key.clone())),
                    upload_id: Some(upload.upload_id.clone()),
                    initiated: Some(timestamp(&upload.created_at)),
                    ..Default::default()
                }),
            }
        }
        let (next_key, next_id) = match (truncated, last) {
            (true, Some((key, id))) => (Some(encoding.apply(key)), Some(id)),
            _ => (None, None),
        };
        let common_prefixes: Vec<_> = common_prefixes
            .into_iter()
            .map(|p| dto::CommonPrefix {
                prefix: Some(encoding.apply(p)),
            })
            .collect();
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            delimiter: encoding.apply_opt(delimiter),
            key_marker: input.key_marker.map(|k| encoding.apply(k)),
            upload_id_marker: input.upload_id_marker,
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            max_uploads: Some(max_uploads as i32),
            encoding_type: encoding.echo(),
            is_truncated: Some(truncated),
            uploads: Some(uploads),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let input = req.input;
        let precondition = write_precondition(input.if_match, input.if_none_match)?;
        let parts: Vec<(u32, String)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let number = p
                    .part_number
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0);
                let etag = match p.e_tag {
                    Some(ETag::Strong(s) | ETag::Weak(s)) => s,
                    None => String::new(),
                };
                (number, etag)
            })
            .collect();
        let info = self
            .storage
            .complete_upload(
                &input.bucket,
                &input.key,
                &input.upload_id,
                &parts,
                &precondition,
            )
            .await
            .map_err(to_s3)?;
        let (server_side_encryption, ssekms_key_id) = sse_of(&info);
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            version_id: self.version_header(&info),
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
        self.storage
            .abort_upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }
}
