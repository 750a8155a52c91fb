//! Hand-rolled number and timestamp parsing for the hot path (no chrono, no allocation).
//!
//! Every function returns a short lowercase problem text on failure; callers wrap it into a
//! [`crate::ParseError::Field`] together with the field name and the value.

use sluice_core::time::{days_in_month, Timestamp};

pub(crate) type Problem = &'static str;

pub(crate) const NOT_A_NUMBER: Problem = "not a number";
pub(crate) const TOO_LARGE: Problem = "number too large";

/// A non-negative decimal integer.
pub(crate) fn parse_u64(b: &[u8]) -> Result<u64, Problem> {
    if b.is_empty() {
        return Err(NOT_A_NUMBER);
    }
    let mut n: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(NOT_A_NUMBER);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or(TOO_LARGE)?;
    }
    Ok(n)
}

/// A non-negative decimal number such as `0.123` multiplied by `10^scale` and truncated: with
/// `scale = 6`, seconds become microseconds. Digits beyond the scale are dropped.
pub(crate) fn parse_scaled(b: &[u8], scale: u32) -> Result<u64, Problem> {
    let (int, frac) = match memchr::memchr(b'.', b) {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    if int.is_empty() && frac.is_none_or(|f| f.is_empty()) {
        return Err(NOT_A_NUMBER);
    }
    let whole = if int.is_empty() { 0 } else { parse_u64(int)? };
    let mut n = whole.checked_mul(10u64.pow(scale)).ok_or(TOO_LARGE)?;
    if let Some(frac) = frac {
        let mut unit = 10u64.pow(scale);
        for &c in frac {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return Err(NOT_A_NUMBER);
            }
            unit /= 10;
            n = n.checked_add(u64::from(d) * unit).ok_or(TOO_LARGE)?;
        }
    }
    Ok(n)
}

/// An HTTP status: one to three digits (`0` is Envoy's "no response was sent").
pub(crate) fn parse_status(b: &[u8]) -> Result<u16, Problem> {
    let n = parse_u64(b)?;
    if b.len() > 3 {
        return Err("out of range (expected 0 to 999)");
    }
    Ok(n as u16)
}

#[inline]
fn d2(b: &[u8], i: usize) -> Option<u32> {
    let x = b.get(i)?.wrapping_sub(b'0');
    let y = b.get(i + 1)?.wrapping_sub(b'0');
    (x <= 9 && y <= 9).then(|| u32::from(x) * 10 + u32::from(y))
}

#[inline]
fn d4(b: &[u8], i: usize) -> Option<u32> {
    Some(d2(b, i)? * 100 + d2(b, i + 2)?)
}

const CLF_SHAPE: Problem = "expected dd/Mon/yyyy:hh:mm:ss +hhmm";

/// `10/Oct/2000:13:55:36 -0700` (nginx `$time_local`, Apache `%t` without brackets).
pub(crate) fn parse_clf(b: &[u8]) -> Result<Timestamp, Problem> {
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
        || (b[21] != b'+' && b[21] != b'-')
    {
        return Err(CLF_SHAPE);
    }
    let (Some(day), Some(year), Some(hour), Some(min), Some(sec), Some(oh), Some(om)) = (
        d2(b, 0),
        d4(b, 7),
        d2(b, 12),
        d2(b, 15),
        d2(b, 18),
        d2(b, 22),
        d2(b, 24),
    ) else {
        return Err(CLF_SHAPE);
    };
    let month = month_number(&b[3..6]).ok_or("unknown month")?;
    let offset = offset_secs(b[21], oh, om)?;
    civil(year as i32, month, day, hour, min, sec, 0, offset)
}

