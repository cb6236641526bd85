//! JSON request bodies held to the types their spec declares, before poem-openapi reads them.
//!
//! poem-openapi is lenient in two ways a spec cannot say: it reads a JSON number or boolean where
//! a string is declared as its text (`"name": false` becomes the name "false"), and it takes
//! `null` for an optional field the spec does not mark nullable. A client whose bug sends either
//! would be answered as if it had sent something else. [`StrictJson`] looks at each JSON body
//! against the operation's schema in the server's own finished spec and refuses those two with a
//! 400 naming the field; everything else (integers, booleans, enums, required fields, limits) is
//! left to poem-openapi and the domain, which are already strict about them.

use std::sync::Arc;

use poem::{Endpoint, IntoResponse, Request, Response, http::StatusCode};
use serde_json::Value;

use crate::{edge::error_response, error::code_for_status, server::PathTemplate};

/// The JSON request body schema of each operation of a spec.
#[derive(Clone, Debug, Default)]
pub struct JsonBodies {
    operations: Arc<Vec<(PathTemplate, poem::http::Method, Value)>>,
    /// `#/components/schemas`, where `$ref`s point.
    schemas: Arc<Value>,
}

impl JsonBodies {
    pub fn from_spec(spec_json: &str) -> Self {
        let spec: Value = serde_json::from_str(spec_json).unwrap_or_default();
        let mut operations = Vec::new();
        for (path, methods) in spec["paths"].as_object().into_iter().flatten() {
            for (method, operation) in methods.as_object().into_iter().flatten() {
                let json_schema = operation["requestBody"]["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .find(|(media_type, _)| media_type.starts_with("application/json"))
                    .map(|(_, content)| content["schema"].clone());
                if let (Some(schema), Ok(method)) =
                    (json_schema, method.to_ascii_uppercase().parse())
                {
                    operations.push((PathTemplate::new(path), method, schema));
                }
            }
        }
        Self {
            operations: Arc::new(operations),
            schemas: Arc::new(spec["components"]["schemas"].clone()),
        }
    }

    fn schema_for(&self, method: &poem::http::Method, path: &str) -> Option<&Value> {
        self.operations
            .iter()
            .find(|(template, m, _)| m == method && template.fits(path))
            .map(|(_, _, schema)| schema)
    }

    /// Where `value` breaks what `schema` says of its JSON types: a message naming the field.
    pub fn check(&self, value: &Value, schema: &Value) -> Result<(), String> {
        self.check_at(value, schema, "the body", 0)
    }

    fn check_at(
        &self,
        value: &Value,
        schema: &Value,
        at: &str,
        depth: usize,
    ) -> Result<(), String> {
        // A schema nested deeper than any request body has is not looked into further.
        if depth > 32 {
            return Ok(());
        }
        if let Some(target) = schema["$ref"].as_str() {
            let resolved = target
                .strip_prefix("#/components/schemas/")
                .map(|name| &self.schemas[name]);
            return match resolved {
                Some(resolved) if !resolved.is_null() => {
                    self.check_at(value, resolved, at, depth + 1)
                }
                _ => Ok(()),
            };
        }
        if let Some(all) = schema["allOf"].as_array() {
            return all
                .iter()
                .try_for_each(|part| self.check_at(value, part, at, depth + 1));
        }
        let Some(declared) = schema["type"].as_str() else {
            // oneOf, anyOf or an untyped schema: whatever it holds is poem-openapi's to judge.
            return Ok(());
        };
        match value {
            Value::Null if schema["nullable"] == Value::Bool(true) => Ok(()),
            Value::Null => Err(format!(
                "{at} is null; give a {declared} or leave the field out"
            )),
            Value::String(_) => Ok(()),
            other if declared == "string" => {
                Err(format!("{at} must be a JSON string, not {other}"))
            }
            Value::Object(fields) if declared == "object" => {
                for (name, field) in fields {
                    let field_schema = match schema["properties"].get(name) {
                        Some(declared) => declared,
                        None => &schema["additionalProperties"],
                    };
                    if field_schema.is_object() {
                        self.check_at(field, field_schema, &format!("{name:?}"), depth + 1)?;
                    }
                }
                Ok(())
            }
            Value::Array(items) if declared == "array" => {
                items.iter().enumerate().try_for_each(|(i, item)| {
                    self.check_at(item, &schema["items"], &format!("{at}[{i}]"), depth + 1)
                })
            }
            _ => Ok(()),
        }
    }
}

/// Refuses a JSON body whose strings or nulls break its operation's schema (see the module).
pub struct StrictJson<E> {
    pub inner: E,
    pub bodies: JsonBodies,
}

impl<E: Endpoint> Endpoint for StrictJson<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let is_json = req
            .content_type()
            .is_some_and(|ct| ct.starts_with("application/json"));
        let Some(schema) = self
            .bodies
            .schema_for(req.method(), req.uri().path())
            .filter(|_| is_json)
        else {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        };
        let bytes = match req.take_body().into_bytes().await {
            Ok(bytes) => bytes,
            // Too large (the edge answers 413) or broken off: poem-openapi's reading says so.
            Err(_) => return self.inner.call(req).await.map(IntoResponse::into_response),
        };
        // Not JSON at all: poem-openapi's own answer names the parse error.
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes)
            && let Err(message) = self.bodies.check(&value, schema)
        {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                code_for_status(StatusCode::BAD_REQUEST),
                message,
            ));
        }
        req.set_body(bytes);
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bodies() -> JsonBodies {
        let spec = json!({
            "paths": {"/api/things/{id}": {"post": {"requestBody": {"content": {"application/json; charset=utf-8": {
                "schema": {"$ref": "#/components/schemas/Thing"}}}}}}},
            "components": {"schemas": {
                "Thing": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "note": {"type": "string", "nullable": true},
                    "count": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "inner": {"allOf": [{"$ref": "#/components/schemas/Inner"}], "description": "…"},
                    "any": {}
                }},
                "Inner": {"type": "object", "properties": {"id": {"type": "string"}}}
            }}
        });
        JsonBodies::from_spec(&spec.to_string())
    }

    #[test]
    fn strings_must_be_strings_and_nulls_must_be_allowed() {
        let b = bodies();
        let schema = b
            .schema_for(&poem::http::Method::POST, "/api/things/7")
            .expect("the operation is found")
            .clone();
        let ok = json!({"name": "a", "note": null, "count": 3, "tags": ["x"], "labels": {"k": "v"}, "inner": {"id": "i"}, "any": null});
        assert_eq!(b.check(&ok, &schema), Ok(()));
        for (bad, names) in [
            (json!({"name": false}), "\"name\""),
            (json!({"name": "a", "count": null}), "\"count\""),
            (json!({"name": "a", "tags": ["x", 1]}), "\"tags\"[1]"),
            (json!({"name": "a", "labels": {"k": 2}}), "\"k\""),
            (json!({"name": "a", "inner": {"id": 5}}), "\"id\""),
            (json!({"name": "a", "inner": null}), "\"inner\""),
        ] {
            let message = b.check(&bad, &schema).expect_err(&bad.to_string());
            assert!(message.starts_with(names), "{message}");
        }
        assert!(
            b.schema_for(&poem::http::Method::GET, "/api/things/7")
                .is_none()
        );
        assert!(
            b.schema_for(&poem::http::Method::POST, "/api/things")
                .is_none()
        );
    }
}
