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
//!
//! A distance is one bound for every root, so one policy reading `principal.owner.team` would
//! make a slice take the references of every root (the resource's owner, the context's
//! entities, the entity literals' attributes) one step out. [`reads_of`] is the finer
//! analysis the decision uses when it can: the access paths a policy dereferences, each an
//! origin (the principal, the action, the resource, the context or an entity literal) and the
//! attributes and tags followed from it. A slice then takes only the entities at the end of
//! those paths (see `slice` in `decide.rs`); where the analysis cannot follow a value (a record
//! literal holding entities, template slots), the policy keeps the distance bound.

use cedar_policy_core::ast::{BinaryOp, EntityUID, Expr, ExprKind, Literal, Var};
use smol_str::SmolStr;

/// How deep a policy reads: entities within this distance of the roots must be in the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// Where an access path starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    Principal,
    Action,
    Resource,
    /// The context record: its fields are the first steps.
    Context,
    /// An entity literal in the policy.
    Literal(EntityUID),
}

/// One step of an access path: an attribute (of an entity, or a field of a record) or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    Attr(SmolStr),
    Tag(SmolStr),
    /// `getTag` with a key computed at evaluation time: any of the entity's tags.
    AnyTag,
}

/// An access path whose value, where it is an entity, has its data read by the policy: that
/// entity must be in the slice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Path {
    pub(crate) origin: Origin,
    pub(crate) steps: Box<[Step]>,
}

/// What a policy reads beyond the request's principal, action and resource (which every
/// slice holds).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Reads {
    /// Exactly the entities these paths lead to (and nothing when empty).
    Paths(Box<[Path]>),
    /// Values the analysis cannot follow: the slice falls back to the distance bound.
    Depth(Reach),
}

/// The entities one condition can read, as access paths when they can be followed.
pub(crate) fn reads_of(condition: &Expr) -> Reads {
    let mut read = Vec::new();
    if paths(condition, &mut read).is_none() {
        return Reads::Depth(reach_of(condition));
    }
    // Every slice holds the principal, the action and the resource, and the context is a
    // record, not an entity: reading one of them at no step adds nothing.
    let mut kept: Vec<Path> = Vec::new();
    for path in read {
        let trivial = path.steps.is_empty() && !matches!(path.origin, Origin::Literal(_));
        if !trivial && !kept.contains(&path) {
            kept.push(path);
        }
    }
    Reads::Paths(kept.into_boxed_slice())
}

