//! Signals that drive controls: a rule such as `anomaly_score >= 80 => quarantined` turns a
//! reported signal into a lifecycle change of its subject, or `risk >= 50 => downgrade:read-only`
//! into a runtime control (`docs/controls.md`), in the same write as the signal, and records the
//! signal that triggered it as the change's reason.

use arbiter_core::{ControlLevel, Lifecycle, Signal};
use std::str::FromStr;

/// How a rule compares the signal's value with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    AtLeast,
    Above,
    AtMost,
    Below,
    Equal,
}

/// What a rule does to the signal's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Then {
    /// Move it to this lifecycle state (quarantined or suspended).
    Lifecycle(Lifecycle),
    /// Place a runtime control of this level (with the overlay, for a downgrade).
    Control {
        level: ControlLevel,
        overlay: Option<String>,
    },
}

/// One rule: when signal `name` compares with `threshold`, do `then` to the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRule {
    name: String,
    comparison: Comparison,
    threshold: serde_json::Value,
    then: Then,
    text: String,
}

impl FromStr for SignalRule {
    type Err = String;

    /// `<signal> <op> <value> => <action>`, with `op` one of `>=`, `>`, `<=`, `<`, `==`; the
    /// value is an integer, `true`/`false`, or a string in double quotes; the action is
    /// `quarantined` or `suspended` (lifecycle), or `observe`, `require_approval` or
    /// `downgrade:<overlay>` (a runtime control).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "`{text}`: a signal rule reads `<signal> <op> <value> => <action>`, e.g. `anomaly_score >= 80 => quarantined`; actions: quarantined, suspended, observe, require_approval, downgrade:<overlay>"
            )
        };
        let (condition, then) = text.split_once("=>").ok_or_else(usage)?;
        let then = match then.trim() {
            "quarantined" | "quarantine" => Then::Lifecycle(Lifecycle::Quarantined),
            "suspended" | "suspend" => Then::Lifecycle(Lifecycle::Suspended),
            "observe" => Then::Control {
                level: ControlLevel::Observe,
                overlay: None,
            },
            "require_approval" => Then::Control {
                level: ControlLevel::RequireApproval,
                overlay: None,
            },
            other => match other.split_once(':') {
                Some(("downgrade", overlay)) if !overlay.trim().is_empty() => Then::Control {
                    level: ControlLevel::Downgrade,
                    overlay: Some(overlay.trim().to_owned()),
                },
                _ => {
                    return Err(format!(
                        "`{text}`: a rule may quarantine, suspend, observe, require approval or downgrade:<overlay>, not `{other}` (revocation stays a person's decision)"
                    ))
                }
            },
        };
        // Two-character operators first, so `>=` is not read as `>`.
        let operators = [
            (">=", Comparison::AtLeast),
            ("<=", Comparison::AtMost),
            ("==", Comparison::Equal),
            (">", Comparison::Above),
            ("<", Comparison::Below),
        ];
        let (name, comparison, value) = operators
            .iter()
            .find_map(|(symbol, comparison)| {
                condition
                    .split_once(symbol)
                    .map(|(name, value)| (name.trim(), *comparison, value.trim()))
            })
            .ok_or_else(usage)?;
        if name.is_empty() || value.is_empty() {
            return Err(usage());
        }
        let threshold: serde_json::Value = serde_json::from_str(value).map_err(|_| usage())?;
        let ordered = matches!(
            comparison,
            Comparison::AtLeast | Comparison::Above | Comparison::AtMost | Comparison::Below
        );
        if ordered && threshold.as_i64().is_none() {
            return Err(format!(
                "`{text}`: `{value}` must be an integer to compare with"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            comparison,
            threshold,
            then,
            text: text.trim().to_owned(),
        })
    }
}

impl SignalRule {
    /// What this signal calls for, if the rule matches it.
    pub(crate) fn fires(&self, signal: &Signal) -> Option<&Then> {
        if signal.name != self.name {
            return None;
        }
        let matched = match self.comparison {
            Comparison::Equal => signal.value == self.threshold,
            ordered => match (signal.value.as_i64(), self.threshold.as_i64()) {
                (Some(value), Some(threshold)) => match ordered {
                    Comparison::AtLeast => value >= threshold,
                    Comparison::Above => value > threshold,
                    Comparison::AtMost => value <= threshold,
                    Comparison::Below => value < threshold,
                    Comparison::Equal => false,
                },
                _ => false,
            },
        };
        matched.then_some(&self.then)
    }

    /// The rule as written.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The reason recorded with the change it makes.
    pub(crate) fn reason(&self, signal: &Signal) -> String {
        format!(
            "signal `{}` = {} from {} (observed at {}) matched rule `{}`",
            signal.name, signal.value, signal.source, signal.observed_at, self.text
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_core::EntityRef;
    use serde_json::json;

    fn signal(name: &str, value: serde_json::Value) -> Signal {
        Signal {
            subject: EntityRef::new("Agent", "a"),
            name: name.into(),
            value,
            source: "siem".into(),
            observed_at: 1,
            ttl_seconds: 60,
        }
    }

    #[test]
    fn rules_parse_compare_and_refuse_what_they_should() {
        let rule: SignalRule = "anomaly_score >= 80 => quarantined".parse().unwrap();
        assert_eq!(
            rule.fires(&signal("anomaly_score", json!(80))),
            Some(&Then::Lifecycle(Lifecycle::Quarantined))
        );
        assert_eq!(rule.fires(&signal("anomaly_score", json!(79))), None);
        assert_eq!(rule.fires(&signal("risk_score", json!(99))), None);
        assert_eq!(rule.fires(&signal("anomaly_score", json!("high"))), None);
        let posture: SignalRule = r#"device_posture == "failed" => suspended"#.parse().unwrap();
        assert_eq!(
            posture.fires(&signal("device_posture", json!("failed"))),
            Some(&Then::Lifecycle(Lifecycle::Suspended))
        );
        let downgrade: SignalRule = "risk >= 50 => downgrade:read-only".parse().unwrap();
        assert_eq!(
            downgrade.fires(&signal("risk", json!(60))),
            Some(&Then::Control {
                level: ControlLevel::Downgrade,
                overlay: Some("read-only".into())
            })
        );
        assert!("x >= 1 => revoked".parse::<SignalRule>().is_err());
        assert!("x >= 1 => downgrade:".parse::<SignalRule>().is_err());
        assert!("x >= high => quarantined".parse::<SignalRule>().is_err());
        assert!("nonsense".parse::<SignalRule>().is_err());
    }
}
