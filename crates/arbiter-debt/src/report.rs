//! The analysis: inventory + grants + usage → findings, figures and scores.

use crate::findings::{Finding, FindingKind, Severity};
use crate::grants::Grants;
use crate::history::HistoryPoint;
use crate::score::Scores;
use crate::suggest::Suggestion;
use crate::usage::{Usage, UsageSummary};
use crate::{date, Progress, Thresholds, DAY};
use arbiter_core::{
    EntityRef, Group, Identity, IdentityKind, InventoryDocument, Lifecycle, Resource, Signal,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The identity attribute the server publishes the figures under: policies read
/// `principal.debt.score`, `principal.debt.unrotated_days`, ….
pub const DEBT_ATTRIBUTE: &str = "debt";

/// What an analysis reads besides usage.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The inventory as it is now.
    pub inventory: &'a InventoryDocument,
    /// The grants of the active policy version.
    pub grants: &'a Grants,
    /// Thresholds.
    pub thresholds: &'a Thresholds,
    /// The time of the analysis (seconds since the Unix epoch).
    pub now: i64,
}

/// The figures about one identity that policies can read as `principal.debt`. Whole numbers:
/// Cedar has no floating point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebtFigures {
    /// The identity's score, 0 to 100.
    pub score: i64,
    /// How many findings it has.
    pub findings: i64,
    /// Days since its oldest held credential (or itself, for a credential) was rotated or
    /// issued; 0 when it holds none.
    pub unrotated_days: i64,
    /// Days since it was last seen in a decision (0 when seen within a day or never measured).
    pub dormant_days: i64,
    /// Granted permits it did not use in the usage window.
    pub unused_grants: i64,
    /// Whether it has no active human owner.
    pub orphaned: bool,
    /// When the figures were computed (seconds since the Unix epoch).
    pub computed_at: i64,
}

impl DebtFigures {
    /// The figures as a Cedar record attribute value.
    pub fn to_attribute(&self) -> Value {
        json!({
            "score": self.score,
            "findings": self.findings,
            "unrotated_days": self.unrotated_days,
            "dormant_days": self.dormant_days,
            "unused_grants": self.unused_grants,
            "orphaned": self.orphaned,
            "computed_at": self.computed_at,
        })
    }

    /// Whether `other` says the same apart from when it was computed (so unchanged figures
    /// need not be written again).
    pub fn same_as(&self, other: &DebtFigures) -> bool {
        DebtFigures {
            computed_at: 0,
            ..self.clone()
        } == DebtFigures {
            computed_at: 0,
            ..other.clone()
        }
    }
}

/// Writes `figures` into `identity` as its `debt` attribute, the way the server publishes
/// them; returns whether anything but the computation time changed.
pub fn set_figures(identity: &mut Identity, figures: &DebtFigures) -> bool {
    let before: Option<DebtFigures> = identity
        .attributes
        .get(DEBT_ATTRIBUTE)
        .and_then(|value| serde_json::from_value(value.clone()).ok());
    let changed = before.is_none_or(|before| !before.same_as(figures));
    identity
        .attributes
        .insert(DEBT_ATTRIBUTE.to_owned(), figures.to_attribute());
    changed
}

/// One identity's debt, for ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityDebt {
    /// `Type::"id"`.
    pub identity: String,
    /// Its kind.
    pub kind: IdentityKind,
    /// Its owner, if any.
    pub owner: Option<String>,
    /// Its team, if known.
    pub team: Option<String>,
    /// Score, 0 to 100.
    pub score: u32,
    /// Its figures.
    pub figures: DebtFigures,
    /// Its findings' kinds.
    pub kinds: Vec<FindingKind>,
}

/// A trust-debt report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When it was computed.
    pub generated_at: i64,
    /// The thresholds it used.
    pub thresholds: Thresholds,
    /// What the decision log held.
    pub usage: UsageSummary,
    /// Active non-human identities analysed.
    pub identities_analysed: u64,
    /// Every finding, worst first.
    pub findings: Vec<Finding>,
    /// Identities with debt, highest score first.
    pub ranking: Vec<IdentityDebt>,
    /// Scores: overall, by owner, by team, by OWASP item.
    pub scores: Scores,
    /// Least-privilege suggestions, each checked against recorded decisions.
    pub suggestions: Vec<Suggestion>,
    /// Overall scores of earlier reports, oldest first (the trend).
    pub history: Vec<HistoryPoint>,
    /// Figures for every active non-human identity, published as `principal.debt`.
    #[serde(skip)]
    pub figures: BTreeMap<String, DebtFigures>,
}

