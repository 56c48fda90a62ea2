//! The decision request, shaped like an OpenID AuthZEN 1.0 evaluation request, and its parser.
//!
//! Requests come from untrusted callers, so the parser is strict: a size and nesting limit,
//! no duplicate keys, no unknown fields, and every error names the field at fault.

use crate::{parse_strict_json, EntityRef};
use serde_json::{Map, Value};
use thiserror::Error;

/// The context key under which a caller names a delegation chain.
pub const DELEGATION_KEY: &str = "delegation";

/// Bounds on one request. Going over any of them is a clear error, never a partial parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest accepted request, in bytes of JSON.
    pub max_bytes: usize,
    /// Deepest accepted nesting of JSON arrays and objects.
    pub max_depth: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_depth: 32,
        }
    }
}

/// A subject or resource as the caller names it.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityInput {
    /// Which entity.
    pub entity: EntityRef,
    /// Caller-supplied attributes. They describe entities the inventory does not hold and never
    /// override what the inventory says about one it does.
    pub properties: Map<String, Value>,
}

/// The action as the caller names it: AuthZEN `action.name` becomes Cedar `Action::"<name>"`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRef {
    /// Action name.
    pub name: String,
    /// Caller-supplied attributes of the action, with the same rule as entity properties.
    pub properties: Map<String, Value>,
}

/// One request to decide: who wants to do what to which thing, in what circumstances.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRequest {
    /// Who acts.
    pub subject: EntityInput,
    /// What they want to do.
    pub action: ActionRef,
    /// What they want to do it to.
    pub resource: EntityInput,
    /// Caller context, minus the keys Arbiter reserves (`delegation`, `arbiter`).
    pub context: Map<String, Value>,
    /// Who the subject acts for, from the origin (usually a human) to the immediate delegator.
    pub delegation: Vec<EntityRef>,
}

impl DecisionRequest {
    /// The request as AuthZEN JSON, delegation back under `context.delegation`:
    /// [`request_from_value`] of it gives this request again (the decision log stores requests
    /// this way so that replay parses them like the API did).
    pub fn to_value(&self) -> Value {
        let entity = |input: &EntityInput| {
            let mut fields = Map::new();
            fields.insert("type".into(), input.entity.entity_type.clone().into());
            fields.insert("id".into(), input.entity.id.clone().into());
            if !input.properties.is_empty() {
                fields.insert("properties".into(), Value::Object(input.properties.clone()));
            }
            Value::Object(fields)
        };
        let mut action = Map::new();
        action.insert("name".into(), self.action.name.clone().into());
        if !self.action.properties.is_empty() {
            action.insert(
                "properties".into(),
                Value::Object(self.action.properties.clone()),
            );
        }
        let mut context = self.context.clone();
        if !self.delegation.is_empty() {
            let hops = self
                .delegation
                .iter()
                .map(|hop| {
                    let mut fields = Map::new();
                    fields.insert("type".into(), hop.entity_type.clone().into());
                    fields.insert("id".into(), hop.id.clone().into());
                    Value::Object(fields)
                })
                .collect();
            context.insert(DELEGATION_KEY.into(), Value::Array(hops));
        }
        let mut request = Map::new();
        request.insert("subject".into(), entity(&self.subject));
        request.insert("action".into(), Value::Object(action));
        request.insert("resource".into(), entity(&self.resource));
        request.insert("context".into(), Value::Object(context));
        Value::Object(request)
    }
}

