//! Arbiter's test kit: a seeded generator of realistic non-human-identity (NHI) workloads, used
//! by the differential test against Cedar's reference authorizer and by the decision benchmarks.
//!
//! What it is: [`generate`] turns a [`WorkloadConfig`] into a [`Workload`] — one Cedar policy
//! file, the matching Cedar entities JSON (agents, service accounts, workloads and humans in a
//! two-level group hierarchy; tools inside MCP servers; datasets; actions in action groups) —
//! and [`Workload::requests`] draws requests against it. The same seed always gives the same
//! workload and the same requests, byte for byte.
//!
//! What it is not: a fuzzer of Cedar syntax, or anything a production build links. It is a
//! dev-only crate (`publish = false`).
//!
//! Key design decision: the generator keeps the policies' scopes as data and aims most requests
//! at one of them, so that scopes match and conditions, not luck, decide. Conditions read the
//! attributes NHI policies read (owners, tiers, teams, sensitivity, tags, the time and MFA in
//! the context) and some of them fail at runtime on purpose (missing attributes, absent
//! context fields, departed owners, malformed addresses, `Long` overflow), because the
//! engine must report exactly the errors Cedar reports.

mod model;
mod policies;
mod requests;

use arbiter_core::{ActionRef, DecisionRequest, EntityInput, EntityRef, InventoryDocument};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

pub use policies::broad_policy_count;

/// Arbiter's snapshot of a workload, with every identity loaded as a governed one (so its
/// lifecycle can change), decided with [`bench_engine_config`].
pub fn arbiter_snapshot(
    workload: &Workload,
) -> Result<arbiter_engine::Snapshot, Box<dyn std::error::Error>> {
    let policies = arbiter_engine::PolicySet::compile(
        vec![arbiter_engine::PolicySource {
            name: "generated.cedar".to_owned(),
            text: workload.policies_text.clone(),
        }],
        None,
        1,
    )?;
    let mut builder = arbiter_engine::InventoryBuilder::new();
    builder
        .add_document(&workload.inventory_document())?
        .add_cedar_entities(workload.action_entities())?;
    Ok(arbiter_engine::Snapshot::new(
        policies,
        builder.build(None)?,
        None,
        bench_engine_config(),
    ))
}

/// The engine configuration the benchmarks decide with. Generated workloads name departed
/// owners on purpose (an attribute that fails at runtime, as Cedar must report); the benchmarks
/// compare policy evaluation with Cedar's, so those identities keep acting instead of being
/// denied early as orphans.
pub fn bench_engine_config() -> arbiter_engine::EngineConfig {
    arbiter_engine::EngineConfig {
        orphans: arbiter_engine::OrphanRule::Allow,
        ..arbiter_engine::EngineConfig::default()
    }
}

/// How big a workload to generate, and from which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Seeds every random choice.
    pub seed: u64,
    /// Identities (one in ten is a `Human`; the rest are agents, service accounts and
    /// workloads). At least four are generated, one of each type.
    pub identities: usize,
    /// Groups, in a hierarchy two levels deep. At least one.
    pub groups: usize,
    /// Resources: one in ten is an `McpServer`, the rest tools and datasets. At least three.
    pub resources: usize,
    /// Policies, in one Cedar file.
    pub policies: usize,
}

/// A generated workload: the policy file and entities to load, and the facts behind them.
pub struct Workload {
    /// What it was generated from.
    pub config: WorkloadConfig,
    /// One Cedar policy file without `@id` annotations, so policies are `policy0`, `policy1`, …
    pub policies_text: String,
    /// Every entity, actions included, in Cedar's entities JSON format (an array).
    pub entities: Value,
    inventory: model::Inventory,
    policies: Vec<policies::PolicySpec>,
}

