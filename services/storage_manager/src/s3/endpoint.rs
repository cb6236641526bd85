//! The S3 listener inside the service's poem app: converts requests for s3s and answers back,
//! spools bodies sent without a length, answers CORS preflights and applies CORS headers from the
//! bucket's rules, names buckets in virtual hosts, and rewrites the few s3s answers S3 gives
//! differently.

use super::*;

/// `S3_DOMAIN`: a host `<bucket>.<domain>` (any port) names the bucket; every other host is path
/// style. (s3s's own parsers compare the host with its port, and take any other host name for a
/// bucket.)
pub(super) struct VirtualHostDomains(pub(super) Vec<String>);

impl s3s::host::S3Host for VirtualHostDomains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        Ok(match bucket_in_host(&self.0, host) {
            Some((domain, bucket)) => s3s::host::VirtualHost::new(domain).with_bucket(bucket),
            None => s3s::host::VirtualHost::new(host_name(host)),
        })
    }
}

/// A Host header's name, without its port.
pub(super) fn host_name(host: &str) -> &str {
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// The domain and bucket a Host header names (`<bucket>.<domain>[:port]`), if it names one.
pub(super) fn bucket_in_host<'d, 'h>(
    domains: &'d [String],
    host: &'h str,
) -> Option<(&'d str, &'h str)> {
    let name = host_name(host);
    domains.iter().find_map(|d| {
        Some((
            d.as_str(),
            name.strip_suffix(d.as_str())?.strip_suffix('.')?,
        ))
    })
}

/// Serves S3 requests inside the poem app: converts the request, runs s3s, converts the answer.
/// Bodies stream through in both directions.
pub struct S3Endpoint {
    pub service: S3Service,
    pub spool: Spool,
    /// For the buckets' CORS rules, which s3s knows nothing of.
    pub storage: Arc<Storage>,
    /// `S3_DOMAIN`: a request's bucket may be named in its host.
    pub domains: Vec<String>,
}

/// Where a body sent without a length (`Transfer-Encoding: chunked`, not aws-chunked) is measured:
/// s3s, like S3, needs the length before it checks a payload's signature, so such a body is
/// written to an unlinked file in `dir` (the data directory's `tmp/`), at most `max_bytes`, and
/// read back from there with its length. aws-chunked bodies carry their decoded length already.
pub struct Spool {
    pub dir: std::path::PathBuf,
    pub max_bytes: u64,
}

impl Spool {
    pub(super) fn needed(req: &Request) -> bool {
        let header = |name: http::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_ascii_lowercase)
        };
        header(http::header::CONTENT_LENGTH).is_none()
            && header(http::header::TRANSFER_ENCODING).is_some_and(|te| te.contains("chunked"))
            && !header(http::HeaderName::from_static("x-amz-content-sha256"))
                .is_some_and(|sha| sha.starts_with("streaming-"))
    }

    /// The body's length and a stream of it read back from disk.
    pub(super) async fn measure(&self, body: poem::Body) -> Result<(u64, poem::Body), S3Error> {
        use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
        let path = self
            .dir
            .join(format!("spool-{}", uuid::Uuid::new_v4().simple()));
        let failed = |e: std::io::Error| {
            S3Error::with_message(
                S3ErrorCode::InternalError,
                format!("spooling the upload: {e}"),
            )
        };
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(failed)?;
        // Unlinked at once: the open file is all there is, and it goes when the request does.
        let _ = tokio::fs::remove_file(&path).await;
        let mut body = std::pin::pin!(body.into_bytes_stream());
        let mut length = 0u64;
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            let chunk = chunk.map_err(|e| {
                S3Error::with_message(
                    S3ErrorCode::IncompleteBody,
                    format!("the upload broke off: {e}"),
                )
            })?;
            length += chunk.len() as u64;
            if length > self.max_bytes {
                return Err(S3Error::with_message(
                    S3ErrorCode::EntityTooLarge,
                    format!("objects may be at most {} bytes", self.max_bytes),
                ));
            }
            file.write_all(&chunk).await.map_err(failed)?;
        }
        file.rewind().await.map_err(failed)?;
        let stream = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buf = bytes::BytesMut::with_capacity(256 * 1024);
            let n = tokio::io::AsyncReadExt::read_buf(&mut file, &mut buf).await?;
            Ok::<_, std::io::Error>((n > 0).then(|| (buf.freeze(), file)))
        });
        Ok((length, poem::Body::from_bytes_stream(stream)))
    }
}

/// The file name of a form upload's (POST object's) file part, read off the body as it streams to
/// s3s, which keeps it to itself: S3 puts it where the form's key says `${filename}`.
#[derive(Clone, Default)]
pub(super) struct FormFileName(Arc<std::sync::OnceLock<String>>);

