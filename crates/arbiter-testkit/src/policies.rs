//! Policy generation: every scope shape the engine's index keys on, and conditions over the
//! attributes real NHI policies read, some of which error at runtime on purpose.

use crate::model::{
    actions_in, Inventory, PrincipalType, ResourceType, ACTIONS, DEPARTMENTS, TAGS, TEAMS,
};
use crate::pick;
use arbiter_core::{Effect, EntityRef};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt::Write;

/// Who a policy's scope names.
#[derive(Debug, Clone)]
pub(crate) enum PrincipalScope {
    Any,
    /// An identity, by index.
    Eq(usize),
    /// A group, by index.
    In(usize),
    Is(PrincipalType),
    IsIn(PrincipalType, usize),
}

/// Which actions a policy's scope names.
#[derive(Debug, Clone)]
pub(crate) enum ActionScope {
    Any,
    Eq(&'static str),
    InList(Vec<&'static str>),
    /// An action group (`readonly`, `mutating`, `admin`).
    InGroup(&'static str),
}

/// What a policy's scope says about the resource.
#[derive(Debug, Clone)]
pub(crate) enum ResourceScope {
    Any,
    /// A resource, by index.
    Eq(usize),
    /// A server, by index: the server itself and the tools in it.
    In(usize),
    Is(ResourceType),
    IsIn(ResourceType, usize),
}

/// One generated policy: its scope (kept so requests can be aimed at it) and its text.
#[derive(Debug, Clone)]
pub(crate) struct PolicySpec {
    pub(crate) principal: PrincipalScope,
    pub(crate) action: ActionScope,
    pub(crate) resource: ResourceScope,
    pub(crate) text: String,
}

/// How many policies are broad guardrails (unconstrained or type-only principal and resource):
/// a bounded layer, as in real deployments, where the per-identity and per-group policies are
/// what grows with the organisation. Every other policy names a principal, a group or a
/// resource.
pub fn broad_policy_count(n_policies: usize) -> usize {
    if n_policies < 4 {
        0
    } else {
        (n_policies / 25).clamp(1, 20)
    }
}

pub(crate) fn generate_policies(
    rng: &mut ChaCha8Rng,
    inventory: &Inventory,
    n_policies: usize,
) -> Vec<PolicySpec> {
    let n_broad = broad_policy_count(n_policies);
    let mut is_broad: Vec<bool> = (0..n_policies).map(|idx| idx < n_broad).collect();
    is_broad.shuffle(rng);
    is_broad
        .into_iter()
        .map(|broad| {
            if broad {
                broad_policy(rng, inventory)
            } else {
                scoped_policy(rng, inventory)
            }
        })
        .collect()
}

fn broad_policy(rng: &mut ChaCha8Rng, inventory: &Inventory) -> PolicySpec {
    let effect = if rng.gen_bool(0.5) {
        Effect::Forbid
    } else {
        Effect::Permit
    };
    let principal = if rng.gen_bool(0.5) {
        PrincipalScope::Any
    } else {
        PrincipalScope::Is(random_principal_type(rng))
    };
    let resource = if rng.gen_bool(0.6) {
        ResourceScope::Any
    } else {
        ResourceScope::Is(random_resource_type(rng))
    };
    let action = action_scope(rng);
    // A broad policy without a condition would decide whole classes of requests alone; a broad
    // forbid is a guardrail against a risky combination, which few requests present.
    let mut clauses = Vec::new();
    if effect == Effect::Forbid {
        clauses.push(("when", risk(rng)));
        if rng.gen_bool(0.5) {
            clauses.push(random_clause(rng, inventory));
        }
    } else {
        for _ in 0..rng.gen_range(1..=2) {
            clauses.push(random_clause(rng, inventory));
        }
    }
    finish(rng, inventory, effect, principal, action, resource, clauses)
}

fn scoped_policy(rng: &mut ChaCha8Rng, inventory: &Inventory) -> PolicySpec {
    let effect = if rng.gen_bool(0.72) {
        Effect::Permit
    } else {
        Effect::Forbid
    };
    let roll = rng.gen_range(0..100);
    let (principal, resource) = if roll < 72 {
        // Most policies name an identity or one of its groups.
        let principal = match roll {
            0..=29 => PrincipalScope::Eq(rng.gen_range(0..inventory.identities.len().max(1))),
            30..=61 => PrincipalScope::In(random_group(rng, inventory)),
            _ => PrincipalScope::IsIn(random_principal_type(rng), random_group(rng, inventory)),
        };
        let resource = match rng.gen_range(0..100) {
            0..=44 => ResourceScope::Any,
            45..=64 => ResourceScope::Is(random_resource_type(rng)),
            65..=79 => ResourceScope::In(random_server(rng, inventory)),
            80..=94 => ResourceScope::Eq(rng.gen_range(0..inventory.resources.len().max(1))),
            _ => ResourceScope::IsIn(ResourceType::Tool, random_server(rng, inventory)),
        };
        (principal, resource)
    } else {
        // The rest name a resource or a server, for any principal or a type of principal.
        let principal = if rng.gen_bool(0.75) {
            PrincipalScope::Any
        } else {
            PrincipalScope::Is(random_principal_type(rng))
        };
        let resource = match rng.gen_range(0..100) {
            0..=39 => ResourceScope::Eq(rng.gen_range(0..inventory.resources.len().max(1))),
            40..=74 => ResourceScope::In(random_server(rng, inventory)),
            _ => ResourceScope::IsIn(ResourceType::Tool, random_server(rng, inventory)),
        };
        (principal, resource)
    };
    let action = action_scope(rng);
    // Unconditional forbids are rare: a forbid usually says "not in these circumstances".
    let n_clauses = match (rng.gen_range(0..10), effect) {
        (0..=1, Effect::Permit) => 0,
        (0..=6, _) => 1,
        _ => 2,
    };
    let clauses = (0..n_clauses)
        .map(|_| random_clause(rng, inventory))
        .collect();
    finish(rng, inventory, effect, principal, action, resource, clauses)
}

fn random_clause(rng: &mut ChaCha8Rng, inventory: &Inventory) -> (&'static str, String) {
    let keyword = if rng.gen_bool(0.75) { "when" } else { "unless" };
    (keyword, clause(rng, inventory))
}

/// A risky combination a guardrail forbids; each holds for roughly one request in eight.
fn risk(rng: &mut ChaCha8Rng) -> String {
    match rng.gen_range(0..6) {
        0 => "resource.sensitivity_level >= 2 && !context.mfa",
        1 => "context.hour < 6 && resource.sensitivity_level >= 1",
        2 => "principal.lifecycle != \"active\"",
        3 => "resource.tags.contains(\"secrets\") || resource.tags.contains(\"pii\")",
        4 => "resource has env && resource.env == \"prod\" && !context.mfa",
        _ => "context has optional_field && context.optional_field == \"none\"",
    }
    .to_owned()
}

fn finish(
    rng: &mut ChaCha8Rng,
    inventory: &Inventory,
    effect: Effect,
    principal: PrincipalScope,
    action: ActionScope,
    resource: ResourceScope,
    clauses: Vec<(&'static str, String)>,
) -> PolicySpec {
    let mut text = String::new();
    if effect == Effect::Forbid && rng.gen_bool(0.3) {
        text.push_str("@reason(\"blocked by a generated guardrail\")\n");
    }
    let keyword = match effect {
        Effect::Permit => "permit",
        Effect::Forbid => "forbid",
    };
    let _ = write!(
        text,
        "{keyword}(\n  {},\n  {},\n  {}\n)",
        principal_text(inventory, &principal),
        action_text(&action),
        resource_text(inventory, &resource)
    );
    for (keyword, condition) in clauses {
        let _ = write!(text, "\n{keyword} {{ {condition} }}");
    }
    text.push(';');
    PolicySpec {
        principal,
        action,
        resource,
        text,
    }
}

fn random_principal_type(rng: &mut ChaCha8Rng) -> PrincipalType {
    pick(rng, &PrincipalType::ALL)
        .copied()
        .unwrap_or(PrincipalType::Agent)
}

fn random_resource_type(rng: &mut ChaCha8Rng) -> ResourceType {
    pick(rng, &ResourceType::ALL)
        .copied()
        .unwrap_or(ResourceType::Tool)
}

/// A group index; now and then the dangling group (`groups.len()`).
fn random_group(rng: &mut ChaCha8Rng, inventory: &Inventory) -> usize {
    if rng.gen_bool(0.03) {
        inventory.groups.len()
    } else {
        rng.gen_range(0..inventory.groups.len().max(1))
    }
}

fn random_server(rng: &mut ChaCha8Rng, inventory: &Inventory) -> usize {
    pick(rng, inventory.resources_of_type(ResourceType::McpServer))
        .copied()
        .unwrap_or(0)
}

fn action_scope(rng: &mut ChaCha8Rng) -> ActionScope {
    match rng.gen_range(0..100) {
        0..=44 => ActionScope::Eq(pick(rng, ACTIONS).copied().unwrap_or("read")),
        45..=69 => {
            let n_actions = rng.gen_range(2..=3);
            let mut actions: Vec<&'static str> =
                ACTIONS.choose_multiple(rng, n_actions).copied().collect();
            // A list may name an action group too.
            if rng.gen_bool(0.2) {
                actions.push(if rng.gen_bool(0.5) {
                    "readonly"
                } else {
                    "mutating"
                });
            }
            actions.sort_unstable();
            ActionScope::InList(actions)
        }
        70..=89 => ActionScope::InGroup(match rng.gen_range(0..100) {
            0..=44 => "readonly",
            45..=79 => "mutating",
            _ => "admin",
        }),
        _ => ActionScope::Any,
    }
}

/// The actions a scope admits (all of them when it is unconstrained).
pub(crate) fn admitted_actions(scope: &ActionScope) -> Vec<&'static str> {
    match scope {
        ActionScope::Any => ACTIONS.to_vec(),
        ActionScope::Eq(action) => vec![action],
        ActionScope::InList(actions) => {
            let mut admitted: Vec<&'static str> = actions
                .iter()
                .flat_map(|action| match actions_in(action) {
                    members if members.is_empty() => vec![*action],
                    members => members,
                })
                .collect();
            admitted.sort_unstable();
            admitted.dedup();
            admitted
        }
        ActionScope::InGroup(group) => actions_in(group),
    }
}

/// A Cedar entity literal, with the id escaped.
pub(crate) fn literal(entity: &EntityRef) -> String {
    format!("{}::\"{}\"", entity.entity_type, escape(&entity.id))
}

/// Cedar string escaping: only the quote and the backslash need it; other text is taken as is.
pub(crate) fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn identity_literal(inventory: &Inventory, identity_idx: usize) -> String {
    match inventory.identities.get(identity_idx) {
        Some(identity) => literal(&identity.entity_ref()),
        None => "Agent::\"missing\"".to_owned(),
    }
}

fn resource_literal(inventory: &Inventory, resource_idx: usize) -> String {
    match inventory.resources.get(resource_idx) {
        Some(resource) => literal(&resource.entity_ref()),
        None => "Tool::\"missing\"".to_owned(),
    }
}

fn principal_text(inventory: &Inventory, scope: &PrincipalScope) -> String {
    match scope {
        PrincipalScope::Any => "principal".to_owned(),
        PrincipalScope::Eq(idx) => format!("principal == {}", identity_literal(inventory, *idx)),
        PrincipalScope::In(group) => {
            format!("principal in {}", literal(&inventory.group_ref(*group)))
        }
        PrincipalScope::Is(principal_type) => {
            format!("principal is {}", principal_type.cedar_type())
        }
        PrincipalScope::IsIn(principal_type, group) => format!(
            "principal is {} in {}",
            principal_type.cedar_type(),
            literal(&inventory.group_ref(*group))
        ),
    }
}

fn action_text(scope: &ActionScope) -> String {
    let action = |name: &str| format!("Action::\"{name}\"");
    match scope {
        ActionScope::Any => "action".to_owned(),
        ActionScope::Eq(name) => format!("action == {}", action(name)),
        ActionScope::InList(names) => {
            let list: Vec<String> = names.iter().map(|name| action(name)).collect();
            format!("action in [{}]", list.join(", "))
        }
        ActionScope::InGroup(group) => format!("action in {}", action(group)),
    }
}

fn resource_text(inventory: &Inventory, scope: &ResourceScope) -> String {
    match scope {
        ResourceScope::Any => "resource".to_owned(),
        ResourceScope::Eq(idx) => format!("resource == {}", resource_literal(inventory, *idx)),
        ResourceScope::In(server) => {
            format!("resource in {}", resource_literal(inventory, *server))
        }
        ResourceScope::Is(resource_type) => format!("resource is {}", resource_type.cedar_type()),
        ResourceScope::IsIn(resource_type, server) => format!(
            "resource is {} in {}",
            resource_type.cedar_type(),
            resource_literal(inventory, *server)
        ),
    }
}

/// One `when`/`unless` body: an atom, or two or three combined with `&&`, `||` and `!`.
fn clause(rng: &mut ChaCha8Rng, inventory: &Inventory) -> String {
    match rng.gen_range(0..100) {
        0..=44 => atom(rng, inventory),
        45..=64 => format!("({}) && ({})", atom(rng, inventory), atom(rng, inventory)),
        65..=84 => format!("({}) || ({})", atom(rng, inventory), atom(rng, inventory)),
        85..=91 => format!("!({})", atom(rng, inventory)),
        _ => format!(
            "(({}) || ({})) && ({})",
            atom(rng, inventory),
            atom(rng, inventory),
            atom(rng, inventory)
        ),
    }
}

/// One condition. Those marked "errors" fail at runtime on some requests, by design: Cedar
/// skips an erroring policy and reports it, and the engine must do exactly the same.
fn atom(rng: &mut ChaCha8Rng, inventory: &Inventory) -> String {
    let group = literal(&inventory.group_ref(random_group(rng, inventory)));
    let server = resource_literal(inventory, random_server(rng, inventory));
    let tag = pick(rng, TAGS).copied().unwrap_or("pii");
    let team = pick(rng, TEAMS).copied().unwrap_or("platform");
    let department = pick(rng, DEPARTMENTS).copied().unwrap_or("finance");
    match rng.gen_range(0..40) {
        0 => format!("principal.tier >= {}", rng.gen_range(0..4)),
        1 => format!("resource.sensitivity_level <= {}", rng.gen_range(1..4)),
        2 => format!(
            "context.hour >= {} && context.hour < {}",
            rng.gen_range(5..10),
            rng.gen_range(16..22)
        ),
        3 => "context.mfa".to_owned(),
        // Errors when the principal has no owner (humans, some orphans).
        4 => "resource.owner == principal.owner".to_owned(),
        5 => "principal has owner && resource.owner == principal.owner".to_owned(),
        // Dereferences the owner entity; errors without an owner or for a departed one.
        6 => format!("principal.owner.department == \"{department}\""),
        7 => format!("resource.tags.contains(\"{tag}\")"),
        8 => format!("principal in {group}"),
        9 => "principal has clearance && principal.clearance >= resource.sensitivity_level"
            .to_owned(),
        // Errors for the half of identities without a clearance.
        10 => format!("principal.clearance >= {}", rng.gen_range(0..3)),
        // Errors when the caller leaves the field out.
        11 => "context.optional_field == \"break-glass\"".to_owned(),
        12 => "context has optional_field && context.optional_field like \"ticket-*\"".to_owned(),
        13 => "if resource.sensitivity_level >= 2 then context.mfa else true".to_owned(),
        14 => "principal.lifecycle == \"active\"".to_owned(),
        // Long overflow for tiers of 2 and above.
        15 => "principal.tier * 4611686018427387904 >= 0".to_owned(),
        // Long overflow for hours of 10 and above.
        16 => "context.hour * 1000000000000000000 <= 9000000000000000000".to_owned(),
        // Errors for resources without an `env`.
        17 => "resource.env == \"prod\"".to_owned(),
        18 => "resource has env && resource.env != \"prod\"".to_owned(),
        19 => format!("context has requester && context.requester in {group}"),
        // Errors when there is no requester, or a departed one.
        20 => "context.requester.team == principal.team".to_owned(),
        21 => format!("principal.team == \"{team}\""),
        // Errors when the address is missing or malformed.
        22 => "ip(context.source_ip).isInRange(ip(\"10.0.0.0/8\"))".to_owned(),
        // Reads an attribute of an entity literal; errors for groups without `min_tier`.
        23 => format!("principal.tier >= {group}.min_tier"),
        24 => format!("resource is Tool && resource in {server}"),
        // Dereferences the resource's owner; errors for a departed one.
        25 => "resource.owner.team == principal.team".to_owned(),
        26 => {
            "principal has owner && principal.owner has clearance && principal.owner.clearance >= 2"
                .to_owned()
        }
        27 => "principal.kind == \"ai_agent\" || principal.kind == \"workload\"".to_owned(),
        28 => format!("resource.tags.containsAny([\"{tag}\", \"secrets\"])"),
        29 => format!("principal.owner in {group}"),
        30 => format!("principal.team like \"{}*\"", team.get(..2).unwrap_or("p")),
        31 => "context.hour > principal.tier * 4".to_owned(),
        // Walks the org chart: principal -> owner -> manager.
        32 => format!(
            "principal.owner has manager && principal.owner.manager.department == \"{department}\""
        ),
        33 => "context has device && context.device.trusted".to_owned(),
        // Errors when the caller sends no scopes.
        34 => "context.scopes.contains(\"repo:write\")".to_owned(),
        35 => "context has client_ip && resource has network && context.client_ip.isInRange(resource.network)".to_owned(),
        36 => "context has risk && context.risk.lessThan(decimal(\"0.5\"))".to_owned(),
        37 => "principal has meta && principal.meta.ephemeral".to_owned(),
        38 => "action in Action::\"mutating\" && resource.sensitivity_level >= 2".to_owned(),
        _ => "context has at && context.at < datetime(\"2026-06-01\")".to_owned(),
    }
}