struct World<'a> {
    inputs: Inputs<'a>,
    usage: &'a Usage,
    identities: HashMap<String, &'a Identity>,
    groups: HashMap<String, &'a Group>,
    resources: HashMap<String, &'a Resource>,
    signals: HashMap<String, Vec<&'a Signal>>,
    credentials_of: HashMap<String, Vec<&'a Identity>>,
}

/// Analyses the inventory against its grants and recorded usage. Suggestions and history are
/// left empty: [`crate::suggest::propose`] and [`crate::History`] fill them.
pub fn analyse(inputs: Inputs<'_>, usage: &Usage, progress: Option<Progress<'_>>) -> Report {
    let inventory = inputs.inventory;
    let world = World {
        inputs,
        usage,
        identities: inventory
            .identities
            .iter()
            .map(|identity| (identity.entity_ref().to_string(), identity))
            .collect(),
        groups: inventory
            .groups
            .iter()
            .map(|group| {
                (
                    EntityRef::new(&group.group_type, &group.id).to_string(),
                    group,
                )
            })
            .collect(),
        resources: inventory
            .resources
            .iter()
            .map(|resource| {
                (
                    EntityRef::new(&resource.resource_type, &resource.id).to_string(),
                    resource,
                )
            })
            .collect(),
        signals: inventory
            .signals
            .iter()
            .fold(HashMap::new(), |mut map, signal| {
                map.entry(signal.subject.to_string())
                    .or_insert_with(Vec::new)
                    .push(signal);
                map
            }),
        credentials_of: inventory
            .identities
            .iter()
            .filter_map(|identity| {
                identity
                    .credential
                    .as_ref()
                    .map(|meta| (meta.holder.to_string(), identity))
            })
            .fold(HashMap::new(), |mut map, (holder, credential)| {
                map.entry(holder).or_insert_with(Vec::new).push(credential);
                map
            }),
    };
    let total = inventory.identities.len() as u64;
    let mut findings = Vec::new();
    let mut ranking = Vec::new();
    let mut figures = BTreeMap::new();
    let mut analysed = 0u64;
    for (idx, identity) in inventory.identities.iter().enumerate() {
        if idx % 10_000 == 0 {
            if let Some(progress) = progress {
                progress("findings", idx as u64, total);
            }
        }
        if !identity.kind.is_non_human() || identity.lifecycle != Lifecycle::Active {
            continue;
        }
        analysed += 1;
        let (found, mut figure) = world.examine(identity);
        let score = crate::score::identity_score(&found);
        figure.score = i64::from(score);
        figure.findings = found.len() as i64;
        let entity = identity.entity_ref().to_string();
        if !found.is_empty() {
            ranking.push(IdentityDebt {
                identity: entity.clone(),
                kind: identity.kind,
                owner: owner_of(identity),
                team: world.team_of(identity),
                score,
                figures: figure.clone(),
                kinds: found.iter().map(|finding| finding.kind).collect(),
            });
        }
        figures.insert(entity, figure);
        findings.extend(found);
    }
    if let Some(progress) = progress {
        progress("findings", total, total);
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.identity.cmp(&b.identity))
            .then_with(|| a.kind.cmp(&b.kind))
    });
    ranking.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then_with(|| a.identity.cmp(&b.identity))
    });
    let scores = Scores::compute(analysed, &ranking, &findings);
    Report {
        generated_at: inputs.now,
        thresholds: inputs.thresholds.clone(),
        usage: usage.summary(),
        identities_analysed: analysed,
        findings,
        ranking,
        scores,
        suggestions: Vec::new(),
        history: Vec::new(),
        figures,
    }
}

fn owner_of(identity: &Identity) -> Option<String> {
    identity
        .owner
        .as_ref()
        .map(|owner| EntityRef::new("Human", owner).to_string())
}

fn days(seconds: i64) -> i64 {
    seconds.max(0) / DAY
}

/// Builds findings for one identity.
struct Found {
    entity: String,
    owner: Option<String>,
    team: Option<String>,
    findings: Vec<Finding>,
}