/// A request the parser refused, naming the field and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{field}`: {reason}")]
pub struct RequestError {
    /// Path of the offending field, e.g. `subject.id`; `$` for the whole request.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RequestError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Parses one AuthZEN evaluation request from JSON text.
pub fn parse_request(text: &str, limits: RequestLimits) -> Result<DecisionRequest, RequestError> {
    if text.len() > limits.max_bytes {
        return Err(RequestError::new(
            "$",
            format!(
                "request is {} bytes, over the limit of {}",
                text.len(),
                limits.max_bytes
            ),
        ));
    }
    let value = parse_strict_json(text, limits.max_depth)
        .map_err(|err| RequestError::new("$", format!("invalid JSON: {err}")))?;
    request_from_value(value)
}

/// Builds a request from an already parsed JSON value (for callers with their own JSON parsing,
/// such as a batch whose items inherit top-level defaults).
pub fn request_from_value(value: Value) -> Result<DecisionRequest, RequestError> {
    let Value::Object(mut object) = value else {
        return Err(RequestError::new("$", "must be a JSON object"));
    };
    let subject = take_entity(&mut object, "subject")?;
    let action = take_action(&mut object)?;
    let resource = take_entity(&mut object, "resource")?;
    let mut context = match object.remove("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(context)) => context,
        Some(other) => {
            return Err(RequestError::new(
                "context",
                format!("must be an object, found {}", json_type(&other)),
            ))
        }
    };
    if let Some(unknown) = object.keys().next() {
        return Err(RequestError::new(unknown.as_str(), "unknown field"));
    }
    if context.contains_key("arbiter") {
        return Err(RequestError::new(
            "context.arbiter",
            "reserved: Arbiter fills it with time, signals and delegation",
        ));
    }
    let delegation = match context.remove(DELEGATION_KEY) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(hops)) => hops
            .into_iter()
            .enumerate()
            .map(|(idx, hop)| entity_ref(hop, &format!("context.delegation[{idx}]")))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(RequestError::new(
                "context.delegation",
                format!(
                    "must be an array of {{type, id}}, found {}",
                    json_type(&other)
                ),
            ))
        }
    };
    Ok(DecisionRequest {
        subject,
        action,
        resource,
        context,
        delegation,
    })
}

fn take_entity(object: &mut Map<String, Value>, field: &str) -> Result<EntityInput, RequestError> {
    let Some(value) = object.remove(field) else {
        return Err(RequestError::new(field, "missing"));
    };
    let Value::Object(mut fields) = value else {
        return Err(RequestError::new(
            field,
            format!("must be an object, found {}", json_type(&value)),
        ));
    };
    let entity_type = take_string(&mut fields, field, "type")?;
    let id = take_string(&mut fields, field, "id")?;
    let properties = take_properties(&mut fields, field)?;
    reject_unknown(&fields, field)?;
    Ok(EntityInput {
        entity: EntityRef::new(entity_type, id),
        properties,
    })
}

fn take_action(object: &mut Map<String, Value>) -> Result<ActionRef, RequestError> {
    let Some(value) = object.remove("action") else {
        return Err(RequestError::new("action", "missing"));
    };
    let Value::Object(mut fields) = value else {
        return Err(RequestError::new(
            "action",
            format!("must be an object, found {}", json_type(&value)),
        ));
    };
    let name = take_string(&mut fields, "action", "name")?;
    let properties = take_properties(&mut fields, "action")?;
    reject_unknown(&fields, "action")?;
    Ok(ActionRef { name, properties })
}

fn take_string(
    fields: &mut Map<String, Value>,
    parent: &str,
    name: &str,
) -> Result<String, RequestError> {
    match fields.remove(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) => Err(RequestError::new(
            format!("{parent}.{name}"),
            "must not be empty",
        )),
        Some(other) => Err(RequestError::new(
            format!("{parent}.{name}"),
            format!("must be a string, found {}", json_type(&other)),
        )),
        None => Err(RequestError::new(format!("{parent}.{name}"), "missing")),
    }
}

fn take_properties(
    fields: &mut Map<String, Value>,
    parent: &str,
) -> Result<Map<String, Value>, RequestError> {
    match fields.remove("properties") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(properties)) => Ok(properties),
        Some(other) => Err(RequestError::new(
            format!("{parent}.properties"),
            format!("must be an object, found {}", json_type(&other)),
        )),
    }
}

fn reject_unknown(fields: &Map<String, Value>, parent: &str) -> Result<(), RequestError> {
    match fields.keys().next() {
        Some(unknown) => Err(RequestError::new(
            format!("{parent}.{unknown}"),
            "unknown field",
        )),
        None => Ok(()),
    }
}

fn entity_ref(value: Value, field: &str) -> Result<EntityRef, RequestError> {
    let Value::Object(mut fields) = value else {
        return Err(RequestError::new(
            field,
            format!("must be an object, found {}", json_type(&value)),
        ));
    };
    let entity_type = take_string(&mut fields, field, "type")?;
    let id = take_string(&mut fields, field, "id")?;
    reject_unknown(&fields, field)?;
    Ok(EntityRef::new(entity_type, id))
}

