//! Signals that drive controls: a rule such as `anomaly_score >= 80 => quarantined` turns a
//! reported signal into a lifecycle change of its subject, in the same write as the signal, and
//! records the signal that triggered it as the change's reason.

use arbiter_core::{Lifecycle, Signal};
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

/// One rule: when signal `name` compares with `threshold`, move the subject to `then`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRule {
    name: String,
    comparison: Comparison,
    threshold: serde_json::Value,
    then: Lifecycle,
    text: String,
}

impl FromStr for SignalRule {
    type Err = String;

    /// `<signal> <op> <value> => <suspended|quarantined>`, with `op` one of `>=`, `>`, `<=`,
    /// `<`, `==`; the value is an integer, `true`/`false`, or a string in double quotes.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "`{text}`: a signal rule reads `<signal> <op> <value> => <suspended|quarantined>`, e.g. `anomaly_score >= 80 => quarantined`"
            )
        };
        let (condition, then) = text.split_once("=>").ok_or_else(usage)?;
        let then = match then.trim() {
            "quarantined" | "quarantine" => Lifecycle::Quarantined,
            "suspended" | "suspend" => Lifecycle::Suspended,
            other => {
                return Err(format!(
                    "`{text}`: a rule may quarantine or suspend, not `{other}` (revocation stays a person's decision)"
                ))
            }
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
    /// The lifecycle this signal calls for, if the rule matches it.
    pub(crate) fn fires(&self, signal: &Signal) -> Option<Lifecycle> {
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
        matched.then_some(self.then)
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
            Some(Lifecycle::Quarantined)
        );
        assert_eq!(rule.fires(&signal("anomaly_score", json!(79))), None);
        assert_eq!(rule.fires(&signal("risk_score", json!(99))), None);
        assert_eq!(rule.fires(&signal("anomaly_score", json!("high"))), None);
        let posture: SignalRule = r#"device_posture == "failed" => suspended"#.parse().unwrap();
        assert_eq!(
            posture.fires(&signal("device_posture", json!("failed"))),
            Some(Lifecycle::Suspended)
        );
        assert!("x >= 1 => revoked".parse::<SignalRule>().is_err());
        assert!("x >= high => quarantined".parse::<SignalRule>().is_err());
        assert!("nonsense".parse::<SignalRule>().is_err());
    }
}
