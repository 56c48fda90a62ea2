//! MCP messages as AuthZEN decision requests (documented in docs/gateway.md).
//!
//! Everything a policy may read about the call is in `context.mcp`: the server, the method, the
//! tool (resource, prompt) name, the tool's annotations as the **server** listed them, and the
//! arguments. The client never supplies annotations: they come from the gateway's own list of
//! the server's tools. The delegation chain of the session's identity goes in
//! `context.delegation`, where Arbiter decides each hop. The context carries nothing that changes
//! between two identical calls (no time, no nonce), so an approval granted for one call covers
//! exactly a retry of it.

use crate::config::{AgentIdentity, Mapping};
use serde_json::{json, Map, Value};

/// What a decision is asked about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// A tool, with its annotations as the server reported them. `listed` is false for a
    /// name no upstream lists (which is decided and recorded, then refused).
    Tool {
        name: &'a str,
        annotations: &'a Map<String, Value>,
        listed: bool,
    },
    /// A resource, by URI; `listed` as for tools.
    Resource { uri: &'a str, listed: bool },
    /// A prompt, by name; `listed` as for tools.
    Prompt { name: &'a str, listed: bool },
}

/// Builds the AuthZEN request for `target` on upstream `server`. `arguments` is `None` when
/// filtering a list (nothing is called yet) and `Some` for a call.
pub(crate) fn request(
    mapping: &Mapping,
    who: &AgentIdentity,
    server: &str,
    target: Target<'_>,
    arguments: Option<&Map<String, Value>>,
) -> Value {
    let (action, entity_type, template, placeholder, name, method) = match target {
        Target::Tool { name, .. } => (
            &mapping.tool_action,
            &mapping.tool_type,
            &mapping.tool_id,
            "{tool}",
            name,
            if arguments.is_some() {
                "tools/call"
            } else {
                "tools/list"
            },
        ),
        Target::Resource { uri, .. } => (
            &mapping.resource_action,
            &mapping.resource_type,
            &mapping.resource_id,
            "{uri}",
            uri,
            if arguments.is_some() {
                "resources/read"
            } else {
                "resources/list"
            },
        ),
        Target::Prompt { name, .. } => (
            &mapping.prompt_action,
            &mapping.prompt_type,
            &mapping.prompt_id,
            "{prompt}",
            name,
            if arguments.is_some() {
                "prompts/get"
            } else {
                "prompts/list"
            },
        ),
    };
    let id = template
        .replace("{server}", server)
        .replace(placeholder, name);
    let mut mcp = Map::new();
    mcp.insert("server".into(), json!(server));
    mcp.insert("method".into(), json!(method));
    match target {
        Target::Tool {
            name,
            annotations,
            listed,
        } => {
            mcp.insert("tool".into(), json!(name));
            mcp.insert("listed".into(), json!(listed));
            mcp.insert(
                "annotations".into(),
                Value::Object(cedar_safe_object(annotations)),
            );
        }
        Target::Resource { uri, listed } => {
            mcp.insert("uri".into(), json!(uri));
            mcp.insert("listed".into(), json!(listed));
        }
        Target::Prompt { name, listed } => {
            mcp.insert("prompt".into(), json!(name));
            mcp.insert("listed".into(), json!(listed));
        }
    }
    // A resource read has no arguments; its URI is the whole request.
    if let (Some(arguments), false) = (arguments, matches!(target, Target::Resource { .. })) {
        mcp.insert(
            "arguments".into(),
            Value::Object(cedar_safe_object(arguments)),
        );
    }
    let mut context = Map::new();
    context.insert("mcp".into(), Value::Object(mcp));
    if !who.acts_for.is_empty() {
        context.insert("delegation".into(), json!(who.acts_for));
    }
    json!({
        "subject": who.subject,
        "action": {"name": action},
        "resource": {"type": entity_type, "id": id},
        "context": context,
    })
}

/// A JSON object as Cedar can take it whole, so that no argument is lost or reinterpreted:
/// `null` is left out (Cedar has none), a number that is not a 64-bit integer becomes its
/// decimal text, and a key that starts with `__` (Cedar's escapes, which would let a client
/// forge an entity reference) or with `~` gets a `~` in front, so keys stay distinct.
pub(crate) fn cedar_safe_object(object: &Map<String, Value>) -> Map<String, Value> {
    object
        .iter()
        .filter_map(|(key, value)| {
            let key = if key.starts_with("__") || key.starts_with('~') {
                format!("~{key}")
            } else {
                key.clone()
            };
            cedar_safe(value).map(|value| (key, value))
        })
        .collect()
}

fn cedar_safe(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Number(number) if number.as_i64().is_none() => {
            Some(Value::String(number.to_string()))
        }
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(cedar_safe).collect())),
        Value::Object(object) => Some(Value::Object(cedar_safe_object(object))),
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests index known JSON")]
    use super::*;
    use arbiter_core::EntityRef;

    fn who() -> AgentIdentity {
        AgentIdentity {
            subject: EntityRef::new("Agent", "copilot"),
            acts_for: vec![EntityRef::new("Human", "alice")],
        }
    }

    #[test]
    fn a_tool_call_carries_server_annotations_arguments_and_the_chain() {
        let annotations = json!({"readOnlyHint": true})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let arguments = json!({"path": "/tmp/a", "limit": 2.5, "skip": null, "__entity": {"type": "Human", "id": "x"}});
        let request = request(
            &Mapping::default(),
            &who(),
            "fs",
            Target::Tool {
                name: "read_file",
                annotations: &annotations,
                listed: true,
            },
            arguments.as_object(),
        );
        assert_eq!(
            request["resource"],
            json!({"type": "Tool", "id": "fs/read_file"})
        );
        assert_eq!(request["action"]["name"], "call_tool");
        assert_eq!(
            request["context"]["delegation"],
            json!([{"type": "Human", "id": "alice"}])
        );
        let mcp = &request["context"]["mcp"];
        assert_eq!(mcp["method"], "tools/call");
        assert_eq!(mcp["annotations"]["readOnlyHint"], true);
        assert_eq!(mcp["listed"], true);
        assert_eq!(
            mcp["arguments"],
            json!({"path": "/tmp/a", "limit": "2.5", "~__entity": {"type": "Human", "id": "x"}})
        );
        // It parses as Arbiter's request.
        assert!(arbiter_core::request_from_value(request).is_ok());
    }

    #[test]
    fn a_list_item_has_no_arguments() {
        let request = request(
            &Mapping::default(),
            &who(),
            "fs",
            Target::Resource {
                uri: "file:///a",
                listed: true,
            },
            None,
        );
        assert_eq!(request["resource"]["id"], "fs/file:///a");
        assert_eq!(request["context"]["mcp"]["listed"], true);
        assert_eq!(request["context"]["mcp"]["method"], "resources/list");
        assert!(request["context"]["mcp"].get("arguments").is_none());
    }
}
