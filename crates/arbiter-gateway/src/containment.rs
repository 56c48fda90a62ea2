//! Whether an agent is contained: quarantined, suspended, revoked or gone, or cut off through
//! its owner, sponsor, credential holder or anyone in its delegation chain, as Arbiter's guards
//! and quarantine controls say. The gateway closes the open sessions of a contained agent.
//!
//! The engine is asked, not imitated: one probe request per action the gateway maps to (tool,
//! resource, prompt), shaped like a real call of the agent (its subject and delegation chain),
//! on a resource that names no real one. The agent is contained when every probe broke a
//! containment guard: a quarantine whose safe set still allows one of the actions leaves the
//! session open (each message is still decided). A policy's deny is not containment.

use crate::config::{AgentIdentity, Mapping};
use serde_json::{json, Value};

/// The id of the resource probes name: no tool, resource or prompt has it, so no control on a
/// real resource (a quarantined MCP server) is mistaken for the agent's containment.
pub(crate) const PROBE_RESOURCE_ID: &str = "arbiter-gateway:session-check";

/// Guards that contain a principal whatever it asks for (see `GuardViolation`): `contained` is
/// a quarantine control, which counts only when it is not on the probe's own resource.
const CONTAINING: [&str; 7] = [
    "unknown_principal",
    "not_active",
    "credential_expired",
    "holder_not_active",
    "sponsor_not_active",
    "orphaned",
    "contained",
];

/// The probe requests for `who`: one per mapped action, in AuthZEN's shape.
pub(crate) fn probes(mapping: &Mapping, who: &AgentIdentity) -> Vec<Value> {
    [
        (&mapping.tool_action, &mapping.tool_type),
        (&mapping.resource_action, &mapping.resource_type),
        (&mapping.prompt_action, &mapping.prompt_type),
    ]
    .into_iter()
    .map(|(action, resource_type)| {
        let mut context = serde_json::Map::new();
        context.insert("mcp".into(), json!({"method": "session-check"}));
        if !who.acts_for.is_empty() {
            context.insert("delegation".into(), json!(who.acts_for));
        }
        json!({
            "subject": who.subject,
            "action": {"name": action},
            "resource": {"type": resource_type, "id": PROBE_RESOURCE_ID},
            "context": context,
        })
    })
    .collect()
}

/// Why the agent is contained, or `None` if it is not, from the probes' answers (AuthZEN's
/// shape, with Arbiter's `context.guards`). Answers of the wrong number say nothing: not
/// contained here, and every message is still decided (and refused without a decision).
pub(crate) fn contained(answers: &[Value], expected: usize) -> Option<String> {
    if answers.len() != expected || answers.is_empty() {
        return None;
    }
    let mut reason = None;
    for answer in answers {
        let context = answer.get("context")?;
        let guards = context.get("guards").and_then(Value::as_array)?;
        if !guards.iter().any(is_containing) {
            return None;
        }
        if reason.is_none() {
            reason = context
                .pointer("/reason_admin/en")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
    }
    Some(reason.unwrap_or_else(|| "the agent is contained".to_owned()))
}

fn is_containing(guard: &Value) -> bool {
    let kind = guard.get("guard").and_then(Value::as_str).unwrap_or("");
    if !CONTAINING.contains(&kind) {
        return false;
    }
    // A control on the probe's resource itself is not the agent's.
    kind != "contained"
        || guard.pointer("/target/id").and_then(Value::as_str) != Some(PROBE_RESOURCE_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(guards: Value) -> Value {
        json!({"decision": false, "context": {"reason_admin": {"en": "why"}, "guards": guards}})
    }

    #[test]
    fn contained_only_when_every_probe_broke_a_containment_guard() {
        let quarantined =
            answer(json!([{"guard": "contained", "target": {"type": "Agent", "id": "a"}}]));
        let inactive = answer(json!([{"guard": "not_active"}]));
        let policy_deny =
            json!({"decision": false, "context": {"reason_admin": {"en": "no permit"}}});
        let other_guard = answer(json!([{"guard": "forbid_errored"}]));
        let on_probe = answer(
            json!([{"guard": "contained", "target": {"type": "Tool", "id": PROBE_RESOURCE_ID}}]),
        );
        let check = |answers: &[Value]| contained(answers, answers.len()).is_some();
        assert!(check(&[
            quarantined.clone(),
            inactive.clone(),
            quarantined.clone()
        ]));
        // A safe action left open, a policy's deny, another guard: not containment.
        assert!(!check(&[
            quarantined.clone(),
            policy_deny,
            quarantined.clone()
        ]));
        assert!(!check(&[
            other_guard.clone(),
            other_guard.clone(),
            other_guard
        ]));
        assert!(!check(&[on_probe.clone(), on_probe.clone(), on_probe]));
        // Missing answers say nothing.
        assert!(contained(std::slice::from_ref(&inactive), 3).is_none());
        assert!(contained(&[], 0).is_none());
        assert_eq!(contained(&[inactive], 1).as_deref(), Some("why"));
    }
}