fn month_number(m: &[u8]) -> Option<u32> {
    Some(match m {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

fn offset_secs(sign: u8, hours: u32, minutes: u32) -> Result<i32, Problem> {
    if hours > 23 || minutes > 59 {
        return Err("utc offset out of range");
    }
    let secs = (hours * 3600 + minutes * 60) as i32;
    Ok(if sign == b'-' { -secs } else { secs })
}

#[allow(clippy::too_many_arguments)]
fn civil(
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    micros: u32,
    offset: i32,
) -> Result<Timestamp, Problem> {
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    if hour > 23 {
        return Err("hour out of range");
    }
    if min > 59 {
        return Err("minute out of range");
    }
    if sec > 60 {
        return Err("second out of range");
    }
    Timestamp::from_civil(year, month, day, hour, min, sec, micros, offset).ok_or("out of range")
}

const ISO_SHAPE: Problem = "expected yyyy-mm-ddThh:mm:ss[.ffffff] followed by Z or +hh:mm";

/// RFC 3339 / ISO 8601 with a UTC offset: `2016-04-15T20:17:00.310Z`, `2000-10-10T13:55:36-07:00`,
/// `+0000` offsets and a space instead of `T` are accepted. Fractions past microseconds are
/// truncated.
pub(crate) fn parse_iso(b: &[u8]) -> Result<Timestamp, Problem> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(ISO_SHAPE);
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(min), Some(sec)) = (
        d4(b, 0),
        d2(b, 5),
        d2(b, 8),
        d2(b, 11),
        d2(b, 14),
        d2(b, 17),
    ) else {
        return Err(ISO_SHAPE);
    };
    let mut i = 19;
    let mut micros = 0u32;
    if b[i] == b'.' || b[i] == b',' {
        i += 1;
        let start = i;
        let mut unit = 100_000;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            micros += u32::from(c - b'0') * unit;
            unit /= 10;
            i += 1;
        }
        if i == start {
            return Err(ISO_SHAPE);
        }
    }
    let zone = &b[i..];
    let offset = match zone {
        b"Z" | b"z" => 0,
        [s @ (b'+' | b'-'), _, _, b':', _, _] | [s @ (b'+' | b'-'), _, _, _, _] => {
            let oh = d2(zone, 1).ok_or(ISO_SHAPE)?;
            let om = d2(zone, zone.len() - 2).ok_or(ISO_SHAPE)?;
            offset_secs(*s, oh, om)?
        }
        _ => return Err(ISO_SHAPE),
    };
    civil(year as i32, month, day, hour, min, sec, micros, offset)
}

/// Time since the epoch: the decimal value times
/// `10^scale` is microseconds (`scale` 6 for seconds like `1589369000.123`, 3 for milliseconds).
pub(crate) fn parse_epoch(b: &[u8], scale: u32) -> Result<Timestamp, Problem> {
    let us = parse_scaled(b, scale)?;
    if us > i64::MAX as u64 {
        return Err(TOO_LARGE);
    }
    Ok(Timestamp(us as i64))
}

/// Append `ts` as RFC 3339 in UTC: `2015-05-17T10:05:03Z`, with `.mmm` or `.uuuuuu` when the
/// instant has a fraction.
pub(crate) fn write_rfc3339(ts: Timestamp, out: &mut Vec<u8>) {
    let us = ts.micros();
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    put(out, y.clamp(0, 9999) as u32, 4);
    out.push(b'-');
    put(out, m, 2);
    out.push(b'-');
    put(out, d, 2);
    out.push(b'T');
    put(out, sod / 3600, 2);
    out.push(b':');
    put(out, sod / 60 % 60, 2);
    out.push(b':');
    put(out, sod % 60, 2);
    if frac != 0 {
        out.push(b'.');
        if frac.is_multiple_of(1000) {
            put(out, frac / 1000, 3);
        } else {
            put(out, frac, 6);
        }
    }
    out.push(b'Z');
}

fn put(out: &mut Vec<u8>, v: u32, width: u32) {
    for k in (0..width).rev() {
        out.push(b'0' + (v / 10u32.pow(k) % 10) as u8);
    }
}

