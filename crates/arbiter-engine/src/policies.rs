//! Loading Cedar policies: parse, validate against an optional schema, and compile each policy
//! into the form the decision path needs (its full condition, its scope, what it references).

use crate::index::{checks_scope_of, PolicyIndex};
use crate::reach::{reach_of, reads_of, Reach, Reads};
use crate::schema::Schema;
use crate::source_error::{line_column, locate, SourceError};
use arbiter_core::Effect;
use cedar_policy_core::ast::{self, EntityUID, Expr, ExprKind, Literal, PolicyID};
use cedar_policy_core::parser::parse_policyset;
use cedar_policy_core::validator::{ValidationMode, Validator};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Annotation on a forbid policy that turns its denial into `approval_required`.
pub const APPROVAL_ANNOTATION: &str = "approval";
/// Annotation with the reason shown to the end user when the policy decides.
pub const REASON_ANNOTATION: &str = "reason";
/// Annotation listing signals (comma separated) without which the policy cannot be trusted.
pub const REQUIRES_SIGNALS_ANNOTATION: &str = "requires_signals";
/// Annotation naming a policy; used as its id instead of the position-based default.
pub const ID_ANNOTATION: &str = "id";
/// Marks a forbid policy as part of a named restricted overlay: it applies only to what a
/// `downgrade` control places under that overlay, never otherwise.
pub const OVERLAY_ANNOTATION: &str = "overlay";

/// Most brackets (`(`, `[`, `{`) one policy text may nest. Cedar's parser recurses once per
/// level, with frames of several kilobytes: about 150 levels overflow the 2 MiB stack of a
/// server's worker thread, which aborts the process. No policy a person writes comes close.
pub const MAX_BRACKET_NESTING: usize = 64;

/// Most levels one policy's conditions may nest (a chain of 200 `&&` is about 200 levels).
/// Cedar parses long chains without recursing, but compiling, explaining and printing a policy
/// walk its expression recursively: unoptimised, such a walk overflowed a 2 MiB stack at about
/// 470 levels (optimised, at about 4,000). A longer list of alternatives reads better as a set:
/// `["a", "b"].contains(principal.team)`.
pub const MAX_EXPRESSION_DEPTH: usize = 256;

/// One policy file's text and the name to report errors against.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// File name or other label.
    pub name: String,
    /// Cedar policy text.
    pub text: String,
}

/// A policy ready for the decision path.
///
/// The fields a decision reads for every candidate come first, in declared order (`repr(C)`),
/// and each policy starts a cache line: at 10,000 policies the candidates are cold, and these
/// then cost two cache misses per candidate instead of one per field.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct CompiledPolicy {
    /// The conditions alone (`true` when there are none), when the index checks the scope
    /// exactly: what a decision evaluates for a candidate (see `index`). `None` for a scope the
    /// index cannot check, evaluated in full. Without source locations, and sharing identical
    /// subexpressions with other policies (see `SharedExprs`).
    pub(crate) body: Option<Arc<Expr>>,
    /// The access paths the policy reads entities through: what the slice must hold. Shared
    /// by the policies that read the same (see `SharedExprs`).
    pub(crate) reads: Arc<Reads>,
    pub(crate) effect: Effect,
    pub(crate) id: String,
    pub(crate) required_signals: Vec<String>,
    pub(crate) approval: Option<String>,
    /// How far from the request's entities the policy reads: bounds the slice when `reads`
    /// cannot.
    pub(crate) reach: Reach,
    pub(crate) policy: ast::Policy,
    /// Scope and conditions as one expression, built once so the hot path allocates none.
    pub(crate) condition: Expr,
    /// Only the scope (principal, action, resource), for nearest-miss explanations.
    pub(crate) scope: Expr,
    pub(crate) annotations: BTreeMap<String, String>,
    /// Entity literals in the conditions; they must be in the per-request entity slice.
    pub(crate) literal_refs: Vec<EntityUID>,
    /// The overlay this policy belongs to (`@overlay`); such policies are not indexed.
    pub(crate) overlay: Option<String>,
}

