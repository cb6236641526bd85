//! Request bodies sent gzip-compressed (`Content-Encoding: gzip`), unpacked before the API reads
//! them, for a server that takes them (logs_manager's ingest: log batches shrink about tenfold).
//! Opt-in per server: storage_manager must not, as an S3 object's `Content-Encoding` is its own.
//! The unpacked body is held to the same `max_bytes` as a plain one, so a small bomb cannot
//! become a large body.

use std::io::Read;

use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, http::StatusCode};

/// The middleware; put it inside [`crate::edge::Edge`] (which bounds the compressed bytes).
pub struct GunzipRequests {
    pub max_bytes: u64,
}

impl<E: Endpoint> Middleware<E> for GunzipRequests {
    type Output = GunzipEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        GunzipEndpoint {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

pub struct GunzipEndpoint<E> {
    inner: E,
    max_bytes: u64,
}

impl<E: Endpoint> Endpoint for GunzipEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let gzip = req
            .headers()
            .get(poem::http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        match gzip.as_deref() {
            None | Some("identity") => {}
            Some("gzip") => {
                let packed = req.take_body().into_vec().await?;
                let max = self.max_bytes;
                let unpacked = tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(packed.as_slice())
                        .take(max + 1)
                        .read_to_end(&mut out)
                        .map(|_| out)
                })
                .await
                .map_err(|e| {
                    poem::Error::from_string(e.to_string(), StatusCode::INTERNAL_SERVER_ERROR)
                })?;
                let unpacked = match unpacked {
                    Ok(body) if body.len() as u64 > max => {
                        return Ok(crate::edge::error_response(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "payload_too_large",
                            format!(
                                "the request body unpacked is larger than this server accepts ({max} bytes)"
                            ),
                        ));
                    }
                    Ok(body) => body,
                    Err(e) => {
                        return Ok(crate::edge::error_response(
                            StatusCode::BAD_REQUEST,
                            "invalid_gzip",
                            format!("the body says Content-Encoding: gzip but is not gzip: {e}"),
                        ));
                    }
                };
                req.headers_mut()
                    .remove(poem::http::header::CONTENT_ENCODING);
                req.headers_mut()
                    .insert(poem::http::header::CONTENT_LENGTH, unpacked.len().into());
                req.set_body(Body::from_vec(unpacked));
            }
            Some(other) => {
                return Ok(crate::edge::error_response(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_content_encoding",
                    format!("Content-Encoding {other:?} is not accepted; send gzip or none"),
                ));
            }
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}
