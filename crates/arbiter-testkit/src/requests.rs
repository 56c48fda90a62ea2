//! Request generation. Most requests are aimed at a policy, so that its scope matches and its
//! conditions decide; the rest are random, and a few name entities nobody has heard of.

use crate::model::{entity_value, Inventory, PrincipalType, ResourceType, ACTIONS};
use crate::policies::{admitted_actions, ActionScope, PolicySpec, PrincipalScope, ResourceScope};
use crate::{pick, GeneratedRequest};
use arbiter_core::EntityRef;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

const OPTIONAL_FIELDS: &[&str] = &["break-glass", "ticket-1234", "ticket-77", "none"];
const SOURCE_IPS: &[&str] = &[
    "10.1.2.3",
    "10.200.0.9",
    "192.168.1.7",
    "8.8.8.8",
    "not-an-ip",
];
const SCOPES: &[&str] = &["repo:read", "repo:write", "issues:write", "admin"];

pub(crate) fn generate_requests(
    rng: &mut ChaCha8Rng,
    inventory: &Inventory,
    policies: &[PolicySpec],
    n_requests: usize,
) -> Vec<GeneratedRequest> {
    (0..n_requests)
        .map(|_| generate_request(rng, inventory, policies))
        .collect()
}

fn generate_request(
    rng: &mut ChaCha8Rng,
    inventory: &Inventory,
    policies: &[PolicySpec],
) -> GeneratedRequest {
    let target = if rng.gen_bool(0.75) {
        pick(rng, policies)
    } else {
        None
    };
    let (mut principal, mut action, mut resource) = match target {
        Some(policy) => (
            principal_for(rng, inventory, &policy.principal),
            action_for(rng, &policy.action),
            resource_for(rng, inventory, &policy.resource),
        ),
        None => (
            random_identity(rng, inventory),
            pick(rng, ACTIONS).copied().unwrap_or("read"),
            random_resource(rng, inventory),
        ),
    };
    // Unknown principals, resources and actions: Cedar sees entities that do not exist.
    if rng.gen_bool(0.03) {
        principal = EntityRef::new("Agent", format!("ghost-{}", rng.gen_range(0..1000)));
    }
    if rng.gen_bool(0.03) {
        let resource_type = if rng.gen_bool(0.5) { "Tool" } else { "Dataset" };
        resource = EntityRef::new(resource_type, format!("ghost-{}", rng.gen_range(0..1000)));
    }
    // An action no entity describes, or an action group used as the action itself.
    if rng.gen_bool(0.01) {
        action = "list";
    } else if rng.gen_bool(0.01) {
        action = if rng.gen_bool(0.5) {
            "readonly"
        } else {
            "admin"
        };
    }
    GeneratedRequest {
        principal,
        action: EntityRef::new("Action", action),
        resource,
        context: context(rng, inventory),
    }
}

fn context(rng: &mut ChaCha8Rng, inventory: &Inventory) -> Map<String, Value> {
    let mut context = Map::new();
    context.insert("hour".to_owned(), json!(rng.gen_range(0..24)));
    context.insert("mfa".to_owned(), json!(rng.gen_bool(0.7)));
    if rng.gen_bool(0.5) {
        let field = pick(rng, OPTIONAL_FIELDS).copied().unwrap_or("none");
        context.insert("optional_field".to_owned(), json!(field));
    }
    if rng.gen_bool(0.3) {
        // An entity reference in the context, as Cedar's `__entity` escape.
        let requester = if rng.gen_bool(0.05) {
            format!("departed-{}", rng.gen_range(0..100))
        } else {
            pick(rng, inventory.humans())
                .and_then(|idx| inventory.identities.get(*idx))
                .map_or_else(|| "departed-0".to_owned(), |human| human.id.clone())
        };
        context.insert("requester".to_owned(), entity_value("Human", &requester));
    }
    if rng.gen_bool(0.6) {
        let ip = pick(rng, SOURCE_IPS).copied().unwrap_or("10.1.2.3");
        context.insert("source_ip".to_owned(), json!(ip));
    }
    // Records, sets and extension values: every shape of context value.
    if rng.gen_bool(0.4) {
        let os = if rng.gen_bool(0.5) { "linux" } else { "macos" };
        context.insert(
            "device".to_owned(),
            json!({"trusted": rng.gen_bool(0.6), "os": os}),
        );
    }
    if rng.gen_bool(0.5) {
        let scopes: Vec<&str> = SCOPES
            .iter()
            .copied()
            .filter(|_| rng.gen_bool(0.5))
            .collect();
        context.insert("scopes".to_owned(), json!(scopes));
    }
    if rng.gen_bool(0.3) {
        let valid_ips = SOURCE_IPS.get(..4).unwrap_or(SOURCE_IPS);
        let ip = pick(rng, valid_ips).copied().unwrap_or("10.1.2.3");
        context.insert(
            "client_ip".to_owned(),
            json!({"__extn": {"fn": "ip", "arg": ip}}),
        );
    }
    if rng.gen_bool(0.3) {
        let risk = format!("0.{:02}", rng.gen_range(0..100));
        context.insert(
            "risk".to_owned(),
            json!({"__extn": {"fn": "decimal", "arg": risk}}),
        );
    }
    if rng.gen_bool(0.2) {
        let at = format!("2026-{:02}-15", rng.gen_range(1..=12));
        context.insert(
            "at".to_owned(),
            json!({"__extn": {"fn": "datetime", "arg": at}}),
        );
    }
    context
}