impl FormFileName {
    pub(super) const PLACEHOLDER: &'static str = "${filename}";
    /// How far into a form its file part's headers are looked for (the fields before it are small).
    const LOOK_AT_MOST: usize = 1 << 20;

    pub(super) fn get(&self) -> Option<String> {
        self.0.get().cloned()
    }

    /// A form's body that notes its file part's name as it passes.
    fn watch(&self, body: poem::Body) -> poem::Body {
        let found = self.0.clone();
        let mut seen: Vec<u8> = Vec::new();
        let stream = futures_util::StreamExt::map(body.into_bytes_stream(), move |chunk| {
            if let Ok(bytes) = &chunk
                && found.get().is_none()
                && seen.len() < Self::LOOK_AT_MOST
            {
                seen.extend_from_slice(bytes);
                if let Some(name) = file_part_name(&seen) {
                    let _ = found.set(name);
                    seen = Vec::new();
                }
            }
            chunk
        });
        poem::Body::from_bytes_stream(stream)
    }
}

/// `a.txt` from a form's `Content-Disposition: form-data; name="file"; filename="a.txt"` line.
fn file_part_name(form: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(form);
    text.split("\r\n").find_map(|line| {
        // Lower-casing ASCII keeps every byte where it was, so positions carry over to `line`.
        let lower = line.to_ascii_lowercase();
        if !(lower.starts_with("content-disposition:")
            && lower.contains("form-data; name=\"file\""))
        {
            return None;
        }
        let start = lower.find("filename=\"")? + "filename=\"".len();
        let rest = &line[start..];
        Some(rest[..rest.find('"')?].to_owned())
    })
}

/// The answer to a form upload names the key as stored: s3s wrote it as the form gave it.
fn with_file_name(
    status: http::StatusCode,
    body: bytes::Bytes,
    headers: &mut http::HeaderMap,
    name: &str,
) -> bytes::Bytes {
    if let Some(location) = headers
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
    {
        let encoded: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let location = location.replace("%24%7Bfilename%7D", &encoded);
        if let Ok(value) = http::HeaderValue::from_str(&location) {
            headers.insert(http::header::LOCATION, value);
        }
    }
    if status != http::StatusCode::CREATED {
        return body;
    }
    let escaped = name
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    String::from_utf8_lossy(&body)
        .replace(FormFileName::PLACEHOLDER, &escaped)
        .into_bytes()
        .into()
}

impl S3Endpoint {
    pub(super) async fn s3_request(
        &self,
        mut req: Request,
        file_name: Option<&FormFileName>,
    ) -> Result<http::Request<s3s::Body>, S3Error> {
        if Spool::needed(&req) {
            let (length, body) = self.spool.measure(req.take_body()).await?;
            req.headers_mut().remove(http::header::TRANSFER_ENCODING);
            req.headers_mut()
                .insert(http::header::CONTENT_LENGTH, length.into());
            req.set_body(body);
        }
        if let Some(file_name) = file_name {
            let body = file_name.watch(req.take_body());
            req.set_body(body);
        }
        let mut req: http::Request<_> = req.into();
        if let Some(file_name) = file_name {
            req.extensions_mut().insert(file_name.clone());
        }
        Ok(req.map(s3s::Body::http_body))
    }
}

/// Whether `req` is a form upload (POST object).
fn is_form_upload(req: &Request) -> bool {
    req.method() == http::Method::POST
        && req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// A bucket's CORS rules applied to browser requests: preflights (`OPTIONS`) are answered here,
/// and answers to requests with an `Origin` a rule allows get the CORS headers.
impl S3Endpoint {
    /// The bucket a request is for: the host's first label under an `S3_DOMAIN`, else the first
    /// path segment.
    pub(super) fn bucket_of<'a>(&self, req: &'a Request) -> Option<&'a str> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let virtual_host = bucket_in_host(&self.domains, host).map(|(_, bucket)| bucket);
        virtual_host
            .or_else(|| req.uri().path().trim_start_matches('/').split('/').next())
            .filter(|b| !b.is_empty())
    }

    pub(super) fn cors_rules(&self, req: &Request) -> Option<Vec<CorsRule>> {
        self.storage
            .known_bucket(self.bucket_of(req)?)
            .ok()?
            .settings
            .cors
            .clone()
    }

    pub(super) fn preflight(&self, req: &Request) -> Response {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let refuse = |status: http::StatusCode, code: &str, message: &str| {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
            );
            Response::builder()
                .status(status)
                .content_type("application/xml")
                .body(body)
        };
        let (Some(origin), Some(method)) =
            (header("origin"), header("access-control-request-method"))
        else {
            return refuse(
                http::StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin and Access-Control-Request-Method request headers are needed.",
            );
        };
        let Some(rules) = self.cors_rules(req) else {
            return refuse(
                http::StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
            );
        };
        let requested: Vec<String> = header("access-control-request-headers")
            .map(|h| {
                h.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let Some(rule) = bucket_settings::cors_rule_for(&rules, &origin, &method, &requested)
        else {
            return refuse(
                http::StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed: the bucket's CORS rules do not allow this origin, method or these headers.",
            );
        };
        let mut resp = Response::builder().status(http::StatusCode::OK).finish();
        cors_headers(&mut resp, rule, &origin);
        let set = |resp: &mut Response, name: &'static str, value: String| {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        };
        if !requested.is_empty() {
            set(
                &mut resp,
                "access-control-allow-headers",
                requested.join(", "),
            );
        }
        if let Some(age) = rule.max_age_seconds {
            set(&mut resp, "access-control-max-age", age.to_string());
        }
        set(
            &mut resp,
            "vary",
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into(),
        );
        resp
    }
}