/// A validated, compiled, indexed policy set. Immutable; a change is a new `PolicySet`.
#[derive(Debug)]
pub struct PolicySet {
    pub(crate) policies: Vec<CompiledPolicy>,
    pub(crate) index: PolicyIndex,
    /// Overlay name to its forbid policies.
    pub(crate) overlays: BTreeMap<String, Vec<u32>>,
    digest: String,
    version: u64,
    sources: Vec<PolicySource>,
}

impl PolicySet {
    /// Parses, validates (when a schema is given) and compiles policy sources.
    ///
    /// Policy ids are `@id("…")` when annotated, `policyN` (Cedar's own numbering) for a single
    /// source, and `<source>#policyN` when several sources are loaded together.
    pub fn compile(
        sources: Vec<PolicySource>,
        schema: Option<&Schema>,
        version: u64,
    ) -> Result<Self, PolicyError> {
        let mut policies = Vec::new();
        let mut seen_ids = HashSet::new();
        let prefix_ids = sources.len() > 1;
        let mut errors = Vec::new();
        let mut shared = SharedExprs::default();
        for source in &sources {
            if let Some(error) = too_deeply_bracketed(source) {
                errors.push(error);
                continue;
            }
            let parsed = match parse_policyset(&source.text) {
                Ok(parsed) => parsed,
                Err(parse_errors) => {
                    errors.extend(locate(&source.name, &source.text, &parse_errors));
                    continue;
                }
            };
            if let Some(template) = parsed.templates().next() {
                errors.push(SourceError::without_location(
                    &source.name,
                    format!(
                        "template `{}` is not supported yet: link it into static policies",
                        template.id()
                    ),
                ));
                continue;
            }
            if let Some(schema) = schema {
                let validator = Validator::new(schema.validator_schema().clone());
                let result = validator.validate(&parsed, ValidationMode::Strict);
                for validation_error in result.validation_errors() {
                    errors.extend(locate(&source.name, &source.text, validation_error));
                }
            }
            for policy in parsed.static_policies() {
                let id = policy_id(policy, &source.name, prefix_ids);
                let depth = expression_depth(&policy.condition());
                if depth > MAX_EXPRESSION_DEPTH {
                    errors.push(SourceError::without_location(
                        &source.name,
                        format!(
                            "policy `{id}` nests its conditions {depth} levels deep; at most \
                             {MAX_EXPRESSION_DEPTH} are accepted: split it into several policies"
                        ),
                    ));
                    continue;
                }
                if !seen_ids.insert(id.clone()) {
                    errors.push(SourceError::without_location(
                        &source.name,
                        format!("duplicate policy id `{id}`"),
                    ));
                    continue;
                }
                let compiled = compile_policy(policy, id, &mut shared);
                if compiled.overlay.is_some() && compiled.effect != Effect::Forbid {
                    // An overlay only restricts; a permit in one would grant what a downgrade
                    // is meant to take away.
                    errors.push(SourceError::without_location(
                        &source.name,
                        format!(
                            "policy `{}` is in an overlay (`@overlay`) but is not a forbid: \
                             overlays can only restrict",
                            compiled.id
                        ),
                    ));
                    continue;
                }
                policies.push(compiled);
            }
        }
        if !errors.is_empty() {
            return Err(PolicyError { errors });
        }
        let index = PolicyIndex::build(&policies);
        let mut overlays: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (idx, policy) in policies.iter().enumerate() {
            if let (Some(name), Ok(idx)) = (&policy.overlay, u32::try_from(idx)) {
                overlays.entry(name.clone()).or_default().push(idx);
            }
        }
        Ok(Self {
            policies,
            index,
            overlays,
            digest: digest(&sources),
            version,
            sources,
        })
    }

