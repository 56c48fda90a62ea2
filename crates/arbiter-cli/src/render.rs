//! Decisions as text for people.

use arbiter_core::{
    ConditionOutcome, ConditionTrace, Decision, DecisionRequest, HopTrace, Outcome, PolicyTraceRole,
};
use std::fmt::Write;

pub(crate) fn render_decision(
    request: &DecisionRequest,
    decision: &Decision,
    n_policies: usize,
) -> String {
    let mut out = String::new();
    let verdict = match decision.outcome {
        Outcome::Allow => "ALLOW",
        Outcome::Deny => "DENY",
        Outcome::ApprovalRequired => "APPROVAL REQUIRED",
    };
    let _ = writeln!(
        out,
        "{verdict}  {} -> {} -> {}",
        request.subject.entity, request.action.name, request.resource.entity
    );
    let _ = writeln!(out, "  decision id   {}", decision.id);
    let _ = writeln!(out, "  why           {}", decision.reason_admin);
    let _ = writeln!(out, "  user is told  {}", decision.reason_user);
    if !decision.ignored_properties.is_empty() {
        let _ = writeln!(
            out,
            "  ignored       {} (the inventory's facts win)",
            decision.ignored_properties.join(", ")
        );
    }
    for (position, hop) in decision.hops.iter().enumerate() {
        render_hop(&mut out, hop, position, decision.hops.len(), n_policies);
    }
    out
}

fn render_hop(out: &mut String, hop: &HopTrace, position: usize, n_hops: usize, n_policies: usize) {
    let label = if n_hops > 1 {
        format!("hop {}/{n_hops} ", position + 1)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  {label}{}: {} ({} of {n_policies} policies evaluated)",
        hop.principal,
        hop.outcome.as_str(),
        hop.candidates
    );
    if let Some(guard) = &hop.guard {
        let _ = writeln!(
            out,
            "    guard: {}",
            serde_json::to_string(guard).unwrap_or_default()
        );
    }
    for trace in &hop.explanation.policies {
        let role = match trace.role {
            PolicyTraceRole::Determining => "determining",
            PolicyTraceRole::NearestMiss => "nearest miss",
            PolicyTraceRole::Errored => "errored",
        };
        let effect = match trace.effect {
            arbiter_core::Effect::Permit => "permit",
            arbiter_core::Effect::Forbid => "forbid",
        };
        let _ = writeln!(out, "    {role}: {effect} `{}`", trace.id);
        for condition in &trace.conditions {
            render_condition(out, condition, 3);
        }
    }
}

fn render_condition(out: &mut String, condition: &ConditionTrace, depth: usize) {
    let mark = match condition.outcome {
        ConditionOutcome::Held => "✓",
        ConditionOutcome::Failed => "✗",
        ConditionOutcome::Errored => "!",
        ConditionOutcome::NotEvaluated => "·",
    };
    let indent = "  ".repeat(depth);
    let mut line = format!("{indent}{mark} {}", condition.source);
    if !condition.seen.is_empty() {
        let seen: Vec<String> = condition
            .seen
            .iter()
            .map(|seen| format!("{} = {}", seen.expr, seen.value))
            .collect();
        let _ = write!(line, "    [{}]", seen.join("; "));
    }
    if let Some(error) = &condition.error {
        let _ = write!(line, "    [error: {error}]");
    }
    if condition.outcome == ConditionOutcome::NotEvaluated {
        line.push_str("    (not evaluated)");
    }
    let _ = writeln!(out, "{line}");
    for part in &condition.parts {
        render_condition(out, part, depth + 1);
    }
}
