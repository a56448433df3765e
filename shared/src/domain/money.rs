//! Amounts of money: integers in the currency's minor unit (cents, yen, fils), never floats.

use super::ParseError;
use serde::{Deserialize, Serialize};

/// A positive amount in minor units, within the range the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Amount(i64);

impl Amount {
    /// The smallest amount accepted: one minor unit.
    pub const MIN: i64 = 1;
    /// The largest amount accepted (eleven digits, as large card networks allow).
    pub const MAX: i64 = 99_999_999_999;

    pub fn parse(value: i64) -> Result<Self, ParseError> {
        if (Self::MIN..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(ParseError::new(format!(
                "must be an integer between {} and {} (minor units)",
                Self::MIN,
                Self::MAX
            )))
        }
    }

    /// The amount in minor units.
    pub fn minor_units(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Amount {
    type Error = ParseError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Amount> for i64 {
    fn from(amount: Amount) -> i64 {
        amount.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounds_are_inclusive() {
        assert!(Amount::parse(1).is_ok());
        assert!(Amount::parse(99_999_999_999).is_ok());
        assert!(Amount::parse(0).is_err());
        assert!(Amount::parse(-1).is_err());
        assert!(Amount::parse(100_000_000_000).is_err());
        assert!(Amount::parse(i64::MAX).is_err());
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_range(v in any::<i64>()) {
            let in_range = (Amount::MIN..=Amount::MAX).contains(&v);
            prop_assert_eq!(Amount::parse(v).is_ok(), in_range);
            if in_range {
                prop_assert_eq!(Amount::parse(v).unwrap().minor_units(), v);
            }
        }
    }
}
