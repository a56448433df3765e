//! Timestamps as the API shows them: RFC 3339, UTC, exactly three fractional digits.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A UTC instant with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Truncates `at` to whole milliseconds, so that what we store is what we show.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let at = at.to_offset(time::UtcOffset::UTC);
        let millis = at.millisecond();
        Self(at.replace_millisecond(millis).unwrap_or(at))
    }

    pub fn as_datetime(&self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl TryFrom<String> for Timestamp {
    type Error = time::error::Parse;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Ok(Self(PrimitiveDateTime::parse(&value, FORMAT)?.assume_utc()))
    }
}

impl From<Timestamp> for String {
    fn from(ts: Timestamp) -> String {
        ts.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let ts = Timestamp::from_datetime(datetime!(2026-11-23 19:00:00.123456 UTC));
        assert_eq!(ts.to_string(), "2026-11-23T19:00:00.123Z");
        let whole = Timestamp::from_datetime(datetime!(2026-11-23 19:00:00 +02:00));
        assert_eq!(whole.to_string(), "2026-11-23T17:00:00.000Z");
    }

    #[test]
    fn round_trips_through_its_text() {
        let ts = Timestamp::from_datetime(datetime!(2026-01-02 03:04:05.678 UTC));
        assert_eq!(Timestamp::try_from(ts.to_string()).unwrap(), ts);
    }
}
