//! Free-form data a merchant attaches to an object: `metadata` (string → string, bounded) and
//! `description`.

use super::ParseError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// At most 50 keys; keys 1–40 characters, values at most 500 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub const MAX_KEYS: usize = 50;
    pub const MAX_KEY_CHARS: usize = 40;
    pub const MAX_VALUE_CHARS: usize = 500;

    pub fn parse(entries: BTreeMap<String, String>) -> Result<Self, ParseError> {
        if entries.len() > Self::MAX_KEYS {
            return Err(ParseError::new(format!(
                "must have at most {} keys",
                Self::MAX_KEYS
            )));
        }
        for (key, value) in &entries {
            let key_chars = key.chars().count();
            if key_chars == 0 || key_chars > Self::MAX_KEY_CHARS {
                return Err(ParseError::new(format!(
                    "keys must be 1 to {} characters",
                    Self::MAX_KEY_CHARS
                )));
            }
            if value.chars().count() > Self::MAX_VALUE_CHARS {
                return Err(ParseError::new(format!(
                    "value of '{key}' must be at most {} characters",
                    Self::MAX_VALUE_CHARS
                )));
            }
        }
        Ok(Self(entries))
    }
}

/// A description of at most 1000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 1000;

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        if input.chars().count() > Self::MAX_CHARS {
            return Err(ParseError::new(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(input.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> BTreeMap<String, String> {
        (0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect()
    }

    #[test]
    fn key_count_is_bounded() {
        assert!(Metadata::parse(entries(50)).is_ok());
        assert!(Metadata::parse(entries(51)).is_err());
    }

    #[test]
    fn key_and_value_lengths_count_characters() {
        let ok = BTreeMap::from([("é".repeat(40), "ü".repeat(500))]);
        assert!(Metadata::parse(ok).is_ok());
        assert!(Metadata::parse(BTreeMap::from([("k".repeat(41), String::new())])).is_err());
        assert!(Metadata::parse(BTreeMap::from([(String::new(), "v".to_owned())])).is_err());
        assert!(Metadata::parse(BTreeMap::from([("k".to_owned(), "v".repeat(501))])).is_err());
    }

    #[test]
    fn description_is_bounded() {
        assert!(Description::parse(&"d".repeat(1000)).is_ok());
        assert!(Description::parse(&"d".repeat(1001)).is_err());
    }
}