    /// An empty policy set: denies everything.
    pub fn empty() -> Self {
        Self {
            policies: Vec::new(),
            index: PolicyIndex::build(&[]),
            overlays: BTreeMap::new(),
            digest: digest(&[]),
            version: 0,
            sources: Vec::new(),
        }
    }

    /// Whether an overlay of this name exists (for checking a `downgrade` before placing it).
    pub fn has_overlay(&self, name: &str) -> bool {
        self.overlays.contains_key(name)
    }

    /// The overlays' names.
    pub fn overlay_names(&self) -> impl Iterator<Item = &str> {
        self.overlays.keys().map(String::as_str)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether there are no policies.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// SHA-256 over the sources (names and texts), hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The version this set was compiled as.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The sources it was compiled from.
    pub fn sources(&self) -> &[PolicySource] {
        &self.sources
    }

    /// Every action named in a policy scope, for action search.
    pub fn scoped_actions(&self) -> Vec<arbiter_core::EntityRef> {
        let mut actions: Vec<arbiter_core::EntityRef> = self
            .policies
            .iter()
            .flat_map(
                |policy| match policy.policy.template().action_constraint() {
                    cedar_policy_core::ast::ActionConstraint::Eq(action) => {
                        vec![action.as_ref().clone()]
                    }
                    cedar_policy_core::ast::ActionConstraint::In(actions) => actions
                        .iter()
                        .map(|action| action.as_ref().clone())
                        .collect(),
                    #[allow(
                        unreachable_patterns,
                        reason = "ErrorConstraint exists only with tolerant-ast"
                    )]
                    _ => Vec::new(),
                },
            )
            .map(|uid| crate::inventory::from_uid(&uid))
            .collect();
        actions.sort();
        actions.dedup();
        actions
    }

    /// Policy ids in load order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|policy| policy.id.as_str())
    }
}

/// Policies that failed to parse or validate, each with its file, line and column.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_errors(errors))]
pub struct PolicyError {
    /// Every problem found, not just the first.
    pub errors: Vec<SourceError>,
}

