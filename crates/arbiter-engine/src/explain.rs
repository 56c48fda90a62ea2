//! Condition-level explanations: for a policy and a request, which conditions held or failed,
//! in Cedar's evaluation order (`&&` and `||` short-circuit), and the values they saw.
//!
//! Cedar itself reports only the ids of determining policies. Arbiter re-evaluates the parts of
//! the few policies worth explaining (determining, erroring, nearest misses) with Cedar's own
//! evaluator, so an explanation can never disagree with the evaluation it explains.

use crate::decide::as_bool;
use crate::policies::CompiledPolicy;
use arbiter_core::{ConditionOutcome, ConditionTrace, PolicyTrace, PolicyTraceRole, SeenValue};
use cedar_policy_core::ast::{
    ActionConstraint, Expr, ExprKind, PrincipalOrResourceConstraint, UnaryOp,
};
use cedar_policy_core::evaluator::Evaluator;

/// Longest rendering of one seen value; longer ones are cut with `…`.
const MAX_VALUE_CHARS: usize = 160;
/// Most sub-expression values reported per condition.
const MAX_SEEN_PER_CONDITION: usize = 4;

pub(crate) fn explain_policy(
    evaluator: &Evaluator<'_>,
    policy: &CompiledPolicy,
    role: PolicyTraceRole,
) -> PolicyTrace {
    let mut conditions = Vec::new();
    let mut blocked = false;
    let template = policy.policy.template();
    let scope_parts = [
        (
            !matches!(
                template.principal_constraint().as_inner(),
                PrincipalOrResourceConstraint::Any
            ),
            template.principal_constraint().to_string(),
            template.principal_constraint().as_expr(),
        ),
        (
            !matches!(template.action_constraint(), ActionConstraint::Any),
            template.action_constraint().to_string(),
            template.action_constraint().as_expr(),
        ),
        (
            !matches!(
                template.resource_constraint().as_inner(),
                PrincipalOrResourceConstraint::Any
            ),
            template.resource_constraint().to_string(),
            template.resource_constraint().as_expr(),
        ),
    ];
    for (constrained, source, expr) in scope_parts {
        if !constrained {
            continue;
        }
        let mut trace = if blocked {
            not_evaluated(source)
        } else {
            let mut trace = evaluate(evaluator, policy, &expr, &mut Vec::new());
            trace.source = source;
            trace
        };
        blocked |= trace.outcome != ConditionOutcome::Held;
        trace.seen.clear();
        conditions.push(trace);
    }
    if let Some(body) = policy.policy.non_scope_constraints() {
        let mut conjuncts = Vec::new();
        flatten(body, &mut conjuncts, |kind| match kind {
            ExprKind::And { left, right } => Some((left.as_ref(), right.as_ref())),
            _ => None,
        });
        for conjunct in conjuncts {
            let trace = if blocked {
                not_evaluated(source_of(conjunct))
            } else {
                trace_condition(evaluator, policy, conjunct)
            };
            blocked |= trace.outcome != ConditionOutcome::Held;
            conditions.push(trace);
        }
    }
    PolicyTrace {
        id: policy.id.clone(),
        effect: policy.effect,
        role,
        conditions,
    }
}

/// Permits whose scope matched but whose conditions did not, nearest first (most conditions
/// held before the first failure).
pub(crate) fn nearest_misses(
    evaluator: &Evaluator<'_>,
    permits: &[&CompiledPolicy],
    limit: usize,
) -> Vec<PolicyTrace> {
    if limit == 0 {
        return Vec::new();
    }
    let mut traces: Vec<(usize, PolicyTrace)> = permits
        .iter()
        .filter(|policy| {
            evaluator
                .interpret(&policy.scope, policy.policy.env())
                .ok()
                .and_then(|value| as_bool(&value))
                .unwrap_or(false)
        })
        .map(|policy| {
            let trace = explain_policy(evaluator, policy, PolicyTraceRole::NearestMiss);
            let held = trace
                .conditions
                .iter()
                .take_while(|condition| condition.outcome == ConditionOutcome::Held)
                .count();
            (held, trace)
        })
        .collect();
    // Stable sort keeps policy order among equally near misses.
    traces.sort_by(|(held_a, _), (held_b, _)| held_b.cmp(held_a));
    traces
        .into_iter()
        .take(limit)
        .map(|(_, trace)| trace)
        .collect()
}

/// The first condition that did not hold, rendered with the values it saw.
pub(crate) fn first_failure(trace: &PolicyTrace) -> Option<String> {
    let condition = trace
        .conditions
        .iter()
        .find(|condition| condition.outcome != ConditionOutcome::Held)?;
    let mut text = format!("`{}`", condition.source);
    let seen: Vec<String> = condition
        .seen
        .iter()
        .map(|seen| format!("{} = {}", seen.expr, seen.value))
        .collect();
    if !seen.is_empty() {
        text.push_str(&format!(" ({})", seen.join(", ")));
    }
    if let Some(error) = &condition.error {
        text.push_str(&format!(" (error: {error})"));
    }
    Some(text)
}

