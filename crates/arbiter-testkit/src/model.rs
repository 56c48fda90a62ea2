//! The generated inventory: identities, groups, resources and actions, kept as plain data so
//! that the same facts can be rendered as Cedar entities JSON and as an Arbiter
//! [`InventoryDocument`], and so that requests can be aimed at what the policies name.

use crate::pick;
use arbiter_core::{
    EntityRef, Group, Identity, IdentityKind, InventoryDocument, Lifecycle, Resource, Sensitivity,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// Teams, departments and tags are drawn from small pools so that conditions naming one of
/// them are true for a useful share of requests.
pub(crate) const TEAMS: &[&str] = &["platform", "payments", "data", "security", "growth", "ml"];
pub(crate) const DEPARTMENTS: &[&str] = &["engineering", "finance", "research", "operations"];
pub(crate) const TAGS: &[&str] = &[
    "pii",
    "finance",
    "prod",
    "internal",
    "experimental",
    "customer",
    "secrets",
];
pub(crate) const ENVS: &[&str] = &["prod", "staging", "dev"];
pub(crate) const NETWORKS: &[&str] = &["10.0.0.0/8", "192.168.0.0/16", "10.200.0.0/16"];
/// A group identities are members of but which the inventory does not define.
pub(crate) const DANGLING_GROUP: &str = "legacy-admins";

/// Actions and the groups they belong to; `admin` contains `mutating`, so the action hierarchy
/// has two levels.
pub(crate) const ACTIONS: &[&str] = &["read", "write", "call_tool", "delete", "deploy"];
pub(crate) const ACTION_GROUPS: &[(&str, &[&str])] = &[
    ("readonly", &["read", "call_tool"]),
    ("mutating", &["write", "delete", "deploy"]),
    // `admin` holds `deploy` directly and everything else through `mutating`.
    ("admin", &["deploy"]),
];

/// The principal entity types, in the order [`PrincipalType::ALL`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalType {
    Agent,
    ServiceAccount,
    Workload,
    Human,
}

impl PrincipalType {
    pub(crate) const ALL: [PrincipalType; 4] = [
        PrincipalType::Agent,
        PrincipalType::ServiceAccount,
        PrincipalType::Workload,
        PrincipalType::Human,
    ];

    pub(crate) fn kind(self) -> IdentityKind {
        match self {
            PrincipalType::Agent => IdentityKind::AiAgent,
            PrincipalType::ServiceAccount => IdentityKind::ServiceAccount,
            PrincipalType::Workload => IdentityKind::Workload,
            PrincipalType::Human => IdentityKind::Human,
        }
    }

    pub(crate) fn cedar_type(self) -> &'static str {
        self.kind().cedar_type()
    }

    fn id_prefix(self) -> &'static str {
        match self {
            PrincipalType::Agent => "agent",
            PrincipalType::ServiceAccount => "svc",
            PrincipalType::Workload => "wl",
            PrincipalType::Human => "human",
        }
    }
}

/// The resource entity types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceType {
    Tool,
    Dataset,
    McpServer,
}

impl ResourceType {
    pub(crate) const ALL: [ResourceType; 3] = [
        ResourceType::Tool,
        ResourceType::Dataset,
        ResourceType::McpServer,
    ];

    pub(crate) fn cedar_type(self) -> &'static str {
        match self {
            ResourceType::Tool => "Tool",
            ResourceType::Dataset => "Dataset",
            ResourceType::McpServer => "McpServer",
        }
    }
}

pub(crate) struct GeneratedIdentity {
    pub(crate) principal_type: PrincipalType,
    pub(crate) id: String,
    /// A `Human` id; sometimes one that is not in the inventory (a departed owner).
    pub(crate) owner: Option<String>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) tier: i64,
    pub(crate) team: &'static str,
    /// Only some identities have one: conditions that read it without `has` error on the rest.
    pub(crate) clearance: Option<i64>,
    /// Humans only.
    pub(crate) department: Option<&'static str>,
    /// Humans only: another human, so that policies can walk an org chart.
    pub(crate) manager: Option<String>,
    /// Some identities carry a record: `{created_by, ephemeral}`.
    pub(crate) meta: Option<(&'static str, bool)>,
    /// Indices into [`Inventory::groups`]; `groups.len()` is the dangling group.
    pub(crate) groups: Vec<usize>,
}

