//! Limits a server's domain enforces, declared in its spec.
//!
//! poem-openapi's validators would enforce a limit themselves, answering with the framework's
//! generic message before the domain's own (`invalid_page_size`, "page_size must be between 1 and
//! 1000") is reached. So the domain keeps enforcing, with its codes, and each server lists what it
//! enforces here, next to the constants that enforce it; [`crate::server::finished_spec`] writes
//! the list into the served and committed spec. A limit naming an operation, parameter, schema or
//! property the spec does not have panics where the spec is made (`cargo xtask openapi` and every
//! server start), so the list cannot silently drift from the API's shape; the fuzzer
//! (`tests/api/fuzz_specs.py`, its `positive_data_acceptance` check) catches a limit enforced but
//! not declared.
//!
//! The Rust SDK is generated from the spec with these keywords taken out again (`cargo xtask sdk`):
//! progenitor would turn every constrained string into a newtype. The servers are the ones that
//! check.

use serde_json::Value;

/// Where a limit applies.
#[derive(Clone, Debug)]
pub enum LimitAt {
    /// A parameter (query, path or header) of the operation with this `operation_id`.
    Param {
        operation: &'static str,
        name: &'static str,
    },
    /// A property of a component schema (a request body's type).
    Property {
        schema: &'static str,
        property: &'static str,
    },
}

/// JSON Schema keywords (`minimum`, `maxLength`, `pattern`, `minItems`, `items`, …) merged into
/// the schema at `at`; objects merge key by key, so `{"items": {"pattern": …}}` keeps the items'
/// type.
#[derive(Clone, Debug)]
pub struct Limit {
    pub at: LimitAt,
    pub keywords: Value,
}

impl Limit {
    pub fn param(operation: &'static str, name: &'static str, keywords: Value) -> Self {
        Self {
            at: LimitAt::Param { operation, name },
            keywords,
        }
    }

    pub fn property(schema: &'static str, property: &'static str, keywords: Value) -> Self {
        Self {
            at: LimitAt::Property { schema, property },
            keywords,
        }
    }
}

/// Writes `limits` into the spec document `doc`. Panics when one names what the spec lacks.
pub fn declare(doc: &mut Value, limits: &[Limit]) {
    for limit in limits {
        let target = match &limit.at {
            LimitAt::Param { operation, name } => param_schema(doc, operation, name),
            LimitAt::Property { schema, property } => doc.pointer_mut(&format!(
                "/components/schemas/{schema}/properties/{property}"
            )),
        };
        let target = target.unwrap_or_else(|| {
            panic!(
                "a declared limit names what the spec does not have: {:?}",
                limit.at
            )
        });
        merge(target, &limit.keywords);
    }
}

fn param_schema<'a>(doc: &'a mut Value, operation: &str, name: &str) -> Option<&'a mut Value> {
    doc.get_mut("paths")?
        .as_object_mut()?
        .values_mut()
        .flat_map(|methods| {
            methods
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
        })
        .find(|op| op.get("operationId").and_then(Value::as_str) == Some(operation))?
        .get_mut("parameters")?
        .as_array_mut()?
        .iter_mut()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
        .get_mut("schema")
}

fn merge(target: &mut Value, keywords: &Value) {
    match (target, keywords) {
        (Value::Object(target), Value::Object(keywords)) => {
            for (key, value) in keywords {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, keywords) => *target = keywords.clone(),
    }
}

/// A UUID's text (what `uuid::Uuid::parse_str` takes in its hyphenated form), as a pattern: a
/// `format: uuid` would make the SDKs' parameter a `Uuid` instead of the string they pass on.
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// The keywords [`declare`] adds that a client generator should not turn into types of their own:
/// `cargo xtask sdk` removes them before progenitor reads a spec.
pub const VALIDATION_KEYWORDS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({
            "paths": {"/things": {"get": {"operationId": "list_things", "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "format": "uint32"}}]}}},
            "components": {"schemas": {"NewThing": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}}}
        })
    }

    #[test]
    fn limits_land_on_parameters_and_properties_and_merge_into_items() {
        let mut doc = spec();
        declare(
            &mut doc,
            &[
                Limit::param(
                    "list_things",
                    "limit",
                    json!({"minimum": 1, "maximum": 1000}),
                ),
                Limit::property(
                    "NewThing",
                    "tags",
                    json!({"maxItems": 5, "items": {"pattern": "^[a-z]+$"}}),
                ),
            ],
        );
        assert_eq!(
            doc["paths"]["/things"]["get"]["parameters"][0]["schema"],
            json!({"type": "integer", "format": "uint32", "minimum": 1, "maximum": 1000})
        );
        assert_eq!(
            doc["components"]["schemas"]["NewThing"]["properties"]["tags"],
            json!({"type": "array", "maxItems": 5, "items": {"type": "string", "pattern": "^[a-z]+$"}})
        );
    }

    #[test]
    #[should_panic(expected = "does not have")]
    fn a_limit_on_nothing_is_refused() {
        declare(
            &mut spec(),
            &[Limit::param("list_things", "page", json!({"minimum": 1}))],
        );
    }
}
