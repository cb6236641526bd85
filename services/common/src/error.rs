//! The error contract shared by every aerekos API.
//!
//! progenitor needs one error body type per operation, so every non-2xx status of every operation
//! carries the same [`ErrorBody`]. Endpoints return [`ApiResult<T>`]; errors the framework raises
//! itself (bad JSON, unknown route, missing token) are rewritten into the same body by
//! [`crate::edge::Edge`].

use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, payload::Json};
use serde::{Deserialize, Serialize};

use crate::edge::current_request_id;

/// The body of every error response of every aerekos API.
#[derive(Object, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable error code, e.g. `invalid_credentials` or `worker_not_found`.
    pub code: String,
    /// What went wrong and, where it can be, what to change to make the request succeed.
    pub message: String,
    /// The request id (also in the `X-Request-Id` response header); quote it when reporting a problem.
    pub request_id: String,
}

/// An error response: one of the statuses below, always with an [`ErrorBody`].
#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// The request is malformed or a value is invalid; the message says which.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid credentials were given, or they have expired.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The credentials are valid but do not allow this operation.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The named resource does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state of the resource.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The request body's `Content-Type` is missing or not one the operation takes.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Too many requests (from this address or this caller), or too many failed logins: try again
    /// after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// The server failed; the request id finds the details in its log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The server cannot serve the request right now (starting, shutting down, or a dependency is down).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with the given status; statuses outside the documented set become 400 or 500.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        let body = Json(ErrorBody {
            code: code.into(),
            message: message.into(),
            request_id: current_request_id(),
        });
        match status.as_u16() {
            401 => Self::Unauthorized(body),
            403 => Self::Forbidden(body),
            404 => Self::NotFound(body),
            409 => Self::Conflict(body),
            413 => Self::PayloadTooLarge(body),
            415 => Self::UnsupportedMediaType(body),
            429 => Self::TooManyRequests(body, 1),
            503 => Self::Unavailable(body),
            s if s >= 500 => Self::Internal(body),
            _ => Self::BadRequest(body),
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    /// A 429 telling the caller to wait `retry_after_secs` (also sent as `Retry-After`).
    pub fn too_many_requests(
        code: &str,
        message: impl Into<String>,
        retry_after_secs: u64,
    ) -> Self {
        let body = Json(ErrorBody {
            code: code.into(),
            message: message.into(),
            request_id: current_request_id(),
        });
        Self::TooManyRequests(body, retry_after_secs.max(1))
    }
    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// A 500 for a failure the caller cannot fix. The cause goes to the log under the request id,
    /// never into the response (it may name files, SQL or worse).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let request_id = current_request_id();
        tracing::error!(%request_id, error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "internal server error; the server log has the details under request id {request_id}"
            ),
        )
    }

    pub fn status(&self) -> StatusCode {
        let code = match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::TooManyRequests(..) => 429,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
        };
        StatusCode::from_u16(code).expect("valid status")
    }

    pub fn body(&self) -> &ErrorBody {
        match self {
            Self::BadRequest(b)
            | Self::Unauthorized(b)
            | Self::Forbidden(b)
            | Self::NotFound(b)
            | Self::Conflict(b)
            | Self::PayloadTooLarge(b)
            | Self::UnsupportedMediaType(b)
            | Self::TooManyRequests(b, _)
            | Self::Internal(b)
            | Self::Unavailable(b) => &b.0,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body();
        write!(
            f,
            "{} {}: {}",
            self.status().as_u16(),
            body.code,
            body.message
        )
    }
}

impl std::error::Error for ApiError {}

/// The stable code used for a status when the framework, not an endpoint, produced the error.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "too_many_requests",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "error",
    }
}