impl GeneratedIdentity {
    pub(crate) fn entity_ref(&self) -> EntityRef {
        EntityRef::new(self.principal_type.cedar_type(), &self.id)
    }

    /// Attributes other than the ones Arbiter sets itself (`kind`, `lifecycle`, `owner`).
    fn free_attributes(&self) -> Map<String, Value> {
        let mut attrs = Map::new();
        attrs.insert("tier".to_owned(), json!(self.tier));
        attrs.insert("team".to_owned(), json!(self.team));
        if let Some(clearance) = self.clearance {
            attrs.insert("clearance".to_owned(), json!(clearance));
        }
        if let Some(department) = self.department {
            attrs.insert("department".to_owned(), json!(department));
        }
        if let Some(manager) = &self.manager {
            attrs.insert("manager".to_owned(), entity_value("Human", manager));
        }
        if let Some((created_by, ephemeral)) = self.meta {
            attrs.insert(
                "meta".to_owned(),
                json!({"created_by": created_by, "ephemeral": ephemeral}),
            );
        }
        attrs
    }
}

pub(crate) struct GeneratedGroup {
    pub(crate) id: String,
    /// Indices of the parent groups (at most two levels above).
    pub(crate) parents: Vec<usize>,
    pub(crate) min_tier: Option<i64>,
}

pub(crate) struct GeneratedResource {
    pub(crate) resource_type: ResourceType,
    pub(crate) id: String,
    pub(crate) sensitivity: Sensitivity,
    pub(crate) owner: String,
    pub(crate) tags: Vec<&'static str>,
    pub(crate) env: Option<&'static str>,
    /// Servers only, sometimes: the network they accept calls from, an `ip` extension value.
    pub(crate) network: Option<&'static str>,
    /// Indices of the `McpServer` resources a tool belongs to.
    pub(crate) servers: Vec<usize>,
}

impl GeneratedResource {
    pub(crate) fn entity_ref(&self) -> EntityRef {
        EntityRef::new(self.resource_type.cedar_type(), &self.id)
    }

    fn free_attributes(&self) -> Map<String, Value> {
        let mut attrs = Map::new();
        attrs.insert("owner".to_owned(), entity_value("Human", &self.owner));
        attrs.insert("tags".to_owned(), json!(self.tags));
        if let Some(env) = self.env {
            attrs.insert("env".to_owned(), json!(env));
        }
        if let Some(network) = self.network {
            attrs.insert(
                "network".to_owned(),
                json!({"__extn": {"fn": "ip", "arg": network}}),
            );
        }
        attrs
    }
}

/// Everything the policies and requests can name.
pub(crate) struct Inventory {
    pub(crate) identities: Vec<GeneratedIdentity>,
    pub(crate) groups: Vec<GeneratedGroup>,
    pub(crate) resources: Vec<GeneratedResource>,
    /// Identity indices by principal type, in [`PrincipalType::ALL`] order.
    pub(crate) by_type: [Vec<usize>; 4],
    /// Resource indices by resource type, in [`ResourceType::ALL`] order.
    pub(crate) resources_by_type: [Vec<usize>; 3],
    /// For each group, the identities in it directly or through a sub-group.
    pub(crate) members: Vec<Vec<usize>>,
    /// For each resource, the tools inside it (non-empty only for servers).
    pub(crate) tools_of: Vec<Vec<usize>>,
}

/// Sizes the generator works with: at least one of every kind, so that every policy shape can
/// be written whatever the configuration asks for.
pub(crate) struct Sizes {
    pub(crate) identities: usize,
    pub(crate) groups: usize,
    pub(crate) resources: usize,
}

