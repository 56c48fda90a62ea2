//! Loading policies, schemas and inventories: errors are located and nothing half-loads.

use arbiter_core::{EntityRef, Identity, IdentityKind, InventoryDocument, Lifecycle};
use arbiter_engine::{
    InventoryBuilder, PolicySet, PolicySource, Schema, MAX_BRACKET_NESTING, MAX_EXPRESSION_DEPTH,
};

fn source(name: &str, text: &str) -> PolicySource {
    PolicySource {
        name: name.into(),
        text: text.into(),
    }
}

#[test]
fn parse_errors_name_file_line_and_column() {
    let err = PolicySet::compile(
        vec![source(
            "a.cedar",
            "permit(principal, action, resource);\npermit(principal, action resource);",
        )],
        None,
        1,
    )
    .unwrap_err();
    let first = &err.errors[0];
    assert_eq!(first.source_name, "a.cedar");
    assert_eq!(first.line, Some(2));
    assert!(first.column.is_some());
}

const SCHEMA: &str = r#"
entity Human;
entity Agent { tier: Long };
entity Dataset;
action read appliesTo { principal: [Agent, Human], resource: Dataset };
"#;

/// Compiles on a thread with the 2 MiB stack of a tokio worker, where a server compiles an
/// uploaded policy set: a stack overflow there aborts the process, so the test would too.
fn compile_on_a_worker_stack(text: String) -> Result<PolicySet, arbiter_engine::PolicyError> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || PolicySet::compile(vec![source("deep.cedar", &text)], None, 1))
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deeply_nested_brackets_are_refused_where_they_nest_too_deep() {
    // Cedar's parser recurses per bracket and overflowed a 2 MiB stack at about 150 levels.
    let levels = 1_000;
    let text = format!(
        "permit(principal, action, resource)\n  when {{ {}context.mfa{} }};",
        "(".repeat(levels),
        ")".repeat(levels)
    );
    let err = compile_on_a_worker_stack(text).unwrap_err();
    let first = &err.errors[0];
    // Line 2 is `  when { ((((…`: the brace is the first level, the first parenthesis at column 10.
    assert_eq!(
        (first.line, first.column),
        (Some(2), Some(9 + MAX_BRACKET_NESTING)),
        "{err}"
    );
    assert!(first.message.contains("nest"), "{err}");

    // Brackets in strings and comments do not count; nesting within the limit compiles.
    let quoted = "(".repeat(500);
    let within = MAX_BRACKET_NESTING - 3;
    let text = format!(
        "// {quoted}\npermit(principal, action, resource) when {{ {}context.note == \"{quoted}\"{} }};",
        "(".repeat(within),
        ")".repeat(within)
    );
    assert_eq!(compile_on_a_worker_stack(text).unwrap().len(), 1);
}

#[test]
fn conditions_nested_too_deep_are_refused_by_policy() {
    let chain = |terms: usize| {
        let terms: Vec<String> = (0..terms).map(|i| format!("context.n != {i}")).collect();
        format!(
            "@id(\"long\")\npermit(principal, action, resource) when {{ {} }};",
            terms.join(" && ")
        )
    };
    // A chain of `&&` nests one level per term; 5,000 overflowed a 2 MiB stack compiling.
    let err = compile_on_a_worker_stack(chain(5_000)).unwrap_err();
    assert!(err.errors[0].message.contains("`long`"), "{err}");
    assert!(
        err.errors[0]
            .message
            .contains(&MAX_EXPRESSION_DEPTH.to_string()),
        "{err}"
    );
    assert_eq!(compile_on_a_worker_stack(chain(240)).unwrap().len(), 1);
    assert!(compile_on_a_worker_stack(chain(300)).is_err());
}