fn render_errors(errors: &[SourceError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn policy_id(policy: &ast::Policy, source_name: &str, prefix_ids: bool) -> String {
    let id_annotation = policy
        .annotations()
        .find(|(key, _)| key.as_ref() == ID_ANNOTATION);
    if let Some((_, annotation)) = id_annotation {
        return annotation.val.to_string();
    }
    if prefix_ids {
        format!("{source_name}#{}", policy.id())
    } else {
        policy.id().to_string()
    }
}

/// The first bracket nested deeper than `MAX_BRACKET_NESTING`, as an error at its place.
/// Brackets inside string literals and `//` comments do not count.
fn too_deeply_bracketed(source: &PolicySource) -> Option<SourceError> {
    let text = &source.text;
    let mut depth = 0usize;
    let mut chars = text.char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => {
                // To the closing quote; a backslash escapes the next character.
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek().is_some_and(|(_, next)| *next == '/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_BRACKET_NESTING {
                    let (line, column) = line_column(text, offset);
                    return Some(SourceError {
                        source_name: source.name.clone(),
                        line: Some(line),
                        column: Some(column),
                        message: format!(
                            "brackets nest more than {MAX_BRACKET_NESTING} levels deep here"
                        ),
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// How many levels `expr` nests, counted without recursing (it is checked before anything
/// walks it recursively).
fn expression_depth<'e>(expr: &'e Expr) -> usize {
    let mut deepest = 0;
    let mut pending: Vec<(&'e Expr, usize)> = vec![(expr, 1)];
    while let Some((expr, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        let mut push = |child: &'e Expr| pending.push((child, depth + 1));
        match expr.expr_kind() {
            ExprKind::If {
                test_expr,
                then_expr,
                else_expr,
            } => {
                push(test_expr);
                push(then_expr);
                push(else_expr);
            }
            ExprKind::And { left, right } | ExprKind::Or { left, right } => {
                push(left);
                push(right);
            }
            ExprKind::BinaryApp { arg1, arg2, .. } => {
                push(arg1);
                push(arg2);
            }
            ExprKind::UnaryApp { arg: expr, .. }
            | ExprKind::GetAttr { expr, .. }
            | ExprKind::HasAttr { expr, .. }
            | ExprKind::ExtHasAttr { expr, .. }
            | ExprKind::Like { expr, .. }
            | ExprKind::Is { expr, .. } => push(expr),
            ExprKind::ExtensionFunctionApp { args: items, .. } | ExprKind::Set(items) => {
                items.iter().for_each(&mut push);
            }
            ExprKind::Record(fields) => fields.values().for_each(&mut push),
            _ => {}
        }
    }
    deepest
}

/// Identical subexpressions of the policies' bodies, built once and shared (hash consing).
///
/// Why: a decision at 10,000 policies evaluates a handful of candidates picked at random, and
/// Cedar reads every node of each body (a node is 144 bytes, so two or three cache lines), so
/// most of a candidate's evaluation was waiting for memory. Policy sets repeat their
/// conditions (the same guardrail on every agent of a team, `context.mfa`, an owner check), and
/// a shared node read by many policies stays in the cache. A set whose conditions are all
/// different gains nothing and loses nothing.
///
/// Shared nodes carry no source location: one node stands for text in many policies. Cedar's
/// evaluation does not depend on locations and its error messages do not print them; the
/// explanations read the policy's own, located, copy.
#[derive(Default)]
struct SharedExprs {
    /// Cedar compares and hashes expressions by structure, ignoring locations.
    nodes: std::collections::HashMap<Expr, Arc<Expr>>,
    /// What policies read, shared the same way: most read the same few paths.
    reads: std::collections::HashMap<Reads, Arc<Reads>>,
}

impl SharedExprs {
    /// `expr`, rebuilt from shared nodes, bottom up.
    fn share(&mut self, expr: &Expr) -> Arc<Expr> {
        let kind = match expr.expr_kind() {
            ExprKind::If {
                test_expr,
                then_expr,
                else_expr,
            } => ExprKind::If {
                test_expr: self.share(test_expr),
                then_expr: self.share(then_expr),
                else_expr: self.share(else_expr),
            },
            ExprKind::And { left, right } => ExprKind::And {
                left: self.share(left),
                right: self.share(right),
            },
            ExprKind::Or { left, right } => ExprKind::Or {
                left: self.share(left),
                right: self.share(right),
            },
            ExprKind::UnaryApp { op, arg } => ExprKind::UnaryApp {
                op: *op,
                arg: self.share(arg),
            },
            ExprKind::BinaryApp { op, arg1, arg2 } => ExprKind::BinaryApp {
                op: *op,
                arg1: self.share(arg1),
                arg2: self.share(arg2),
            },
            ExprKind::ExtensionFunctionApp { fn_name, args } => ExprKind::ExtensionFunctionApp {
                fn_name: fn_name.clone(),
                args: Arc::new(args.iter().map(|arg| self.share_inline(arg)).collect()),
            },
            ExprKind::GetAttr { expr, attr } => ExprKind::GetAttr {
                expr: self.share(expr),
                attr: attr.clone(),
            },
            ExprKind::HasAttr { expr, attr } => ExprKind::HasAttr {
                expr: self.share(expr),
                attr: attr.clone(),
            },
            ExprKind::ExtHasAttr { expr, attrs } => ExprKind::ExtHasAttr {
                expr: self.share(expr),
                attrs: attrs.clone(),
            },
            ExprKind::Like { expr, pattern } => ExprKind::Like {
                expr: self.share(expr),
                pattern: pattern.clone(),
            },
            ExprKind::Is { expr, entity_type } => ExprKind::Is {
                expr: self.share(expr),
                entity_type: entity_type.clone(),
            },
            ExprKind::Set(items) => ExprKind::Set(Arc::new(
                items.iter().map(|item| self.share_inline(item)).collect(),
            )),
            ExprKind::Record(fields) => ExprKind::Record(Arc::new(
                fields
                    .iter()
                    .map(|(name, value)| (name.clone(), self.share_inline(value)))
                    .collect(),
            )),
            // Literals, variables, slots and unknowns have no subexpressions.
            other => other.clone(),
        };
        let node = <ast::ExprBuilder<()> as cedar_policy_core::expr_builder::ExprBuilder>::new()
            .with_expr_kind(kind);
        if let Some(existing) = self.nodes.get(&node) {
            return Arc::clone(existing);
        }
        let shared = Arc::new(node.clone());
        self.nodes.insert(node, Arc::clone(&shared));
        shared
    }

    fn share_reads(&mut self, reads: Reads) -> Arc<Reads> {
        Arc::clone(
            self.reads
                .entry(reads)
                .or_insert_with_key(|reads| Arc::new(reads.clone())),
        )
    }

    /// For the members of sets, records and argument lists, which Cedar holds inline: the node
    /// itself is a copy, its subexpressions are shared.
    fn share_inline(&mut self, expr: &Expr) -> Expr {
        self.share(expr).as_ref().clone()
    }
}

fn compile_policy(policy: &ast::Policy, id: String, shared: &mut SharedExprs) -> CompiledPolicy {
    let policy = policy.new_id(PolicyID::from_string(&id));
    let annotations: BTreeMap<String, String> = policy
        .annotations()
        .map(|(key, annotation)| (key.to_string(), annotation.val.to_string()))
        .collect();
    let effect = match policy.effect() {
        ast::Effect::Permit => Effect::Permit,
        ast::Effect::Forbid => Effect::Forbid,
    };
    // Only forbids can ask for approval: on a permit the annotation would mean nothing.
    let approval = match effect {
        Effect::Forbid => annotations.get(APPROVAL_ANNOTATION).cloned(),
        Effect::Permit => None,
    };
    let required_signals = annotations
        .get(REQUIRES_SIGNALS_ANNOTATION)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let template = policy.template();
    let scope = Expr::and(
        template.principal_constraint().as_expr(),
        Expr::and(
            template.action_constraint().as_expr(),
            template.resource_constraint().as_expr(),
        ),
    );
    let literal_refs = policy
        .non_scope_constraints()
        .map(entity_literals)
        .unwrap_or_default();
    let condition = policy.condition();
    let body = checks_scope_of(template).then(|| match policy.non_scope_constraints() {
        Some(conditions) => shared.share(conditions),
        None => shared.share(&Expr::val(true)),
    });
    let overlay = annotations.get(OVERLAY_ANNOTATION).cloned();
    CompiledPolicy {
        overlay,
        id,
        effect,
        reach: reach_of(&condition),
        reads: shared.share_reads(reads_of(&condition)),
        condition,
        body,
        scope,
        annotations,
        approval,
        required_signals,
        literal_refs,
        policy,
    }
}

fn entity_literals(expr: &Expr) -> Vec<EntityUID> {
    let mut found: Vec<EntityUID> = expr
        .subexpressions()
        .filter_map(|sub| match sub.expr_kind() {
            ExprKind::Lit(Literal::EntityUID(uid)) => Some(uid.as_ref().clone()),
            _ => None,
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

fn digest(sources: &[PolicySource]) -> String {
    let mut hasher = Sha256::new();
    for source in sources {
        // Length-prefix both parts so that moving text between name and body changes the digest.
        hasher.update((source.name.len() as u64).to_be_bytes());
        hasher.update(source.name.as_bytes());
        hasher.update((source.text.len() as u64).to_be_bytes());
        hasher.update(source.text.as_bytes());
    }
    hex(&hasher.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Shared so a snapshot clone never copies policies.
pub(crate) type SharedPolicySet = Arc<PolicySet>;