impl Inventory {
    pub(crate) fn generate(rng: &mut ChaCha8Rng, sizes: &Sizes) -> Self {
        let groups = generate_groups(rng, sizes.groups.max(1));
        let n_identities = sizes.identities.max(PrincipalType::ALL.len());
        // One in ten is a human; every other identity is owned by one.
        let n_humans = (n_identities / 10).max(1);
        let mut identities = Vec::with_capacity(n_identities);
        for human_idx in 0..n_humans {
            identities.push(generate_identity(
                rng,
                PrincipalType::Human,
                human_idx,
                n_humans,
                &groups,
            ));
        }
        let non_human = [
            PrincipalType::Agent,
            PrincipalType::ServiceAccount,
            PrincipalType::Workload,
        ];
        for idx in 0..n_identities - n_humans {
            let principal_type = match non_human.get(idx % 3) {
                // The first three cover every type; after that the mix leans towards agents.
                Some(principal_type) if idx < 3 => *principal_type,
                _ => match rng.gen_range(0..100) {
                    0..=39 => PrincipalType::Agent,
                    40..=71 => PrincipalType::ServiceAccount,
                    _ => PrincipalType::Workload,
                },
            };
            identities.push(generate_identity(
                rng,
                principal_type,
                idx,
                n_humans,
                &groups,
            ));
        }
        let resources =
            generate_resources(rng, sizes.resources.max(ResourceType::ALL.len()), n_humans);

        let mut by_type: [Vec<usize>; 4] = Default::default();
        for (idx, identity) in identities.iter().enumerate() {
            let slot = PrincipalType::ALL
                .iter()
                .position(|t| *t == identity.principal_type);
            if let Some(list) = slot.and_then(|slot| by_type.get_mut(slot)) {
                list.push(idx);
            }
        }
        let mut resources_by_type: [Vec<usize>; 3] = Default::default();
        let mut tools_of: Vec<Vec<usize>> = vec![Vec::new(); resources.len()];
        for (idx, resource) in resources.iter().enumerate() {
            let slot = ResourceType::ALL
                .iter()
                .position(|t| *t == resource.resource_type);
            if let Some(list) = slot.and_then(|slot| resources_by_type.get_mut(slot)) {
                list.push(idx);
            }
            for server in &resource.servers {
                if let Some(list) = tools_of.get_mut(*server) {
                    list.push(idx);
                }
            }
        }
        let members = group_members(&groups, &identities);
        Self {
            identities,
            groups,
            resources,
            by_type,
            resources_by_type,
            members,
            tools_of,
        }
    }

    pub(crate) fn of_type(&self, principal_type: PrincipalType) -> &[usize] {
        let slot = PrincipalType::ALL.iter().position(|t| *t == principal_type);
        slot.and_then(|slot| self.by_type.get(slot))
            .map_or(&[], Vec::as_slice)
    }

    pub(crate) fn resources_of_type(&self, resource_type: ResourceType) -> &[usize] {
        let slot = ResourceType::ALL.iter().position(|t| *t == resource_type);
        slot.and_then(|slot| self.resources_by_type.get(slot))
            .map_or(&[], Vec::as_slice)
    }

    /// Index `groups.len()` is the dangling group: a parent some identities name that is not
    /// itself an entity (Cedar still honours the membership).
    pub(crate) fn group_ref(&self, group_idx: usize) -> EntityRef {
        let id = self
            .groups
            .get(group_idx)
            .map_or(DANGLING_GROUP, |group| group.id.as_str());
        EntityRef::new("Group", id)
    }

    pub(crate) fn humans(&self) -> &[usize] {
        self.of_type(PrincipalType::Human)
    }

