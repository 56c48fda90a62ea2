//! JSON parsing for untrusted input: duplicate keys and excessive nesting are errors.
//!
//! serde_json silently keeps the last of two duplicate keys and only stops nesting at 128 levels.
//! For an authorization request both are attack surface (two parsers in a chain may disagree about
//! which `id` counts), so requests are parsed through this small visitor instead.

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses `text` as JSON, rejecting duplicate object keys and nesting deeper than `max_depth`.
pub fn parse_strict_json(text: &str, max_depth: usize) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = StrictValue {
        depth_left: max_depth,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

struct StrictValue {
    depth_left: usize,
}

impl StrictValue {
    fn nested<E: serde::de::Error>(&self) -> Result<StrictValue, E> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(StrictValue { depth_left }),
            None => Err(E::custom("JSON nested too deeply")),
        }
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue {
            depth_left: inner.depth_left,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested::<A::Error>()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(StrictValue {
                depth_left: inner.depth_left,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        let err = parse_strict_json(r#"{"a":{"id":"x","id":"y"}}"#, 8).unwrap_err();
        assert!(err.to_string().contains("duplicate key `id`"), "{err}");
    }

    #[test]
    fn rejects_deep_nesting_but_accepts_the_limit() {
        let at_limit = format!("{}{}", "[".repeat(4), "]".repeat(4));
        assert!(parse_strict_json(&at_limit, 4).is_ok());
        let over = format!("{}{}", "[".repeat(5), "]".repeat(5));
        assert!(parse_strict_json(&over, 4).is_err());
    }

    #[test]
    fn round_trips_ordinary_json() {
        let text = r#"{"b":[1,2,{"c":null}],"a":true,"n":-3,"s":"x"}"#;
        let strict = parse_strict_json(text, 16).unwrap();
        let lenient: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict, lenient);
    }

    #[test]
    fn rejects_trailing_garbage() {
        assert!(parse_strict_json("{} {}", 4).is_err());
    }
}
