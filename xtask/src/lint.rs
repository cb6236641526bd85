//! Checks a spec against the contract conventions that progenitor and the SDKs rely on.

use std::collections::BTreeSet;

use serde_json::Value;

/// Operations reachable without a token. Everything else must declare a security requirement.
const PUBLIC_OPERATIONS: &[&str] = &[
    "login",
    "get_jwks",
    "get_revocations",
    "get_tls_ca",
    "register_worker",
    "health",
    "ready",
    "metrics",
];

pub fn lint(spec: &Value) -> Vec<String> {
    let mut problems = vec![];
    let Some(paths) = spec.get("paths").and_then(Value::as_object) else {
        return vec!["no paths".into()];
    };
    let mut seen_ids = BTreeSet::new();
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            if !["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                continue;
            }
            let at = format!("{} {path}", method.to_uppercase());
            let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                problems.push(format!("{at}: no operation_id"));
                continue;
            };
            if !seen_ids.insert(id.to_owned()) {
                problems.push(format!("{at}: operation_id {id} is used twice"));
            }
            let tags = op.get("tags").and_then(Value::as_array).map_or(0, Vec::len);
            if tags != 1 {
                problems.push(format!("{at} ({id}): {tags} tags, exactly one wanted"));
            }
            let responses = op
                .get("responses")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut success = BTreeSet::new();
            let mut errors = BTreeSet::new();
            for (status, response) in &responses {
                let body = body_schema(response);
                if status.starts_with('2') {
                    success.insert(body);
                } else {
                    errors.insert(body);
                }
            }
            if success.len() > 1 {
                problems.push(format!(
                    "{at} ({id}): {} different success bodies; progenitor needs one",
                    success.len()
                ));
            }
            if errors.len() > 1 {
                problems.push(format!(
                    "{at} ({id}): {} different error bodies; use ErrorBody for all",
                    errors.len()
                ));
            }
            if let Some(body) = errors.iter().next() {
                if body.as_deref() != Some("#/components/schemas/ErrorBody") {
                    problems.push(format!(
                        "{at} ({id}): error responses must be ErrorBody, found {body:?}"
                    ));
                }
            }
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let public = PUBLIC_OPERATIONS.contains(&id);
            if !secured && !public {
                problems.push(format!("{at} ({id}): no security requirement (add a token, or list it as public in xtask/src/lint.rs)"));
            }
            if let Some(content) = op
                .pointer("/requestBody/content")
                .and_then(Value::as_object)
            {
                if content.contains_key("multipart/form-data") {
                    problems.push(format!(
                        "{at} ({id}): multipart/form-data bodies are not supported by progenitor"
                    ));
                }
            }
        }
    }
    problems
}

/// The schema `$ref` (or an inline description) of a response's body; None for no body.
fn body_schema(response: &Value) -> Option<String> {
    let content = response.get("content")?.as_object()?;
    let (media, body) = content.iter().next()?;
    match body.pointer("/schema/$ref").and_then(Value::as_str) {
        Some(r) => Some(r.to_owned()),
        None => Some(format!(
            "{media}:{}",
            body.get("schema").map(Value::to_string).unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::lint;

    fn op(extra: serde_json::Value) -> serde_json::Value {
        let mut op = json!({
            "operationId": "list_things",
            "tags": ["Things"],
            "security": [{"UserAuth": []}],
            "responses": {
                "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                "404": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            }
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                op.as_object_mut().unwrap().remove(k);
            } else {
                op[k] = v.clone();
            }
        }
        json!({"paths": {"/things": {"get": op}}})
    }

    #[test]
    fn a_conforming_operation_passes() {
        assert!(lint(&op(json!({}))).is_empty());
    }

    #[test]
    fn each_convention_is_enforced() {
        let cases = [
            (json!({"operationId": null}), "no operation_id"),
            (json!({"tags": ["A", "B"]}), "exactly one wanted"),
            (json!({"security": null}), "no security requirement"),
            (
                json!({"responses": {
                    "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}},
                    "201": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/B"}}}}
                }}),
                "different success bodies",
            ),
            (
                json!({"responses": {
                    "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}},
                    "400": {"content": {"text/plain": {"schema": {"type": "string"}}}}
                }}),
                "must be ErrorBody",
            ),
        ];
        for (change, expected) in cases {
            let problems = lint(&op(change.clone()));
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{change} → {problems:?}"
            );
        }
    }
}