    /// The inventory in Cedar's entities JSON format, actions included.
    pub(crate) fn cedar_entities(&self) -> Value {
        let mut entities = Vec::with_capacity(
            self.identities.len() + self.groups.len() + self.resources.len() + 8,
        );
        for identity in &self.identities {
            let mut attrs = identity.free_attributes();
            attrs.insert(
                "kind".to_owned(),
                json!(identity.principal_type.kind().as_str()),
            );
            attrs.insert("lifecycle".to_owned(), json!(identity.lifecycle.as_str()));
            if let Some(owner) = &identity.owner {
                attrs.insert("owner".to_owned(), entity_value("Human", owner));
            }
            let parents: Vec<Value> = identity
                .groups
                .iter()
                .map(|group_idx| uid_value(&self.group_ref(*group_idx)))
                .collect();
            entities.push(json!({"uid": uid_value(&identity.entity_ref()), "attrs": attrs, "parents": parents}));
        }
        for group in &self.groups {
            let parents: Vec<Value> = group
                .parents
                .iter()
                .map(|group_idx| uid_value(&self.group_ref(*group_idx)))
                .collect();
            entities.push(json!({"uid": {"type": "Group", "id": group.id}, "attrs": group_attributes(group), "parents": parents}));
        }
        for resource in &self.resources {
            let mut attrs = resource.free_attributes();
            attrs.insert(
                "sensitivity".to_owned(),
                json!(resource.sensitivity.as_str()),
            );
            attrs.insert(
                "sensitivity_level".to_owned(),
                json!(resource.sensitivity.level()),
            );
            entities.push(json!({"uid": uid_value(&resource.entity_ref()), "attrs": attrs, "parents": self.server_parents(resource)}));
        }
        if let Value::Array(actions) = action_entities() {
            entities.extend(actions);
        }
        Value::Array(entities)
    }

    /// The same facts as [`Self::cedar_entities`] (actions aside), as an Arbiter document: every
    /// identity is governed, so its lifecycle can be changed.
    pub(crate) fn document(&self) -> InventoryDocument {
        let identities = self
            .identities
            .iter()
            .map(|identity| Identity {
                id: identity.id.clone(),
                kind: identity.principal_type.kind(),
                display_name: None,
                owner: identity.owner.clone(),
                sponsor: None,
                lifecycle: identity.lifecycle,
                member_of: identity
                    .groups
                    .iter()
                    .map(|group_idx| self.group_ref(*group_idx))
                    .collect(),
                credential: None,
                attributes: identity.free_attributes(),
            })
            .collect();
        let groups = self
            .groups
            .iter()
            .map(|group| Group {
                group_type: "Group".to_owned(),
                id: group.id.clone(),
                parents: group
                    .parents
                    .iter()
                    .map(|group_idx| self.group_ref(*group_idx))
                    .collect(),
                attributes: group_attributes(group),
            })
            .collect();
        let resources = self
            .resources
            .iter()
            .map(|resource| Resource {
                resource_type: resource.resource_type.cedar_type().to_owned(),
                id: resource.id.clone(),
                sensitivity: resource.sensitivity,
                parents: resource
                    .servers
                    .iter()
                    .filter_map(|server| self.resources.get(*server))
                    .map(GeneratedResource::entity_ref)
                    .collect(),
                attributes: resource.free_attributes(),
            })
            .collect();
        InventoryDocument {
            identities,
            groups,
            resources,
            signals: Vec::new(),
            controls: Vec::new(),
        }
    }

    fn server_parents(&self, resource: &GeneratedResource) -> Vec<Value> {
        resource
            .servers
            .iter()
            .filter_map(|server| self.resources.get(*server))
            .map(|server| uid_value(&server.entity_ref()))
            .collect()
    }
}

/// The action entities and their groups, in Cedar's entities JSON format.
pub(crate) fn action_entities() -> Value {
    let mut entities = Vec::new();
    let parents_of = |name: &str| -> Vec<Value> {
        ACTION_GROUPS
            .iter()
            .filter(|(_, members)| members.contains(&name))
            .map(|(group, _)| json!({"type": "Action", "id": group}))
            .collect()
    };
    for action in ACTIONS {
        entities.push(json!({"uid": {"type": "Action", "id": action}, "attrs": {}, "parents": parents_of(action)}));
    }
    for (group, _) in ACTION_GROUPS {
        // `mutating` sits inside `admin`: a two-level action hierarchy.
        let parents: Vec<Value> = if *group == "mutating" {
            vec![json!({"type": "Action", "id": "admin"})]
        } else {
            Vec::new()
        };
        entities
            .push(json!({"uid": {"type": "Action", "id": group}, "attrs": {}, "parents": parents}));
    }
    Value::Array(entities)
}

