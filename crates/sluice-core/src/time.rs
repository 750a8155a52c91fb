//! Log time: timestamps are microseconds since the Unix epoch, UTC, as written in the logs.

use std::fmt;

/// A point in log time: microseconds since 1970-01-01T00:00:00Z.
///
/// Sluice never reads the wall clock to decide about traffic; every window and baseline is keyed
/// by these values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SEC;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

impl Timestamp {
    pub const fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Start of the minute that contains this instant.
    pub const fn minute_floor(self) -> Timestamp {
        Timestamp(self.0.div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE)
    }

    /// Start of the UTC day that contains this instant.
    pub const fn day_floor(self) -> Timestamp {
        Timestamp(self.0.div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY)
    }

    /// Build from a civil UTC date and time plus a UTC offset in seconds (east positive).
    ///
    /// Returns `None` when a field is out of range.
    #[allow(clippy::too_many_arguments)]
    pub fn from_civil(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        micros: u32,
        offset_secs: i32,
    ) -> Option<Timestamp> {
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
            || micros > 999_999
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let secs =
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
                - i64::from(offset_secs);
        Some(Timestamp(secs * MICROS_PER_SEC + i64::from(micros)))
    }

    pub fn to_chrono(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    pub fn from_chrono(dt: chrono::DateTime<chrono::Utc>) -> Self {
        Timestamp(dt.timestamp_micros())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            self.to_chrono()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )
    }
}

/// RFC 3339 text in JSON (`"2026-11-28T12:00:00Z"`), the same as [`fmt::Display`], so stored
/// reasons and histories read like the rest of the API.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|dt| Timestamp::from_chrono(dt.with_timezone(&chrono::Utc)))
            .map_err(|e| serde::de::Error::custom(format!("invalid RFC 3339 time {text:?}: {e}")))
    }
}

pub const fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub const fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_matches_chrono() {
        let ts = Timestamp::from_civil(2015, 5, 17, 10, 5, 3, 0, 0).unwrap();
        assert_eq!(ts.to_string(), "2015-05-17T10:05:03Z");
        let ts = Timestamp::from_civil(2000, 10, 10, 13, 55, 36, 0, -7 * 3600).unwrap();
        assert_eq!(ts.to_string(), "2000-10-10T20:55:36Z");
        assert!(Timestamp::from_civil(2023, 2, 29, 0, 0, 0, 0, 0).is_none());
        assert!(Timestamp::from_civil(2024, 2, 29, 0, 0, 0, 0, 0).is_some());
    }

    #[test]
    fn timestamps_are_rfc3339_in_json() {
        let ts = Timestamp::from_civil(2026, 11, 28, 12, 0, 1, 500_000, 0).unwrap();
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(json, "\"2026-11-28T12:00:01.500Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        let err = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("invalid RFC 3339 time \"yesterday\""));
    }

    #[test]
    fn floors_handle_negative_times() {
        let ts = Timestamp(-1);
        assert_eq!(ts.minute_floor(), Timestamp(-MICROS_PER_MINUTE));
        assert_eq!(ts.day_floor(), Timestamp(-MICROS_PER_DAY));
    }
}
