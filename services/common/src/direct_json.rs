//! JSON answers encoded straight from a model's serde form.
//!
//! poem-openapi's `Json<T>` answers by building `T::to_json()`, a `serde_json::Value` tree (a
//! `BTreeMap` insert and allocations for every field), then writing that tree. For a page of
//! workers, building, writing and dropping the tree was the largest part of the conductor's
//! own CPU per request (docs/benchmarks.md, "Conductor"). [`DirectJson`] writes `T` with serde
//! instead, under the same content type and the same schema in the spec.
//!
//! The contract a model takes on with it: its serde form is the JSON its schema describes, equal
//! as a JSON value to `T::to_json()` (object keys may come in another order). serde's defaults
//! differ from poem-openapi's in places (a `DateTime` is written with `Z`, not `+00:00`; an absent
//! `Option` is `null`, not left out), so a model states them ([`rfc3339`],
//! `skip_serializing_if`). [`assert_same_json`] checks a value; every model answered this way has
//! a test calling it with its optional fields both set and absent.

use poem::{IntoResponse, Response};
use poem_openapi::{
    ApiResponse,
    payload::{Json, Payload},
    registry::{MetaResponses, Registry},
    types::ToJSON,
};
use serde::Serialize;

/// A JSON answer written from `T`'s serde form (see the module's contract).
pub struct DirectJson<T>(pub T);

impl<T: ToJSON + Serialize + Send> IntoResponse for DirectJson<T> {
    fn into_response(self) -> Response {
        // Grown from a few kilobytes rather than serde_json's 128 bytes: a page of models.
        let mut body = Vec::with_capacity(4096);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => Response::builder()
                .content_type(<Json<T> as Payload>::CONTENT_TYPE)
                .body(body),
            // Only a map with keys that are not strings fails; no model has one.
            Err(e) => crate::ApiError::internal(e).into_response(),
        }
    }
}

/// Described as poem-openapi's `Json<T>` is (its own description), so the spec does not change.
impl<T: ToJSON + Serialize + Send> ApiResponse for DirectJson<T> {
    fn meta() -> MetaResponses {
        <Json<T> as ApiResponse>::meta()
    }

    fn register(registry: &mut Registry) {
        <Json<T> as ApiResponse>::register(registry);
    }
}

/// Writes a time as poem-openapi does (`DateTime::to_rfc3339`: `+00:00`, not serde's `Z`).
pub fn rfc3339<S: serde::Serializer>(
    at: &chrono::DateTime<chrono::Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339())
}

/// Panics unless `value`'s serde form equals the JSON poem-openapi would answer with.
pub fn assert_same_json<T: Serialize + ToJSON>(value: &T) {
    let direct = serde_json::to_value(value).expect("serializes");
    let openapi = value.to_json().unwrap_or_default();
    assert_eq!(
        direct, openapi,
        "the serde form (left) differs from poem-openapi's (right)"
    );
}
