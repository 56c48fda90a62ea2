//! How far from a request's own entities a policy can read.
//!
//! Cedar reads an entity's data (attributes, tags, ancestors) only through `.`, `has`, `in`,
//! `getTag` and `hasTag`. The request's roots (principal, action, resource, the entities in the
//! context and the policy's entity literals) sit at distance 0; an entity named by a root's
//! attribute sits at distance 1, and so on. If no candidate policy reads an entity beyond
//! distance `d`, a slice of the entities within distance `d` of the roots evaluates exactly as
//! the whole inventory does (an entity that is never read cannot change a result).
//!
//! The analysis is syntactic and over-approximates: without types, a record field access
//! counts as a step away from the roots, which only makes slices larger, never wrong.

use cedar_policy_core::ast::{BinaryOp, Expr, ExprKind, Literal, Var};

/// How deep a policy reads: entities within this distance of the roots must be in the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reach {
    /// Reads entities at most this far from the roots (0: only the roots themselves).
    Within(u32),
    /// Cannot be bounded (template slots, unknowns): the slice takes everything reachable.
    Unbounded,
}

/// The reach of one condition.
pub(crate) fn reach_of(condition: &Expr) -> Reach {
    match depth(condition) {
        Some(depth) => Reach::Within(u32::try_from(depth.reads.max(0)).unwrap_or(u32::MAX)),
        None => Reach::Unbounded,
    }
}

/// Distances as signed numbers so that "no entity" (-1) composes with `+ 1` and `max`.
#[derive(Clone, Copy)]
struct Depth {
    /// The farthest distance at which the expression reads an entity's data; -1 if none.
    reads: i64,
    /// The farthest distance of an entity the value may hold (or whose fields may hold one,
    /// for records); -1 if none beyond the roots' level (`context` is -1: its fields hold
    /// entities at distance 0).
    value: i64,
}

const NONE: i64 = -1;

fn plain(reads: i64) -> Depth {
    Depth { reads, value: NONE }
}

/// `None` when the expression holds something that cannot be bounded.
fn depth(expr: &Expr) -> Option<Depth> {
    Some(match expr.expr_kind() {
        ExprKind::Lit(Literal::EntityUID(_)) => Depth {
            reads: NONE,
            value: 0,
        },
        ExprKind::Lit(_) => plain(NONE),
        ExprKind::Var(Var::Context) => plain(NONE),
        ExprKind::Var(_) => Depth {
            reads: NONE,
            value: 0,
        },
        ExprKind::Slot(_) | ExprKind::Unknown(_) => return None,
        ExprKind::If {
            test_expr,
            then_expr,
            else_expr,
        } => {
            let (test, then, otherwise) = (depth(test_expr)?, depth(then_expr)?, depth(else_expr)?);
            Depth {
                reads: test.reads.max(then.reads).max(otherwise.reads),
                value: then.value.max(otherwise.value),
            }
        }
        ExprKind::And { left, right } | ExprKind::Or { left, right } => {
            plain(depth(left)?.reads.max(depth(right)?.reads))
        }
        ExprKind::UnaryApp { arg, .. } => plain(depth(arg)?.reads),
        ExprKind::BinaryApp { op, arg1, arg2 } => {
            let (first, second) = (depth(arg1)?, depth(arg2)?);
            let reads = first.reads.max(second.reads);
            match op {
                // `in` reads the first operand's ancestors; tags are the first operand's data.
                BinaryOp::In | BinaryOp::HasTag => plain(reads.max(first.value)),
                BinaryOp::GetTag => Depth {
                    reads: reads.max(first.value),
                    value: first.value + 1,
                },
                BinaryOp::Eq
                | BinaryOp::Less
                | BinaryOp::LessEq
                | BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Contains
                | BinaryOp::ContainsAll
                | BinaryOp::ContainsAny => plain(reads),
            }
        }
        // Extension values hold no entities.
        ExprKind::ExtensionFunctionApp { args, .. } => {
            let mut reads = NONE;
            for arg in args.iter() {
                reads = reads.max(depth(arg)?.reads);
            }
            plain(reads)
        }
        ExprKind::GetAttr { expr, .. } => {
            let inner = depth(expr)?;
            Depth {
                reads: inner.reads.max(inner.value),
                value: inner.value + 1,
            }
        }
        ExprKind::HasAttr { expr, .. } => {
            let inner = depth(expr)?;
            plain(inner.reads.max(inner.value))
        }
        // `e has a.b.c` reads `e`, then `e.a`, then `e.a.b`.
        ExprKind::ExtHasAttr { expr, attrs } => {
            let inner = depth(expr)?;
            let steps = i64::try_from(attrs.len()).unwrap_or(i64::MAX);
            plain(inner.reads.max(inner.value.saturating_add(steps - 1)))
        }
        ExprKind::Like { expr, .. } | ExprKind::Is { expr, .. } => plain(depth(expr)?.reads),
        ExprKind::Set(items) => {
            let mut combined = plain(NONE);
            for item in items.iter() {
                let item = depth(item)?;
                combined.reads = combined.reads.max(item.reads);
                combined.value = combined.value.max(item.value);
            }
            combined
        }
        ExprKind::Record(fields) => {
            let mut combined = plain(NONE);
            for field in fields.values() {
                let field = depth(field)?;
                combined.reads = combined.reads.max(field.reads);
                combined.value = combined.value.max(field.value);
            }
            combined
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy_core::parser::parse_policy;

    fn reach(condition: &str) -> Reach {
        let text = format!("permit(principal, action, resource) when {{ {condition} }};");
        let policy = parse_policy(None, &text).unwrap();
        reach_of(&policy.condition())
    }

    #[test]
    fn counts_each_step_away_from_the_roots() {
        assert_eq!(reach("true"), Reach::Within(0));
        assert_eq!(reach("principal == resource"), Reach::Within(0));
        assert_eq!(reach("principal.team == \"x\""), Reach::Within(0));
        assert_eq!(
            reach("principal.owner.department == \"x\""),
            Reach::Within(1)
        );
        assert_eq!(
            reach("principal.owner has manager && principal.owner.manager.department == \"d\""),
            Reach::Within(2)
        );
        // `in` reads the left operand's ancestors.
        assert_eq!(reach("principal.owner in Group::\"g\""), Reach::Within(1));
        assert_eq!(reach("principal in Group::\"g\""), Reach::Within(0));
        // Context fields hold roots; their attributes are one step away.
        assert_eq!(reach("context.user.manager == principal"), Reach::Within(0));
        assert_eq!(
            reach("context.user.manager.team == \"t\""),
            Reach::Within(1)
        );
        assert_eq!(reach("context has user.team"), Reach::Within(0));
        assert_eq!(reach("principal has owner.department"), Reach::Within(1));
        assert_eq!(
            reach("principal.getTag(\"x\").team == \"t\""),
            Reach::Within(1)
        );
        assert_eq!(
            reach("(if context.flag then principal.owner else resource).team == \"t\""),
            Reach::Within(1)
        );
        assert_eq!(
            reach("[principal.owner].contains(resource)"),
            Reach::Within(0)
        );
        assert_eq!(
            reach("Human::\"h\".manager in Group::\"g\""),
            Reach::Within(1)
        );
    }
}