/// One request: Cedar's principal, action and resource, and a context in Cedar's JSON form
/// (entity references use the `__entity` escape).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRequest {
    /// Who acts; usually an identity of the workload, sometimes an unknown one.
    pub principal: EntityRef,
    /// An `Action::"…"` entity.
    pub action: EntityRef,
    /// What is acted on; usually a resource of the workload, sometimes an unknown one.
    pub resource: EntityRef,
    /// `hour` and `mfa` always; `optional_field`, `requester` and `source_ip` sometimes.
    pub context: Map<String, Value>,
}

/// Generates a workload. Deterministic: the same config gives the same workload.
pub fn generate(config: &WorkloadConfig) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let sizes = model::Sizes {
        identities: config.identities,
        groups: config.groups,
        resources: config.resources,
    };
    let inventory = model::Inventory::generate(&mut rng, &sizes);
    let policies = policies::generate_policies(&mut rng, &inventory, config.policies);
    let mut policies_text = String::new();
    for policy in &policies {
        policies_text.push_str(&policy.text);
        policies_text.push_str("\n\n");
    }
    let entities = inventory.cedar_entities();
    Workload {
        config: *config,
        policies_text,
        entities,
        inventory,
        policies,
    }
}

impl Workload {
    /// `n` requests drawn from `seed`. Deterministic for a given workload and seed.
    pub fn requests(&self, seed: u64, n: usize) -> Vec<GeneratedRequest> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        requests::generate_requests(&mut rng, &self.inventory, &self.policies, n)
    }

    /// Number of policies in [`Self::policies_text`].
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// The same identities, groups and resources as [`Self::entities`], as an Arbiter inventory
    /// document, so that every identity is governed (has a lifecycle the engine can change).
    /// Actions are not part of a document: load [`Self::action_entities`] beside it.
    pub fn inventory_document(&self) -> InventoryDocument {
        self.inventory.document()
    }

    /// The action entities and action groups, in Cedar's entities JSON format.
    pub fn action_entities(&self) -> Value {
        model::action_entities()
    }

    /// Every identity of the workload.
    pub fn identities(&self) -> impl Iterator<Item = EntityRef> + '_ {
        self.inventory
            .identities
            .iter()
            .map(|identity| identity.entity_ref())
    }

    /// The Cedar entity JSON of one identity, as it appears in [`Self::entities`].
    pub fn entity_json(&self, entity: &EntityRef) -> Option<&Value> {
        let Value::Array(entities) = &self.entities else {
            return None;
        };
        entities.iter().find(|candidate| {
            candidate.get("uid")
                == Some(&serde_json::json!({"type": entity.entity_type, "id": entity.id}))
        })
    }
}

impl GeneratedRequest {
    /// The request as Arbiter's decision request (no caller-supplied properties, no delegation).
    pub fn to_decision_request(&self) -> DecisionRequest {
        DecisionRequest {
            subject: EntityInput {
                entity: self.principal.clone(),
                properties: Map::new(),
            },
            action: ActionRef {
                name: self.action.id.clone(),
                properties: Map::new(),
            },
            resource: EntityInput {
                entity: self.resource.clone(),
                properties: Map::new(),
            },
            context: self.context.clone(),
            delegation: Vec::new(),
        }
    }

    /// The request as a `cedar_policy::Request` for Cedar's reference authorizer.
    pub fn to_cedar_request(&self) -> Result<cedar_policy::Request, String> {
        let uid = |entity: &EntityRef| {
            cedar_policy::EntityUid::from_json(serde_json::json!({
                "type": entity.entity_type,
                "id": entity.id,
            }))
            .map_err(|err| format!("`{entity}`: {err}"))
        };
        let context =
            cedar_policy::Context::from_json_value(Value::Object(self.context.clone()), None)
                .map_err(|err| format!("context: {err}"))?;
        cedar_policy::Request::new(
            uid(&self.principal)?,
            uid(&self.action)?,
            uid(&self.resource)?,
            context,
            None,
        )
        .map_err(|err| err.to_string())
    }
}

/// A uniformly chosen element, or `None` for an empty slice.
fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> Option<&'a T> {
    items.choose(rng)
}
