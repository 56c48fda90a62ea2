//! An optional Cedar schema: policies are validated against it at load, and entities and
//! requests are checked against it.

use crate::source_error::{locate, SourceError};
use cedar_policy_core::extensions::Extensions;
use cedar_policy_core::validator::ValidatorSchema;

/// A parsed Cedar schema (Cedar or JSON syntax).
#[derive(Debug, Clone)]
pub struct Schema {
    validator_schema: ValidatorSchema,
}

impl Schema {
    /// Parses a schema; JSON syntax when the text starts with `{`, Cedar syntax otherwise.
    pub fn parse(source_name: &str, text: &str) -> Result<Self, Vec<SourceError>> {
        let extensions = Extensions::all_available();
        let parsed = if text.trim_start().starts_with('{') {
            ValidatorSchema::from_json_str(text, extensions)
                .map_err(|err| locate(source_name, text, &err))
        } else {
            ValidatorSchema::from_cedarschema_str(text, extensions)
                .map(|(schema, _warnings)| schema)
                .map_err(|err| locate(source_name, text, &err))
        };
        parsed.map(|validator_schema| Self { validator_schema })
    }

    pub(crate) fn validator_schema(&self) -> &ValidatorSchema {
        &self.validator_schema
    }
}