/// A JSON type's name, for error messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_err(text: &str, field: &str, reason_part: &str) {
        let err = parse_request(text, RequestLimits::default()).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(err.reason.contains(reason_part), "{err}");
    }

    const GOOD: &str = r#"{"subject":{"type":"Agent","id":"a1","properties":{"x":1}},
        "action":{"name":"read"},"resource":{"type":"Dataset","id":"d1"},
        "context":{"ip":"10.0.0.1","delegation":[{"type":"Human","id":"alice"}]}}"#;

    #[test]
    fn parses_an_authzen_request_and_lifts_delegation_out_of_context() {
        let request = parse_request(GOOD, RequestLimits::default()).unwrap();
        assert_eq!(request.subject.entity, EntityRef::new("Agent", "a1"));
        assert_eq!(request.action.name, "read");
        assert_eq!(request.delegation, vec![EntityRef::new("Human", "alice")]);
        assert!(!request.context.contains_key("delegation"));
        assert_eq!(request.context["ip"], "10.0.0.1");
    }

    #[test]
    fn to_value_parses_back_to_the_same_request() {
        let with_everything = parse_request(GOOD, RequestLimits::default()).unwrap();
        let bare = parse_request(
            r#"{"subject":{"type":"Human","id":"h"},"action":{"name":"a","properties":{"n":[1]}},
                "resource":{"type":"T","id":"r","properties":{"p":{"q":null}}}}"#,
            RequestLimits::default(),
        )
        .unwrap();
        for request in [with_everything, bare] {
            assert_eq!(request_from_value(request.to_value()).unwrap(), request);
        }
    }

    #[test]
    fn names_the_field_at_fault() {
        check_err("[]", "$", "object");
        check_err("{", "$", "invalid JSON");
        check_err(
            r#"{"action":{"name":"r"},"resource":{"type":"T","id":"r"}}"#,
            "subject",
            "missing",
        );
        check_err(
            r#"{"subject":{"type":"A","id":5},"action":{"name":"r"},"resource":{"type":"T","id":"r"}}"#,
            "subject.id",
            "must be a string",
        );
        check_err(
            r#"{"subject":{"type":"A","id":""},"action":{"name":"r"},"resource":{"type":"T","id":"r"}}"#,
            "subject.id",
            "empty",
        );
        check_err(
            r#"{"subject":{"type":"A","id":"a","role":"admin"},"action":{"name":"r"},"resource":{"type":"T","id":"r"}}"#,
            "subject.role",
            "unknown field",
        );
        check_err(
            r#"{"subject":{"type":"A","id":"a"},"action":{"name":"r"},"resource":{"type":"T","id":"r"},"context":{"delegation":"bob"}}"#,
            "context.delegation",
            "array",
        );
        check_err(
            r#"{"subject":{"type":"A","id":"a"},"action":{"name":"r"},"resource":{"type":"T","id":"r"},"context":{"arbiter":{}}}"#,
            "context.arbiter",
            "reserved",
        );
        check_err(
            r#"{"subject":{"type":"A","id":"a","id":"b"},"action":{"name":"r"},"resource":{"type":"T","id":"r"}}"#,
            "$",
            "duplicate key",
        );
    }

    #[test]
    fn enforces_size_and_depth_limits() {
        let limits = RequestLimits {
            max_bytes: 100,
            max_depth: 4,
        };
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200));
        assert!(parse_request(&big, limits)
            .unwrap_err()
            .reason
            .contains("over the limit"));
        let deep = GOOD.replace(r#""ip":"10.0.0.1""#, r#""ip":[[[[[1]]]]]"#);
        let limits = RequestLimits {
            max_bytes: 4096,
            max_depth: 4,
        };
        assert!(parse_request(&deep, limits)
            .unwrap_err()
            .reason
            .contains("nested too deeply"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,512}") {
            let _ = parse_request(&text, RequestLimits::default());
        }

        #[test]
        fn mutated_requests_parse_or_name_a_field(
            cut in 0usize..200,
            insert in "[\\[\\]{}\",:0-9a-z ]{0,8}",
        ) {
            let good = r#"{"subject":{"type":"Agent","id":"a"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"d"},"context":{"n":1}}"#;
            let cut = cut.min(good.len());
            let mut text = good.get(..cut).unwrap_or(good).to_owned();
            text.push_str(&insert);
            text.push_str(good.get(cut..).unwrap_or(""));
            match parse_request(&text, RequestLimits::default()) {
                Ok(request) => prop_assert!(!request.subject.entity.id.is_empty()),
                Err(err) => prop_assert!(!err.field.is_empty() && !err.reason.is_empty()),
            }
        }
    }
}