impl Found {
    fn add(
        &mut self,
        kind: FindingKind,
        severity: Severity,
        summary: String,
        evidence: Value,
        fix: String,
    ) {
        let evidence = match evidence {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        self.findings.push(Finding {
            id: format!("{}:{}", kind.as_str(), self.entity),
            identity: self.entity.clone(),
            owner: self.owner.clone(),
            team: self.team.clone(),
            kind,
            owasp: kind.owasp(),
            severity,
            summary,
            evidence,
            fix,
        });
    }
}

impl World<'_> {
    fn team_of(&self, identity: &Identity) -> Option<String> {
        let attribute = &self.inputs.thresholds.team_attribute;
        let own = identity.attributes.get(attribute).and_then(Value::as_str);
        let owner = || {
            let owner = owner_of(identity)?;
            self.identities
                .get(&owner)?
                .attributes
                .get(attribute)?
                .as_str()
        };
        own.or_else(owner).map(str::to_owned)
    }

    /// Every group `identity` is in, transitively, as `Type::"id"`.
    fn ancestors(&self, identity: &Identity) -> Vec<String> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = identity.member_of.iter().map(ToString::to_string).collect();
        while let Some(group) = stack.pop() {
            if !seen.insert(group.clone()) {
                continue;
            }
            if let Some(found) = self.groups.get(&group) {
                stack.extend(found.parents.iter().map(ToString::to_string));
            }
        }
        seen.into_iter().collect()
    }

    fn examine(&self, identity: &Identity) -> (Vec<Finding>, DebtFigures) {
        let thresholds = self.inputs.thresholds;
        let now = self.inputs.now;
        let entity = identity.entity_ref().to_string();
        let mut found = Found {
            entity: entity.clone(),
            owner: owner_of(identity),
            team: self.team_of(identity),
            findings: Vec::new(),
        };
        let mut figures = DebtFigures {
            computed_at: now,
            ..DebtFigures::default()
        };
        let usage = self.usage.principal(&entity);

        // NHI1: ownership.
        match identity.owner.as_deref() {
            None => {
                figures.orphaned = true;
                found.add(
                    FindingKind::Orphaned,
                    Severity::High,
                    format!("{entity} has no owner: no human is accountable for it"),
                    json!({"owner": null}),
                    "assign an active human owner (PUT the identity with `owner`), or revoke it if nobody claims it".into(),
                );
            }
            Some(owner) => {
                let owner_entity = EntityRef::new("Human", owner).to_string();
                match self.identities.get(&owner_entity) {
                    None => {
                        figures.orphaned = true;
                        found.add(
                            FindingKind::Orphaned,
                            Severity::High,
                            format!(
                                "{entity}'s owner {owner_entity} is not a human in the inventory"
                            ),
                            json!({"owner": owner_entity, "owner_in_inventory": false}),
                            "assign an active human owner, or revoke the identity".into(),
                        );
                    }
                    Some(human) if human.lifecycle != Lifecycle::Active => {
                        figures.orphaned = true;
                        found.add(
                            FindingKind::OwnerOffboarded,
                            Severity::High,
                            format!(
                                "{entity}'s owner {owner_entity} is {} but {entity} is still active",
                                human.lifecycle.as_str()
                            ),
                            json!({"owner": owner_entity, "owner_lifecycle": human.lifecycle.as_str()}),
                            format!("hand {entity} to an active owner or revoke it: offboarding {owner_entity} left it behind"),
                        );
                    }
                    Some(_) => {}
                }
            }
        }

        // NHI1: a credential left active after its holder was offboarded.
        if let Some(meta) = &identity.credential {
            let holder = meta.holder.to_string();
            if let Some(holder_identity) = self.identities.get(&holder) {
                if holder_identity.lifecycle != Lifecycle::Active
                    && meta.expires_at.is_none_or(|expires| expires > now)
                {
                    found.add(
                        FindingKind::CredentialOutlivesHolder,
                        Severity::High,
                        format!(
                            "{entity} is active and unexpired although its holder {holder} is {}",
                            holder_identity.lifecycle.as_str()
                        ),
                        json!({"holder": holder, "holder_lifecycle": holder_identity.lifecycle.as_str(),
                               "expires_at": meta.expires_at.map(date)}),
                        format!("revoke {entity}: its holder is gone"),
                    );
                }
            }
        }

        // NHI1: dormancy. Credentials rarely decide as themselves: their last use comes from
        // `last_used_at`, and without either they are not judged.
        let last_used = identity
            .credential
            .as_ref()
            .and_then(|meta| meta.last_used_at);
        let last_seen = match (usage.and_then(|usage| usage.last_at), last_used) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let dormant_after = thresholds.dormant_days * DAY;
        let log_covers = self
            .usage
            .first_at
            .is_some_and(|first| first <= now - dormant_after);
        let mut dormant = false;
        match last_seen {
            Some(last) => {
                figures.dormant_days = days(now - last);
                if now - last > dormant_after {
                    dormant = true;
                    let idle = days(now - last);
                    let severity = if idle >= 3 * thresholds.dormant_days {
                        Severity::High
                    } else {
                        Severity::Medium
                    };
                    found.add(
                        FindingKind::Dormant,
                        severity,
                        format!(
                            "{entity} was last seen on {} ({idle} days ago; threshold {} days)",
                            date(last),
                            thresholds.dormant_days
                        ),
                        json!({"last_seen": date(last), "idle_days": idle, "threshold_days": thresholds.dormant_days}),
                        format!("confirm with its owner that {entity} is still needed; if not, revoke it (and its credentials)"),
                    );
                }
            }
            None if identity.kind != IdentityKind::Credential && log_covers => {
                let first = self.usage.first_at.unwrap_or(now);
                figures.dormant_days = days(now - first);
                dormant = true;
                found.add(
                    FindingKind::Dormant,
                    Severity::Medium,
                    format!(
                        "{entity} has no recorded decision since the log began on {} ({} days)",
                        date(first),
                        days(now - first)
                    ),
                    json!({"last_seen": null, "log_since": date(first), "idle_days": days(now - first),
                           "threshold_days": thresholds.dormant_days}),
                    format!("confirm with its owner that {entity} is needed at all; if not, revoke it"),
                );
            }
            None => {}
        }

        // NHI7 and NHI4: the credential itself, and the oldest credential an identity holds.
        if identity.kind == IdentityKind::Credential {
            self.examine_credential(identity, &mut found, &mut figures);
        } else {
            figures.unrotated_days = self
                .credentials_of
                .get(&entity)
                .into_iter()
                .flatten()
                .filter(|credential| credential.lifecycle == Lifecycle::Active)
                .filter_map(|credential| credential.credential.as_ref())
                .filter_map(|meta| meta.rotated_at.or(meta.issued_at))
                .map(|since| days(now - since))
                .max()
                .unwrap_or(0);
        }

        // NHI5: grants never exercised (not judged for a dormant identity: the fix for it
        // removes every grant at once).
        let ancestors = self.ancestors(identity);
        let granted = self.inputs.grants.of(&entity, &ancestors);
        let used: BTreeMap<String, Vec<String>> =
            self.usage.used_policies(&entity).into_iter().collect();
        let unused: Vec<&str> = granted
            .iter()
            .filter(|grant| !used.contains_key(&grant.id))
            .map(|grant| grant.id.as_str())
            .collect();
        figures.unused_grants = unused.len() as i64;
        if !dormant && !unused.is_empty() && unused.len() >= thresholds.min_unused_grants {
            let n_used = granted.len() - unused.len();
            // A direct group membership is unused when no used grant is scoped to it or to a
            // group above it.
            let unused_roles: Vec<String> = identity
                .member_of
                .iter()
                .map(ToString::to_string)
                .filter(|role| {
                    let reach = self.group_closure(role);
                    !granted
                        .iter()
                        .any(|grant| used.contains_key(&grant.id) && reach.contains(&grant.scope))
                        && granted.iter().any(|grant| reach.contains(&grant.scope))
                })
                .collect();
            let severity = if unused.len() >= 3 && unused.len() >= 2 * n_used.max(1) {
                Severity::High
            } else {
                Severity::Medium
            };
            found.add(
                FindingKind::OverPrivileged,
                severity,
                format!(
                    "{entity} is granted {} permits and used {n_used} in the last {} days (granted:used {}:{n_used}); unused: {}",
                    granted.len(),
                    thresholds.usage_window_days,
                    granted.len(),
                    unused.join(", ")
                ),
                json!({"granted": granted.len(), "used": n_used, "unused_policies": unused,
                       "unused_roles": unused_roles, "window_days": thresholds.usage_window_days,
                       "window_start": date(self.usage.window_start)}),
                "apply the least-privilege suggestion (`arbiter debt apply <id>`), or remove the unused roles from its `member_of`".into(),
            );
        }

        // NHI5: standing access to high-risk resources that no approval gated.
        let high_risk: Vec<&str> = self
            .usage
            .standing_resources(&entity)
            .into_iter()
            .filter(|resource| {
                self.resources
                    .get(*resource)
                    .is_some_and(|found| found.sensitivity >= thresholds.high_risk_sensitivity)
            })
            .collect();
        if !high_risk.is_empty() {
            let approved = usage.map_or(0, |usage| usage.window_approved);
            found.add(
                FindingKind::StandingHighRiskAccess,
                Severity::High,
                format!(
                    "{entity} was allowed on {} {}-or-higher resources in the last {} days by standing permits, none gated by an approval: {}",
                    high_risk.len(),
                    thresholds.high_risk_sensitivity.as_str(),
                    thresholds.usage_window_days,
                    high_risk.join(", ")
                ),
                json!({"resources": high_risk, "approved_allows": approved,
                       "sensitivity": thresholds.high_risk_sensitivity.as_str()}),
                "put the access behind an `@approval` forbid (approval_required), or narrow the permit to what is needed".into(),
            );
        }

        // Automation paths nobody reviewed.
        let tools = &thresholds.tool_types;
        let routes: Vec<(&str, &str)> = self.usage.routes(&entity, |origin, resource| {
            !origin.is_empty() || tools.iter().any(|tool| entity_type(resource) == tool)
        });
        if !routes.is_empty() {
            let reviewed_at = identity
                .attributes
                .get("reviewed_at")
                .and_then(Value::as_i64);
            let stale = reviewed_at.is_none_or(|at| now - at > thresholds.review_days * DAY);
            if stale {
                let examples: Vec<String> = routes
                    .iter()
                    .take(5)
                    .map(|(origin, resource)| {
                        if origin.is_empty() {
                            format!("{entity} → {resource}")
                        } else {
                            format!("{origin} → {entity} → {resource}")
                        }
                    })
                    .collect();
                found.add(
                    FindingKind::UnreviewedAutomation,
                    Severity::Medium,
                    format!(
                        "{entity} took {} automation routes in the last {} days and was {}",
                        routes.len(),
                        thresholds.usage_window_days,
                        match reviewed_at {
                            None => "never reviewed".to_owned(),
                            Some(at) => format!("last reviewed on {}", date(at)),
                        }
                    ),
                    json!({"routes": routes.len(), "examples": examples,
                           "reviewed_at": reviewed_at.map(date), "review_days": thresholds.review_days}),
                    format!("have {} review these routes and record it as the `reviewed_at` attribute", found.owner.clone().unwrap_or_else(|| "an owner".into())),
                );
            }
        }

        // NHI8: several environments.
        let attribute = &thresholds.environment_attribute;
        let mut environments: BTreeSet<String> = self
            .usage
            .resources(&entity)
            .into_iter()
            .filter_map(|resource| self.resources.get(resource))
            .filter_map(|resource| resource.attributes.get(attribute)?.as_str())
            .map(str::to_owned)
            .collect();
        let own = identity.attributes.get(attribute).and_then(Value::as_str);
        if let Some(own) = own {
            environments.insert(own.to_owned());
        }
        if environments.len() >= 2 {
            let list: Vec<String> = environments.into_iter().collect();
            found.add(
                FindingKind::MultiEnvironment,
                Severity::High,
                format!(
                    "{entity} acted in {} environments in the last {} days: {}",
                    list.len(),
                    thresholds.usage_window_days,
                    list.join(", ")
                ),
                json!({"environments": list, "own_environment": own}),
                format!("split {entity} into one identity per environment, and scope each one's permits to its environment"),
            );
        }

        // NHI9: several workloads used it.
        let users: Vec<&str> = self
            .usage
            .delegators(&entity)
            .into_iter()
            .filter(|user| {
                self.identities
                    .get(*user)
                    .is_some_and(|found| found.kind.is_non_human())
            })
            .collect();
        if users.len() >= thresholds.reuse_min_workloads {
            found.add(
                FindingKind::Reused,
                Severity::Medium,
                format!(
                    "{entity} is used by {} workloads: {}",
                    users.len(),
                    users.join(", ")
                ),
                json!({"workloads": users, "threshold": thresholds.reuse_min_workloads}),
                format!("give each workload its own identity instead of sharing {entity}"),
            );
        }

        // NHI10: a person used it.
        for signal in self.signals.get(&entity).into_iter().flatten() {
            let flagged = thresholds.human_use_signals.contains(&signal.name)
                && match &signal.value {
                    Value::Bool(flag) => *flag,
                    Value::Number(number) => number.as_i64().unwrap_or(1) != 0,
                    Value::String(text) => !text.is_empty(),
                    _ => false,
                };
            if flagged {
                found.add(
                    FindingKind::HumanUse,
                    Severity::High,
                    format!(
                        "{} reported `{}` = {} for {entity} on {}",
                        signal.source,
                        signal.name,
                        signal.value,
                        date(signal.observed_at)
                    ),
                    json!({"signal": signal.name, "value": signal.value, "source": signal.source,
                           "observed_at": date(signal.observed_at)}),
                    format!("find who logged in as {entity}, give them their own human access, and rotate its credentials"),
                );
            }
        }

        (found.findings, figures)
    }

    fn examine_credential(
        &self,
        identity: &Identity,
        found: &mut Found,
        figures: &mut DebtFigures,
    ) {
        let thresholds = self.inputs.thresholds;
        let now = self.inputs.now;
        let entity = found.entity.clone();
        let Some(meta) = &identity.credential else {
            return;
        };
        match meta.rotated_at.or(meta.issued_at) {
            Some(since) => {
                let age = days(now - since);
                figures.unrotated_days = age;
                if age > thresholds.rotation_days {
                    let severity = if age >= 2 * thresholds.rotation_days {
                        Severity::High
                    } else {
                        Severity::Medium
                    };
                    found.add(
                        FindingKind::Unrotated,
                        severity,
                        format!(
                            "{entity} was last rotated on {} ({age} days ago; rotation policy {} days)",
                            date(since),
                            thresholds.rotation_days
                        ),
                        json!({"rotated_at": meta.rotated_at.map(date), "issued_at": meta.issued_at.map(date),
                               "age_days": age, "rotation_days": thresholds.rotation_days}),
                        format!("rotate {entity} now and automate its rotation within {} days", thresholds.rotation_days),
                    );
                }
            }
            None => found.add(
                FindingKind::Unrotated,
                Severity::Medium,
                format!("{entity} has no recorded issue or rotation date, so its age is unknown"),
                json!({"rotated_at": null, "issued_at": null, "rotation_days": thresholds.rotation_days}),
                format!("rotate {entity} and record `issued_at`/`rotated_at`"),
            ),
        }
        match meta.expires_at {
            None => found.add(
                FindingKind::NoExpiry,
                Severity::Medium,
                format!("{entity} never expires"),
                json!({"expires_at": null}),
                format!(
                    "reissue {entity} with an expiry of at most {} days",
                    thresholds.max_lifetime_days
                ),
            ),
            Some(expires) => {
                let start = meta.issued_at.or(meta.rotated_at);
                if let Some(start) = start {
                    let lifetime = days(expires - start);
                    if lifetime > thresholds.max_lifetime_days {
                        found.add(
                            FindingKind::LongLived,
                            Severity::Medium,
                            format!(
                                "{entity} is valid for {lifetime} days (from {} to {}; maximum {} days)",
                                date(start),
                                date(expires),
                                thresholds.max_lifetime_days
                            ),
                            json!({"issued_at": date(start), "expires_at": date(expires),
                                   "lifetime_days": lifetime, "max_lifetime_days": thresholds.max_lifetime_days}),
                            format!("reissue {entity} with a lifetime of at most {} days", thresholds.max_lifetime_days),
                        );
                    }
                }
            }
        }
        let credential_type = identity
            .attributes
            .get("credential_type")
            .and_then(Value::as_str);
        if let Some(kind) = credential_type {
            if thresholds.static_credential_types.iter().any(|t| t == kind) {
                found.add(
                    FindingKind::StaticCredential,
                    Severity::Medium,
                    format!("{entity} is a static `{kind}` held by {}", meta.holder),
                    json!({"credential_type": kind, "holder": meta.holder.to_string()}),
                    format!("replace {entity} with short-lived credentials (workload identity federation, OAuth client credentials with minutes-long tokens)"),
                );
            }
        }
    }

    /// A group and every group above it.
    fn group_closure(&self, group: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![group.to_owned()];
        while let Some(next) = stack.pop() {
            if !seen.insert(next.clone()) {
                continue;
            }
            if let Some(found) = self.groups.get(&next) {
                stack.extend(found.parents.iter().map(ToString::to_string));
            }
        }
        seen
    }
}

/// `Type` of `Type::"id"`.
fn entity_type(entity: &str) -> &str {
    entity.split_once("::\"").map_or(entity, |(kind, _)| kind)
}