/// A form upload whose fields break its signed policy: s3s answers 400 InvalidPolicyDocument, S3
/// answers 403 AccessDenied "Invalid according to Policy" (what browser-upload code checks for).
pub(super) fn post_policy_refusal(status: http::StatusCode, body: &[u8]) -> Option<String> {
    if status != http::StatusCode::BAD_REQUEST {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let message = text
        .split_once("<Code>InvalidPolicyDocument</Code><Message>Policy condition")?
        .1;
    let message = message.split_once("</Message>")?.0;
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy condition{message}</Message></Error>"
    ))
}

/// The CORS headers a matching rule puts on an answer to `origin`.
pub(super) fn cors_headers(resp: &mut Response, rule: &CorsRule, origin: &str) {
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    };
    set(
        "access-control-allow-origin",
        if any { "*".into() } else { origin.to_owned() },
    );
    if !any {
        set("access-control-allow-credentials", "true".into());
    }
    set(
        "access-control-allow-methods",
        rule.allowed_methods.join(", "),
    );
    if !rule.expose_headers.is_empty() {
        set(
            "access-control-expose-headers",
            rule.expose_headers.join(", "),
        );
    }
    set("vary", "Origin".into());
}

impl Endpoint for S3Endpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.method() == http::Method::OPTIONS {
            return Ok(self.preflight(&req));
        }
        let cors = req
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .and_then(|origin| {
                let rules = self.cors_rules(&req)?;
                let rule =
                    bucket_settings::cors_rule_for(&rules, origin, req.method().as_str(), &[])?
                        .clone();
                Some((rule, origin.to_owned()))
            });
        // An operation this service does not offer, on a bucket that does not exist, is S3's
        // NoSuchBucket (clients probe settings that way), not NotImplemented.
        let missing_bucket = self
            .bucket_of(&req)
            .filter(|b| self.storage.known_bucket(b).is_err())
            .map(str::to_owned);
        let file_name = is_form_upload(&req).then(FormFileName::default);
        let answer = match self.s3_request(req, file_name.as_ref()).await {
            Ok(req) => self.service.call(req).await.map_err(|e| format!("{e:?}")),
            Err(refusal) => refusal.to_http_response().map_err(|e| format!("{e:?}")),
        };
        let answer = match (answer, missing_bucket) {
            (Ok(resp), Some(bucket)) if resp.status() == http::StatusCode::NOT_IMPLEMENTED => {
                S3Error::with_message(
                    S3ErrorCode::NoSuchBucket,
                    format!("no bucket named {bucket:?}"),
                )
                .to_http_response()
                .map_err(|e| format!("{e:?}"))
            }
            (answer, _) => answer,
        };
        let resp = match answer {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(error = ?e, "the S3 layer failed");
                return Ok(http::StatusCode::INTERNAL_SERVER_ERROR.into_response());
            }
        };
        let (mut parts, body) = resp.into_parts();
        let mut status = parts.status;
        let file_name = file_name.as_ref().and_then(FormFileName::get);
        // (`take_bytes` would empty a streaming body too: look first.)
        let body = match body.bytes() {
            // A 304 has no body (s3s writes its error document into every error).
            _ if status == http::StatusCode::NOT_MODIFIED => poem::Body::empty(),
            Some(bytes) => match post_policy_refusal(status, &bytes) {
                Some(refusal) => {
                    status = http::StatusCode::FORBIDDEN;
                    poem::Body::from(refusal)
                }
                None => match &file_name {
                    Some(name) => {
                        poem::Body::from(with_file_name(status, bytes, &mut parts.headers, name))
                    }
                    None => poem::Body::from(bytes),
                },
            },
            None => poem::Body::from_bytes_stream(body.map_err(std::io::Error::other)),
        };
        let mut out = Response::builder().status(status).body(body);
        out.headers_mut().extend(parts.headers);
        if let Some((rule, origin)) = cors {
            cors_headers(&mut out, &rule, &origin);
        }
        // The access log and metrics label S3 requests as one operation.
        out.set_data(poem_openapi::OperationId("s3"));
        Ok(out)
    }
}