/// The access paths whose value `expr` may be (where that value may be an entity or a record
/// holding one), recording in `read` the paths whose entity data it reads. `None` when a
/// value cannot be followed.
fn paths(expr: &Expr, read: &mut Vec<Path>) -> Option<Vec<Path>> {
    let origin = |origin: Origin| {
        Some(vec![Path {
            origin,
            steps: Box::new([]),
        }])
    };
    let extend = |values: Vec<Path>, step: &Step| -> Vec<Path> {
        values
            .into_iter()
            .map(|path| {
                let mut steps = path.steps.into_vec();
                steps.push(step.clone());
                Path {
                    origin: path.origin,
                    steps: steps.into_boxed_slice(),
                }
            })
            .collect()
    };
    match expr.expr_kind() {
        ExprKind::Lit(Literal::EntityUID(uid)) => origin(Origin::Literal(uid.as_ref().clone())),
        ExprKind::Lit(_) => Some(Vec::new()),
        ExprKind::Var(Var::Principal) => origin(Origin::Principal),
        ExprKind::Var(Var::Action) => origin(Origin::Action),
        ExprKind::Var(Var::Resource) => origin(Origin::Resource),
        ExprKind::Var(Var::Context) => origin(Origin::Context),
        ExprKind::Slot(_) | ExprKind::Unknown(_) => None,
        ExprKind::If {
            test_expr,
            then_expr,
            else_expr,
        } => {
            paths(test_expr, read)?;
            let mut values = paths(then_expr, read)?;
            values.extend(paths(else_expr, read)?);
            Some(values)
        }
        ExprKind::And { left, right } | ExprKind::Or { left, right } => {
            paths(left, read)?;
            paths(right, read)?;
            Some(Vec::new())
        }
        ExprKind::UnaryApp { arg, .. } => {
            paths(arg, read)?;
            Some(Vec::new())
        }
        ExprKind::BinaryApp { op, arg1, arg2 } => {
            let first = paths(arg1, read)?;
            paths(arg2, read)?;
            match op {
                // `in` reads the first operand's ancestors; tags are the first operand's data.
                BinaryOp::In | BinaryOp::HasTag => {
                    read.extend(first);
                    Some(Vec::new())
                }
                BinaryOp::GetTag => {
                    let step = match arg2.expr_kind() {
                        ExprKind::Lit(Literal::String(tag)) => Step::Tag(tag.clone()),
                        _ => Step::AnyTag,
                    };
                    read.extend(first.iter().cloned());
                    Some(extend(first, &step))
                }
                // Comparisons and set operations look at values (uids), not at entity data.
                BinaryOp::Eq
                | BinaryOp::Less
                | BinaryOp::LessEq
                | BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Contains
                | BinaryOp::ContainsAll
                | BinaryOp::ContainsAny => Some(Vec::new()),
            }
        }
        ExprKind::ExtensionFunctionApp { args, .. } => {
            for arg in args.iter() {
                paths(arg, read)?;
            }
            Some(Vec::new())
        }
        ExprKind::GetAttr { expr, attr } => {
            let inner = paths(expr, read)?;
            read.extend(inner.iter().cloned());
            Some(extend(inner, &Step::Attr(attr.clone())))
        }
        ExprKind::HasAttr { expr, .. } => {
            let inner = paths(expr, read)?;
            read.extend(inner);
            Some(Vec::new())
        }
        // `e has a.b.c` reads `e`, then `e.a`, then `e.a.b`.
        ExprKind::ExtHasAttr { expr, attrs } => {
            let mut values = paths(expr, read)?;
            let mut attrs = attrs.iter().peekable();
            while let Some(attr) = attrs.next() {
                read.extend(values.iter().cloned());
                if attrs.peek().is_some() {
                    values = extend(values, &Step::Attr(attr.clone()));
                }
            }
            Some(Vec::new())
        }
        ExprKind::Like { expr, .. } | ExprKind::Is { expr, .. } => {
            paths(expr, read)?;
            Some(Vec::new())
        }
        // No operator takes an element out of a set, so entities in a set literal are never
        // read through it.
        ExprKind::Set(items) => {
            for item in items.iter() {
                paths(item, read)?;
            }
            Some(Vec::new())
        }
        // A record literal's fields can be read back (`{a: principal.owner}.a.team`); rather
        // than follow them, give up when one may hold an entity.
        ExprKind::Record(fields) => {
            for field in fields.values() {
                if !paths(field, read)?.is_empty() {
                    return None;
                }
            }
            Some(Vec::new())
        }
        #[allow(
            unreachable_patterns,
            reason = "ExprKind::Error exists only with Cedar's tolerant-ast feature"
        )]
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy_core::parser::parse_policy;

    fn reads(condition: &str) -> Vec<String> {
        let text = format!("permit(principal, action, resource) when {{ {condition} }};");
        let policy = parse_policy(None, &text).unwrap();
        match reads_of(&policy.condition()) {
            Reads::Depth(reach) => vec![format!("depth {reach:?}")],
            Reads::Paths(paths) => paths
                .iter()
                .map(|path| {
                    let mut text = match &path.origin {
                        Origin::Principal => "principal".to_owned(),
                        Origin::Action => "action".to_owned(),
                        Origin::Resource => "resource".to_owned(),
                        Origin::Context => "context".to_owned(),
                        Origin::Literal(uid) => uid.to_string(),
                    };
                    for step in path.steps.iter() {
                        match step {
                            Step::Attr(attr) => text.push_str(&format!(".{attr}")),
                            Step::Tag(tag) => text.push_str(&format!("[tag {tag}]")),
                            Step::AnyTag => text.push_str("[any tag]"),
                        }
                    }
                    text
                })
                .collect(),
        }
    }

    #[test]
    fn follows_each_path_a_policy_reads() {
        let none: Vec<String> = Vec::new();
        assert_eq!(reads("true"), none);
        assert_eq!(reads("principal == resource"), none);
        assert_eq!(
            reads("principal.team == \"x\" && principal in Group::\"g\""),
            none
        );
        assert_eq!(reads("resource.owner == principal.owner"), none);
        assert_eq!(
            reads("principal.owner.department == \"x\""),
            ["principal.owner"]
        );
        assert_eq!(
            reads("principal.owner has manager && principal.owner.manager.department == \"d\""),
            ["principal.owner", "principal.owner.manager"]
        );
        assert_eq!(
            reads("principal.owner in Group::\"g\""),
            ["principal.owner"]
        );
        assert_eq!(reads("context.user.manager == principal"), ["context.user"]);
        assert_eq!(
            reads("context.user.manager.team == \"t\""),
            ["context.user", "context.user.manager"]
        );
        assert_eq!(reads("context has user.team"), ["context.user"]);
        assert_eq!(reads("principal has owner.department"), ["principal.owner"]);
        assert_eq!(
            reads("principal has meta.owner.team"),
            ["principal.meta", "principal.meta.owner"]
        );
        assert_eq!(
            reads("principal.getTag(\"x\").team == \"t\""),
            ["principal[tag x]"]
        );
        assert_eq!(
            reads("principal.getTag(context.key).team == \"t\""),
            ["principal[any tag]"]
        );
        assert_eq!(
            reads("(if context.flag then principal.owner else resource).team == \"t\""),
            ["principal.owner"]
        );
        assert_eq!(reads("[principal.owner].contains(resource)"), none);
        assert_eq!(
            reads("Human::\"h\".manager in Group::\"g\""),
            ["Human::\"h\"", "Human::\"h\".manager"]
        );
        assert_eq!(
            reads("principal.tier >= Group::\"g\".min_tier"),
            ["Group::\"g\""]
        );
        assert_eq!(reads("context.device.trusted"), ["context.device"]);
        // A record literal holding an entity: fall back to the distance bound.
        assert_eq!(
            reads("{a: principal.owner}.a.team == \"t\""),
            ["depth Within(2)"]
        );
        assert_eq!(reads("{a: 1}.a == 1"), none);
    }

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
