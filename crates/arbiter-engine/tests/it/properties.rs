//! Properties over random requests: no combination of inputs lets an inactive or unknown
//! principal through, and an allow always has a permit behind every hop.

use crate::decide::{decide, world};
use arbiter_core::Outcome;
use proptest::prelude::*;

const PRINCIPALS: &[(&str, bool)] = &[
    ("Human:alice", true),
    ("Human:bob", false),
    ("Human:mallory", false),
    ("Agent:bot", true),
    ("Agent:calm-bot", true),
    ("Agent:quiet-bot", false),
    ("Agent:ghost", false),
    ("Credential:tok-1", true),
    ("Credential:tok-old", false),
    ("Credential:tok-q", false),
];
const ACTIONS: &[&str] = &[
    "read", "write", "delete", "deploy", "admin", "open", "unknown",
];
const RESOURCES: &[&str] = &[
    "Dataset:wiki",
    "Dataset:payroll",
    "Service:api",
    "Service:staging",
    "Document:memo",
    "Dataset:none",
];

fn entity_json(spec: &str) -> String {
    let (entity_type, id) = spec.split_once(':').unwrap();
    format!(r#"{{"type":"{entity_type}","id":"{id}"}}"#)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn inactive_or_unknown_principals_are_never_allowed(
        subject in 0..PRINCIPALS.len(),
        chain in proptest::collection::vec(0..PRINCIPALS.len(), 0..3),
        action in 0..ACTIONS.len(),
        resource in 0..RESOURCES.len(),
        claimed_properties in any::<bool>(),
        hour in -5i64..30,
    ) {
        let (subject_spec, subject_active) = PRINCIPALS[subject];
        let properties = if claimed_properties { r#","properties":{"lifecycle":"active","admin":true}"# } else { "" };
        let subject_json = entity_json(subject_spec);
        let subject_json = format!("{}{properties}}}", &subject_json[..subject_json.len() - 1]);
        let delegation: Vec<String> = chain.iter().map(|idx| entity_json(PRINCIPALS[*idx].0)).collect();
        let text = format!(
            r#"{{"subject":{subject_json},"action":{{"name":"{}"}},"resource":{},"context":{{"hour":{hour},"delegation":[{}]}}}}"#,
            ACTIONS[action],
            entity_json(RESOURCES[resource]),
            delegation.join(","),
        );
        let decision = decide(&world(), &text);
        let all_active = subject_active && chain.iter().all(|idx| PRINCIPALS[*idx].1);
        if !all_active {
            prop_assert_ne!(decision.outcome, Outcome::Allow, "{}", text);
        }
        if decision.outcome == Outcome::Allow {
            prop_assert_eq!(decision.hops.len(), chain.len() + 1);
            for hop in &decision.hops {
                prop_assert_eq!(hop.outcome, Outcome::Allow);
                prop_assert!(hop.guard.is_none());
                prop_assert!(!hop.determining.is_empty());
            }
        }
        prop_assert!(!decision.reason_admin.is_empty() && !decision.reason_user.is_empty());
    }
}