fn identity_ref(inventory: &Inventory, identity_idx: usize) -> Option<EntityRef> {
    inventory
        .identities
        .get(identity_idx)
        .map(|identity| identity.entity_ref())
}

fn random_identity(rng: &mut ChaCha8Rng, inventory: &Inventory) -> EntityRef {
    pick(rng, &inventory.identities).map_or_else(
        || EntityRef::new("Agent", "missing"),
        |identity| identity.entity_ref(),
    )
}

fn random_of_type(
    rng: &mut ChaCha8Rng,
    inventory: &Inventory,
    principal_type: PrincipalType,
) -> EntityRef {
    pick(rng, inventory.of_type(principal_type))
        .and_then(|idx| identity_ref(inventory, *idx))
        .unwrap_or_else(|| random_identity(rng, inventory))
}

fn principal_for(rng: &mut ChaCha8Rng, inventory: &Inventory, scope: &PrincipalScope) -> EntityRef {
    let members = |group: &usize| inventory.members.get(*group).map_or(&[][..], Vec::as_slice);
    match scope {
        PrincipalScope::Any => random_identity(rng, inventory),
        PrincipalScope::Eq(idx) => {
            identity_ref(inventory, *idx).unwrap_or_else(|| random_identity(rng, inventory))
        }
        PrincipalScope::In(group) => pick(rng, members(group))
            .and_then(|idx| identity_ref(inventory, *idx))
            .unwrap_or_else(|| random_identity(rng, inventory)),
        PrincipalScope::Is(principal_type) => random_of_type(rng, inventory, *principal_type),
        PrincipalScope::IsIn(principal_type, group) => {
            let of_type: Vec<usize> = members(group)
                .iter()
                .copied()
                .filter(|idx| {
                    inventory
                        .identities
                        .get(*idx)
                        .is_some_and(|identity| identity.principal_type == *principal_type)
                })
                .collect();
            // No member of that type: a member of another type, or one of the type outside
            // the group, so that the scope is sometimes false for a near miss.
            match pick(rng, &of_type).and_then(|idx| identity_ref(inventory, *idx)) {
                Some(principal) => principal,
                None if rng.gen_bool(0.5) => pick(rng, members(group))
                    .and_then(|idx| identity_ref(inventory, *idx))
                    .unwrap_or_else(|| random_of_type(rng, inventory, *principal_type)),
                None => random_of_type(rng, inventory, *principal_type),
            }
        }
    }
}

fn action_for(rng: &mut ChaCha8Rng, scope: &ActionScope) -> &'static str {
    pick(rng, &admitted_actions(scope))
        .copied()
        .unwrap_or("read")
}

fn resource_ref(inventory: &Inventory, resource_idx: usize) -> Option<EntityRef> {
    inventory
        .resources
        .get(resource_idx)
        .map(|resource| resource.entity_ref())
}

fn random_resource(rng: &mut ChaCha8Rng, inventory: &Inventory) -> EntityRef {
    pick(rng, &inventory.resources).map_or_else(
        || EntityRef::new("Tool", "missing"),
        |resource| resource.entity_ref(),
    )
}

fn resource_for(rng: &mut ChaCha8Rng, inventory: &Inventory, scope: &ResourceScope) -> EntityRef {
    let tool_of = |rng: &mut ChaCha8Rng, server: &usize| {
        inventory
            .tools_of
            .get(*server)
            .and_then(|tools| pick(rng, tools))
            .and_then(|idx| resource_ref(inventory, *idx))
    };
    match scope {
        ResourceScope::Any => random_resource(rng, inventory),
        ResourceScope::Eq(idx) => {
            resource_ref(inventory, *idx).unwrap_or_else(|| random_resource(rng, inventory))
        }
        ResourceScope::In(server) => {
            // The server itself now and then, usually one of its tools.
            let tool = if rng.gen_bool(0.8) {
                tool_of(rng, server)
            } else {
                None
            };
            tool.or_else(|| resource_ref(inventory, *server))
                .unwrap_or_else(|| random_resource(rng, inventory))
        }
        ResourceScope::Is(resource_type) => pick(rng, inventory.resources_of_type(*resource_type))
            .and_then(|idx| resource_ref(inventory, *idx))
            .unwrap_or_else(|| random_resource(rng, inventory)),
        ResourceScope::IsIn(_, server) => tool_of(rng, server)
            .or_else(|| {
                pick(rng, inventory.resources_of_type(ResourceType::Tool))
                    .and_then(|idx| resource_ref(inventory, *idx))
            })
            .unwrap_or_else(|| random_resource(rng, inventory)),
    }
}