#[test]
fn validation_errors_name_file_line_and_column() {
    let schema = Schema::parse("schema.cedarschema", SCHEMA).unwrap();
    let text = "permit(principal is Agent, action == Action::\"read\", resource)\n  when { principal.tier == \"high\" };";
    let err = PolicySet::compile(vec![source("p.cedar", text)], Some(&schema), 1).unwrap_err();
    let first = &err.errors[0];
    assert_eq!(
        (first.source_name.as_str(), first.line),
        ("p.cedar", Some(2)),
        "{err}"
    );
    let ok = "permit(principal is Agent, action == Action::\"read\", resource) when { principal.tier > 2 };";
    assert_eq!(
        PolicySet::compile(vec![source("p.cedar", ok)], Some(&schema), 1)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn schema_errors_are_located() {
    let errors = Schema::parse(
        "bad.cedarschema",
        "entity Human;\nentity Agent { tier: Lng };",
    )
    .unwrap_err();
    assert_eq!(errors[0].source_name, "bad.cedarschema");
    assert!(errors[0].to_string().contains("Lng"), "{}", errors[0]);
}

#[test]
fn ids_come_from_annotations_or_sources() {
    let set = PolicySet::compile(
        vec![
            source(
                "a.cedar",
                "@id(\"named\") permit(principal, action, resource);",
            ),
            source("b.cedar", "permit(principal, action, resource);"),
        ],
        None,
        1,
    )
    .unwrap();
    assert_eq!(
        set.ids().collect::<Vec<_>>(),
        vec!["named", "b.cedar#policy0"]
    );
    let duplicate = PolicySet::compile(
        vec![
            source("a.cedar", "@id(\"x\") permit(principal, action, resource);"),
            source("b.cedar", "@id(\"x\") forbid(principal, action, resource);"),
        ],
        None,
        1,
    );
    assert!(duplicate
        .unwrap_err()
        .to_string()
        .contains("duplicate policy id `x`"));
}

#[test]
fn templates_are_refused_clearly() {
    let err = PolicySet::compile(
        vec![source(
            "t.cedar",
            "permit(principal == ?principal, action, resource);",
        )],
        None,
        1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("template"), "{err}");
}

#[test]
fn digests_change_with_any_byte() {
    let a = PolicySet::compile(
        vec![source("a", "permit(principal, action, resource);")],
        None,
        1,
    )
    .unwrap();
    let b = PolicySet::compile(
        vec![source("a", "permit(principal, action, resource );")],
        None,
        1,
    )
    .unwrap();
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest().len(), 64);
}

#[test]
fn inventory_attributes_cannot_shadow_governance_facts() {
    let mut identity = Identity {
        id: "bot".into(),
        kind: IdentityKind::AiAgent,
        display_name: None,
        owner: Some("alice".into()),
        sponsor: None,
        lifecycle: Lifecycle::Active,
        member_of: vec![],
        credential: None,
        attributes: Default::default(),
    };
    identity
        .attributes
        .insert("lifecycle".into(), serde_json::json!("active"));
    let document = InventoryDocument {
        identities: vec![identity],
        ..Default::default()
    };
    let err = InventoryBuilder::new()
        .add_document(&document)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("`lifecycle` is reserved"), "{err}");
}

#[test]
fn plain_cedar_entities_load_with_their_hierarchy() {
    let mut builder = InventoryBuilder::new();
    builder
        .add_cedar_entities(serde_json::json!([
            {"uid": {"type": "User", "id": "u"}, "attrs": {}, "parents": [{"type": "Group", "id": "g"}]},
            {"uid": {"type": "Group", "id": "g"}, "attrs": {}, "parents": [{"type": "Group", "id": "top"}]}
        ]))
        .unwrap();
    let inventory = builder.build(None).unwrap();
    assert_eq!(inventory.len(), 2);
    assert!(inventory.contains(&EntityRef::new("User", "u")));
    let json = inventory.entity_json(&EntityRef::new("User", "u")).unwrap();
    assert_eq!(
        json["parents"].as_array().unwrap().len(),
        2,
        "ancestors are closed: {json}"
    );
}

#[test]
fn hierarchy_cycles_are_rejected() {
    let mut builder = InventoryBuilder::new();
    builder
        .add_cedar_entities(serde_json::json!([
            {"uid": {"type": "Group", "id": "a"}, "attrs": {}, "parents": [{"type": "Group", "id": "b"}]},
            {"uid": {"type": "Group", "id": "b"}, "attrs": {}, "parents": [{"type": "Group", "id": "a"}]}
        ]))
        .unwrap();
    assert!(builder.build(None).is_err());
}

#[test]
fn floats_in_signals_are_refused_with_a_fix() {
    let document: InventoryDocument = serde_json::from_value(serde_json::json!({
        "signals": [{"subject": {"type": "Agent", "id": "a"}, "name": "anomaly", "value": 0.83,
                     "source": "ml", "observed_at": 0, "ttl_seconds": 60}]
    }))
    .unwrap();
    let err = InventoryBuilder::new()
        .add_document(&document)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("no floating point"), "{err}");
}