/// Proleptic Gregorian date of a day number (days since 1970-01-01), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: std::fmt::Debug + PartialEq>(got: Result<T, Problem>, expect: Result<T, Problem>) {
        assert_eq!(got, expect);
    }

    fn ts(s: &str) -> Timestamp {
        let mut us = 0;
        // "2000-10-10T20:55:36Z" style, via the core type so the tests do not trust parse_iso
        let b = s.as_bytes();
        let t = Timestamp::from_civil(
            s[0..4].parse().unwrap(),
            s[5..7].parse().unwrap(),
            s[8..10].parse().unwrap(),
            s[11..13].parse().unwrap(),
            s[14..16].parse().unwrap(),
            s[17..19].parse().unwrap(),
            0,
            0,
        )
        .unwrap();
        if b.len() > 20 {
            us = s[20..s.len() - 1].parse::<i64>().unwrap();
        }
        Timestamp(t.0 + us)
    }

    #[test]
    fn numbers() {
        check(parse_u64(b"0"), Ok(0));
        check(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        check(parse_u64(b"18446744073709551616"), Err(TOO_LARGE));
        check(parse_u64(b""), Err(NOT_A_NUMBER));
        check(parse_u64(b"-1"), Err(NOT_A_NUMBER));
        check(parse_u64(b"2x0"), Err(NOT_A_NUMBER));
        check(parse_scaled(b"0.123", 6), Ok(123_000));
        check(parse_scaled(b"1.5", 3), Ok(1_500));
        check(parse_scaled(b"12", 6), Ok(12_000_000));
        check(parse_scaled(b"0.1234567", 6), Ok(123_456));
        check(parse_scaled(b".5", 6), Ok(500_000));
        check(parse_scaled(b"3.", 6), Ok(3_000_000));
        check(parse_scaled(b".", 6), Err(NOT_A_NUMBER));
        check(parse_scaled(b"1.2.3", 6), Err(NOT_A_NUMBER));
        check(parse_scaled(b"99999999999999999", 6), Err(TOO_LARGE));
        check(parse_status(b"200"), Ok(200));
        check(parse_status(b"0"), Ok(0));
        check(
            parse_status(b"1000"),
            Err("out of range (expected 0 to 999)"),
        );
    }

    #[test]
    fn clf_times() {
        check(
            parse_clf(b"10/Oct/2000:13:55:36 -0700"),
            Ok(ts("2000-10-10T20:55:36Z")),
        );
        check(
            parse_clf(b"17/May/2015:10:05:03 +0000"),
            Ok(ts("2015-05-17T10:05:03Z")),
        );
        check(
            parse_clf(b"32/May/2015:10:05:03 +0000"),
            Err("day out of range"),
        );
        check(
            parse_clf(b"29/Feb/2015:10:05:03 +0000"),
            Err("day out of range"),
        );
        check(
            parse_clf(b"17/Mai/2015:10:05:03 +0000"),
            Err("unknown month"),
        );
        check(
            parse_clf(b"17/May/2015:24:05:03 +0000"),
            Err("hour out of range"),
        );
        check(
            parse_clf(b"17/May/2015:23:60:03 +0000"),
            Err("minute out of range"),
        );
        check(
            parse_clf(b"17/May/2015:23:59:61 +0000"),
            Err("second out of range"),
        );
        check(
            parse_clf(b"17/May/2015:23:59:59 +2500"),
            Err("utc offset out of range"),
        );
        check(parse_clf(b"17/May/2015:10:05:03"), Err(CLF_SHAPE));
        check(parse_clf(b"1x/May/2015:10:05:03 +0000"), Err(CLF_SHAPE));
    }

    #[test]
    fn iso_times() {
        check(
            parse_iso(b"2016-04-15T20:17:00.310Z"),
            Ok(ts("2016-04-15T20:17:00.310000Z")),
        );
        check(
            parse_iso(b"2000-10-10T13:55:36-07:00"),
            Ok(ts("2000-10-10T20:55:36Z")),
        );
        check(
            parse_iso(b"2000-10-10T13:55:36+0000"),
            Ok(ts("2000-10-10T13:55:36Z")),
        );
        check(
            parse_iso(b"2000-10-10 13:55:36.123456789Z"),
            Ok(ts("2000-10-10T13:55:36.123456Z")),
        );
        check(
            parse_iso(b"2000-13-10T13:55:36Z"),
            Err("month out of range"),
        );
        check(parse_iso(b"2000-10-10T13:55:36"), Err(ISO_SHAPE));
        check(parse_iso(b"2000-10-10T13:55:36.Z"), Err(ISO_SHAPE));
        check(parse_iso(b"2000-10-10T13:55:36+07"), Err(ISO_SHAPE));
        check(
            parse_epoch(b"1589369000.123", 6),
            Ok(Timestamp(1_589_369_000_123_000)),
        );
        check(
            parse_epoch(b"1589369000123", 3),
            Ok(Timestamp(1_589_369_000_123_000)),
        );
    }

    #[test]
    fn rfc3339_round_trips() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2015-05-17T10:05:03Z",
            "2016-04-15T20:17:00.310Z",
            "2024-02-29T23:59:59.000001Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            let t = parse_iso(s.as_bytes()).unwrap();
            let mut out = Vec::new();
            write_rfc3339(t, &mut out);
            let back = parse_iso(&out).unwrap();
            assert_eq!(back, t, "{s} -> {}", String::from_utf8_lossy(&out));
        }
        let mut out = Vec::new();
        write_rfc3339(Timestamp(1_589_369_000_123_456), &mut out);
        assert_eq!(out, b"2020-05-13T11:23:20.123456Z");
    }
}
