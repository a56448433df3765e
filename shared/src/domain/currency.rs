//! ISO 4217 currencies and their minor-unit exponents.
//!
//! The table itself comes from the `iso_currency` crate (generated from the ISO list), so that
//! adding a currency is a dependency bump, not a hand edit. We accept every code that is in
//! circulation and has a minor unit: superseded codes (HRK, SLL, …) and units without one
//! (precious metals, XXX, XTS) are rejected.

use super::ParseError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An active ISO 4217 currency with a minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency {
    code: iso_currency::Currency,
    exponent: u8,
}

impl Currency {
    /// Parses an alphabetic code, case-insensitively (`"usd"` is `USD`).
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let unknown = || {
            ParseError::new(format!(
                "'{input}' is not a supported ISO 4217 currency code"
            ))
        };
        if input.len() != 3 || !input.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(unknown());
        }
        let code =
            iso_currency::Currency::from_code(&input.to_ascii_uppercase()).ok_or_else(unknown)?;
        if code.is_superseded().is_some() {
            return Err(unknown());
        }
        let exponent = code.exponent().ok_or_else(unknown)?;
        let exponent = u8::try_from(exponent).map_err(|_| unknown())?;
        Ok(Self { code, exponent })
    }

    /// The uppercase alphabetic code, as the API returns it.
    pub fn code(&self) -> &'static str {
        self.code.code()
    }

    /// How many decimal places the minor unit has (USD 2, JPY 0, KWD 3).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for Currency {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> String {
        currency.code().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_case_insensitive_and_output_uppercase() {
        assert_eq!(Currency::parse("usd").unwrap().code(), "USD");
        assert_eq!(Currency::parse("UsD").unwrap().to_string(), "USD");
    }

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(Currency::parse("USD").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().exponent(), 3);
        assert_eq!(Currency::parse("CLF").unwrap().exponent(), 4);
        assert_eq!(Currency::parse("EUR").unwrap().exponent(), 2);
    }

    #[test]
    fn unknown_superseded_and_unitless_codes_are_rejected() {
        for code in ["XYZ", "us", "USDD", "", "HRK", "XAU", "XXX", "12$", "ÜSD"] {
            assert!(Currency::parse(code).is_err(), "{code} should be rejected");
        }
    }

    #[test]
    fn round_trips_through_serde() {
        let usd = Currency::parse("usd").unwrap();
        let json = serde_json::to_string(&usd).unwrap();
        assert_eq!(json, "\"USD\"");
        assert_eq!(serde_json::from_str::<Currency>(&json).unwrap(), usd);
    }
}