/// The actions an action group contains, directly or through a sub-group.
pub(crate) fn actions_in(group: &str) -> Vec<&'static str> {
    let mut actions: Vec<&'static str> = ACTION_GROUPS
        .iter()
        .filter(|(name, _)| *name == group || (group == "admin" && *name == "mutating"))
        .flat_map(|(_, members)| members.iter().copied())
        .collect();
    actions.sort_unstable();
    actions.dedup();
    actions
}

fn group_attributes(group: &GeneratedGroup) -> Map<String, Value> {
    let mut attrs = Map::new();
    if let Some(min_tier) = group.min_tier {
        attrs.insert("min_tier".to_owned(), json!(min_tier));
    }
    attrs
}

pub(crate) fn uid_value(entity: &EntityRef) -> Value {
    json!({"type": entity.entity_type, "id": entity.id})
}

pub(crate) fn entity_value(entity_type: &str, id: &str) -> Value {
    json!({"__entity": {"type": entity_type, "id": id}})
}

/// Roots first, then groups with a root parent, then groups one level further down (some of
/// them also directly under a root, so the hierarchy is a DAG, not a tree).
fn generate_groups(rng: &mut ChaCha8Rng, n_groups: usize) -> Vec<GeneratedGroup> {
    let n_roots = (n_groups * 15 / 100).max(1);
    let n_level1 = n_groups.saturating_sub(n_roots) * 40 / 100;
    let mut groups = Vec::with_capacity(n_groups);
    for group_idx in 0..n_groups {
        let parents = if group_idx < n_roots {
            Vec::new()
        } else if group_idx < n_roots + n_level1 || n_level1 == 0 {
            vec![rng.gen_range(0..n_roots)]
        } else {
            let mut parents = vec![rng.gen_range(n_roots..n_roots + n_level1)];
            if rng.gen_bool(0.1) {
                parents.push(rng.gen_range(0..n_roots));
            }
            parents
        };
        groups.push(GeneratedGroup {
            id: format!("grp-{group_idx:04}"),
            parents,
            min_tier: rng.gen_bool(0.7).then(|| rng.gen_range(0..4)),
        });
    }
    groups
}

fn generate_identity(
    rng: &mut ChaCha8Rng,
    principal_type: PrincipalType,
    idx: usize,
    n_humans: usize,
    groups: &[GeneratedGroup],
) -> GeneratedIdentity {
    let is_human = principal_type == PrincipalType::Human;
    // A few ids need escaping in policy text and JSON: quotes, spaces, non-ASCII.
    let id = match idx {
        1 if is_human => "Zoë O'Brien \"zo\"".to_owned(),
        1 => format!("{}/ci \"nightly\" ✓", principal_type.id_prefix()),
        _ => format!("{}-{idx:06}", principal_type.id_prefix()),
    };
    let owner = if is_human || rng.gen_bool(0.08) {
        None
    } else if rng.gen_bool(0.03) {
        Some(format!("departed-{}", rng.gen_range(0..100)))
    } else {
        let owner_idx = rng.gen_range(0..n_humans);
        Some(human_id(owner_idx))
    };
    let lifecycle = match rng.gen_range(0..100) {
        0..=1 => Lifecycle::Suspended,
        2 => Lifecycle::Quarantined,
        _ => Lifecycle::Active,
    };
    let n_groups = if groups.len() < 2 {
        1
    } else {
        rng.gen_range(1..=3)
    };
    let mut member_of: Vec<usize> = (0..n_groups)
        .map(|_| rng.gen_range(0..groups.len().max(1)))
        .collect();
    if rng.gen_bool(0.02) {
        member_of.push(groups.len());
    }
    member_of.sort_unstable();
    member_of.dedup();
    GeneratedIdentity {
        principal_type,
        id,
        owner,
        lifecycle,
        tier: rng.gen_range(0..5),
        team: pick(rng, TEAMS).copied().unwrap_or("platform"),
        clearance: rng.gen_bool(0.5).then(|| rng.gen_range(0..4)),
        department: is_human.then(|| pick(rng, DEPARTMENTS).copied().unwrap_or("engineering")),
        // Managers have lower indices: the org chart is a tree about log3(humans) deep.
        manager: (is_human && idx > 0 && rng.gen_bool(0.9))
            .then(|| human_id(rng.gen_range(0..idx.div_ceil(3)))),
        meta: rng.gen_bool(0.3).then(|| {
            let created_by = if rng.gen_bool(0.5) {
                "terraform"
            } else {
                "console"
            };
            (created_by, rng.gen_bool(0.4))
        }),
        groups: member_of,
    }
}