fn trace_condition(
    evaluator: &Evaluator<'_>,
    policy: &CompiledPolicy,
    expr: &Expr,
) -> ConditionTrace {
    if let ExprKind::Or { .. } = expr.expr_kind() {
        let mut disjuncts = Vec::new();
        flatten(expr, &mut disjuncts, |kind| match kind {
            ExprKind::Or { left, right } => Some((left.as_ref(), right.as_ref())),
            _ => None,
        });
        let mut parts = Vec::new();
        let mut decided: Option<ConditionOutcome> = None;
        for disjunct in disjuncts {
            if decided.is_some() {
                parts.push(not_evaluated(source_of(disjunct)));
                continue;
            }
            let part = trace_condition(evaluator, policy, disjunct);
            match part.outcome {
                ConditionOutcome::Held => decided = Some(ConditionOutcome::Held),
                ConditionOutcome::Errored => decided = Some(ConditionOutcome::Errored),
                _ => {}
            }
            parts.push(part);
        }
        return ConditionTrace {
            source: source_of(expr),
            outcome: decided.unwrap_or(ConditionOutcome::Failed),
            seen: Vec::new(),
            error: None,
            parts,
        };
    }
    let mut operands = Vec::new();
    collect_operands(expr, &mut operands);
    let mut trace = evaluate(evaluator, policy, expr, &mut operands);
    trace.source = source_of(expr);
    trace
}

fn evaluate(
    evaluator: &Evaluator<'_>,
    policy: &CompiledPolicy,
    expr: &Expr,
    operands: &mut Vec<&Expr>,
) -> ConditionTrace {
    let (outcome, error) = match evaluator.interpret(expr, policy.policy.env()) {
        Ok(value) => match as_bool(&value) {
            Some(true) => (ConditionOutcome::Held, None),
            Some(false) => (ConditionOutcome::Failed, None),
            None => (
                ConditionOutcome::Errored,
                Some(format!("not a boolean: {}", truncate(value.to_string()))),
            ),
        },
        Err(err) => (ConditionOutcome::Errored, Some(err.to_string())),
    };
    let seen = operands
        .drain(..)
        .take(MAX_SEEN_PER_CONDITION)
        .map(|operand| SeenValue {
            expr: source_of(operand),
            value: match evaluator.interpret(operand, policy.policy.env()) {
                Ok(value) => truncate(value.to_string()),
                Err(err) => format!("error: {err}"),
            },
        })
        .collect();
    ConditionTrace {
        source: String::new(),
        outcome,
        seen,
        error,
        parts: Vec::new(),
    }
}

/// The sub-expressions worth showing the values of: the non-literal operands of a comparison,
/// a function call, an attribute test or a negation.
fn collect_operands<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    let mut push = |operand: &'a Expr| {
        if !matches!(operand.expr_kind(), ExprKind::Lit(_)) {
            out.push(operand);
        }
    };
    match expr.expr_kind() {
        ExprKind::BinaryApp { arg1, arg2, .. } => {
            push(arg1);
            push(arg2);
        }
        ExprKind::UnaryApp {
            op: UnaryOp::Not,
            arg,
        } => collect_operands(arg, out),
        ExprKind::UnaryApp { arg, .. } => push(arg),
        ExprKind::ExtensionFunctionApp { args, .. } => {
            for arg in args.iter() {
                push(arg);
            }
        }
        ExprKind::GetAttr { .. } | ExprKind::Var(_) => push(expr),
        // `has` already says all there is to say; showing the whole record would be noise.
        ExprKind::HasAttr { .. } | ExprKind::ExtHasAttr { .. } => {}
        ExprKind::Like { expr: inner, .. } | ExprKind::Is { expr: inner, .. } => push(inner),
        _ => {}
    }
}

fn flatten<'a>(
    expr: &'a Expr,
    out: &mut Vec<&'a Expr>,
    split: impl Fn(&'a ExprKind) -> Option<(&'a Expr, &'a Expr)> + Copy,
) {
    match split(expr.expr_kind()) {
        Some((left, right)) => {
            flatten(left, out, split);
            flatten(right, out, split);
        }
        None => out.push(expr),
    }
}

fn not_evaluated(source: String) -> ConditionTrace {
    ConditionTrace {
        source,
        outcome: ConditionOutcome::NotEvaluated,
        seen: Vec::new(),
        error: None,
        parts: Vec::new(),
    }
}

/// The expression as written in the policy file, or Cedar's rendering when there is no source.
fn source_of(expr: &Expr) -> String {
    expr.source_loc()
        .and_then(|loc| loc.snippet())
        .map(|snippet| snippet.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| expr.to_string())
}

fn truncate(text: String) -> String {
    if text.chars().count() <= MAX_VALUE_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
    cut.push('…');
    cut
}
