//! The generator: deterministic, and its output is what Cedar and Arbiter accept.

use arbiter_testkit::{generate, WorkloadConfig};
use std::str::FromStr;

const CONFIG: WorkloadConfig = WorkloadConfig {
    seed: 7,
    identities: 300,
    groups: 30,
    resources: 90,
    policies: 200,
};

#[test]
fn same_seed_same_workload_and_requests() {
    let first = generate(&CONFIG);
    let second = generate(&CONFIG);
    assert_eq!(first.policies_text, second.policies_text);
    assert_eq!(first.entities, second.entities);
    assert_eq!(first.requests(1, 500), second.requests(1, 500));
    assert_ne!(first.requests(1, 500), first.requests(2, 500));
    let other = generate(&WorkloadConfig { seed: 8, ..CONFIG });
    assert_ne!(first.policies_text, other.policies_text);
}

#[test]
fn policies_and_entities_parse() {
    let workload = generate(&CONFIG);
    let policies = cedar_policy::PolicySet::from_str(&workload.policies_text).unwrap();
    assert_eq!(policies.policies().count(), 200);
    let entities =
        cedar_policy::Entities::from_json_value(workload.entities.clone(), None).unwrap();
    // Identities, groups, resources, and five actions with three action groups.
    assert_eq!(entities.iter().count(), 300 + 30 + 90 + 8);
    for request in workload.requests(3, 200) {
        request.to_cedar_request().unwrap();
    }
}

/// Every scope shape the engine's index keys on, and every condition feature the brief lists,
/// appears in a 200-policy workload.
#[test]
fn policies_cover_every_scope_shape_and_condition_feature() {
    let text = generate(&CONFIG).policies_text;
    for needle in [
        "permit(",
        "forbid(",
        "principal == ",
        "principal in Group::",
        "principal is Agent,",
        " in Group::\"grp-",
        "  principal,",
        "action == Action::",
        "action in [Action::",
        "action in Action::\"readonly\"",
        "  action,",
        "resource == ",
        "resource in McpServer::",
        "resource is Dataset",
        "resource is Tool in McpServer::",
        "  resource\n",
        "when {",
        "unless {",
        "principal.tier",
        "resource.sensitivity_level",
        "context.hour",
        "context.mfa",
        "resource.owner == principal.owner",
        "principal.owner.department",
        "resource.tags.contains(",
        "principal in Group::",
        " has ",
        " || ",
        " && ",
        "!(",
        "if resource.sensitivity_level",
        "context.optional_field ==",
        "4611686018427387904",
        "context.requester",
        "ip(context.source_ip)",
        ".min_tier",
        "Group::\"legacy-admins\"",
        "principal.owner.manager.department",
        "context.device.trusted",
        "context.scopes.contains(",
        "isInRange(resource.network)",
        "decimal(\"0.5\")",
        "datetime(",
        "principal.meta.ephemeral",
        "action in Action::\"mutating\" &&",
    ] {
        assert!(text.contains(needle), "no policy contains `{needle}`");
    }
}