/// The id of the `owner_idx`-th human, matching [`generate_identity`]'s naming.
fn human_id(owner_idx: usize) -> String {
    if owner_idx == 1 {
        "Zoë O'Brien \"zo\"".to_owned()
    } else {
        format!("human-{owner_idx:06}")
    }
}

fn generate_resources(
    rng: &mut ChaCha8Rng,
    n_resources: usize,
    n_humans: usize,
) -> Vec<GeneratedResource> {
    let n_servers = (n_resources / 10).max(1);
    let mut resources = Vec::with_capacity(n_resources);
    for idx in 0..n_resources {
        let resource_type = if idx < n_servers {
            ResourceType::McpServer
        } else if idx == n_servers || (idx > n_servers + 1 && rng.gen_bool(0.55)) {
            ResourceType::Tool
        } else {
            ResourceType::Dataset
        };
        let servers = if resource_type == ResourceType::Tool {
            let mut servers = vec![rng.gen_range(0..n_servers)];
            if n_servers > 1 && rng.gen_bool(0.1) {
                servers.push(rng.gen_range(0..n_servers));
                servers.dedup();
            }
            servers
        } else {
            Vec::new()
        };
        let sensitivity = match rng.gen_range(0..10) {
            0..=2 => Sensitivity::Public,
            3..=5 => Sensitivity::Internal,
            6..=8 => Sensitivity::Confidential,
            _ => Sensitivity::Restricted,
        };
        let owner = if rng.gen_bool(0.04) {
            format!("departed-{}", rng.gen_range(0..100))
        } else {
            human_id(rng.gen_range(0..n_humans))
        };
        let n_tags = rng.gen_range(0..=3);
        let mut tags: Vec<&'static str> = (0..n_tags)
            .filter_map(|_| pick(rng, TAGS).copied())
            .collect();
        tags.sort_unstable();
        tags.dedup();
        let prefix = match resource_type {
            ResourceType::Tool => "tool",
            ResourceType::Dataset => "ds",
            ResourceType::McpServer => "mcp",
        };
        resources.push(GeneratedResource {
            resource_type,
            id: format!("{prefix}-{idx:05}"),
            sensitivity,
            owner,
            tags,
            env: rng
                .gen_bool(0.6)
                .then(|| pick(rng, ENVS).copied().unwrap_or("dev")),
            network: (resource_type == ResourceType::McpServer && rng.gen_bool(0.7))
                .then(|| pick(rng, NETWORKS).copied().unwrap_or("10.0.0.0/8")),
            servers,
        });
    }
    resources
}

/// For each group, every identity in it directly or through a sub-group.
fn group_members(groups: &[GeneratedGroup], identities: &[GeneratedIdentity]) -> Vec<Vec<usize>> {
    // One more list than groups: the dangling group's members.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups.len() + 1];
    for (identity_idx, identity) in identities.iter().enumerate() {
        let mut reached: Vec<usize> = Vec::new();
        let mut queue: Vec<usize> = identity.groups.clone();
        while let Some(group_idx) = queue.pop() {
            if reached.contains(&group_idx) {
                continue;
            }
            reached.push(group_idx);
            if let Some(group) = groups.get(group_idx) {
                queue.extend(group.parents.iter().copied());
            }
        }
        for group_idx in reached {
            if let Some(list) = members.get_mut(group_idx) {
                list.push(identity_idx);
            }
        }
    }
    members
}
