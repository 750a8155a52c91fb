//! `timestamp,value` series input and `timestamp,value,anomaly_score` output, as plain CSV.
//!
//! The reader is deliberately small: one header line naming a `timestamp` and a `value` column
//! (any order, extra columns ignored), then one row per line. Timestamps are either NAB's naive
//! `YYYY-MM-DD HH:MM:SS` (read as UTC) or RFC 3339. An empty value or `NaN` is a missing value
//! (kept as `f64::NAN`, which the detector skips); anything else that is not a number is an error.

use std::io::{self, BufRead, BufReader, Read, Write};

use sluice_core::Timestamp;

/// One row of an input series. The original text of both fields is kept so the output can repeat
/// the input byte for byte.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesPoint {
    pub timestamp: Timestamp,
    /// The timestamp exactly as written in the input.
    pub timestamp_text: String,
    /// `f64::NAN` when the value is missing.
    pub value: f64,
    /// The value exactly as written in the input.
    pub value_text: String,
}

/// Why a series file could not be read. Line numbers are 1-based and count the header.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("failed to read series: {0}")]
    Io(#[from] io::Error),
    #[error("empty input: expected a header line with `timestamp` and `value` columns")]
    Empty,
    #[error("line 1: header has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("line {line}: expected {expected} fields, found {found}")]
    FieldCount {
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("line {line}: invalid timestamp {text:?}: expected `YYYY-MM-DD HH:MM:SS` or RFC 3339")]
    Timestamp { line: usize, text: String },
    #[error("line {line}: invalid value {text:?}")]
    Value { line: usize, text: String },
}

/// Read a `timestamp,value` series with a header line. Blank lines are skipped.
pub fn read_series_csv(r: impl Read) -> Result<Vec<SeriesPoint>, SeriesError> {
    let mut lines = BufReader::new(r).lines();
    let header = loop {
        match lines.next() {
            None => return Err(SeriesError::Empty),
            Some(line) => {
                let line = line?;
                if !line.trim().is_empty() {
                    break line;
                }
            }
        }
    };
    let names: Vec<String> = split_fields(header.trim_start_matches('\u{feff}'))
        .map(|f| f.to_ascii_lowercase())
        .collect();
    let column = |name: &'static str| {
        names
            .iter()
            .position(|n| n == name)
            .ok_or(SeriesError::MissingColumn(name))
    };
    let (ts_col, value_col) = (column("timestamp")?, column("value")?);
    let mut points = Vec::new();
    for (i, line) in lines.enumerate() {
        let line_no = i + 2;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = split_fields(&line).collect();
        if fields.len() != names.len() {
            return Err(SeriesError::FieldCount {
                line: line_no,
                expected: names.len(),
                found: fields.len(),
            });
        }
        let (ts_text, value_text) = (fields[ts_col], fields[value_col]);
        let timestamp = parse_timestamp(ts_text).ok_or_else(|| SeriesError::Timestamp {
            line: line_no,
            text: ts_text.to_string(),
        })?;
        let value = parse_value(value_text).ok_or_else(|| SeriesError::Value {
            line: line_no,
            text: value_text.to_string(),
        })?;
        points.push(SeriesPoint {
            timestamp,
            timestamp_text: ts_text.to_string(),
            value,
            value_text: value_text.to_string(),
        });
    }
    Ok(points)
}

/// Write `timestamp,value,anomaly_score`, one row per point, repeating the input text of the
/// timestamp and the value. Fails with `InvalidInput` when the lengths differ.
pub fn write_scored_csv(
    mut w: impl Write,
    points: &[SeriesPoint],
    scores: &[f64],
) -> io::Result<()> {
    if points.len() != scores.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "points and scores differ in length: {} vs {}",
                points.len(),
                scores.len()
            ),
        ));
    }
    writeln!(w, "timestamp,value,anomaly_score")?;
    for (p, s) in points.iter().zip(scores) {
        writeln!(w, "{},{},{}", p.timestamp_text, p.value_text, s)?;
    }
    w.flush()
}

fn split_fields(line: &str) -> impl Iterator<Item = &str> {
    line.trim_end_matches(['\r', '\n']).split(',').map(|f| {
        let f = f.trim();
        f.strip_prefix('"')
            .and_then(|f| f.strip_suffix('"'))
            .unwrap_or(f)
    })
}

fn parse_value(text: &str) -> Option<f64> {
    if text.is_empty() || text.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    text.parse::<f64>().ok().filter(|v| !v.is_infinite())
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z|z|±HH:MM]`; without an offset the time is UTC.
pub fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b' ' | b'T' | b't') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let s = &text[from..to];
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut rest = &text[19..];
    let mut micros = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let mut scaled: String = frac[..digits.min(6)].to_string();
        while scaled.len() < 6 {
            scaled.push('0');
        }
        micros = scaled.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_secs: i32 = match rest.as_bytes() {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let d = |c: u8| i32::from(c - b'0');
            let secs = (d(*h1) * 10 + d(*h2)) * 3600 + (d(*m1) * 10 + d(*m2)) * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    Timestamp::from_civil(
        i32::try_from(year).ok()?,
        month,
        day,
        hour,
        minute,
        second,
        micros,
        offset_secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `((year, month, day), (hour, minute, second), micros, offset_secs)`
    type Civil = ((i32, u32, u32), (u32, u32, u32), u32, i32);

    fn ts(((y, mo, d), (h, mi, s), us, off): Civil) -> Timestamp {
        Timestamp::from_civil(y, mo, d, h, mi, s, us, off).unwrap()
    }

    #[test]
    fn parses_timestamps() {
        let cases: &[(&str, Option<Timestamp>)] = &[
            (
                "2014-04-01 00:00:00",
                Some(ts(((2014, 4, 1), (0, 0, 0), 0, 0))),
            ),
            (
                "2014-04-01T13:05:09Z",
                Some(ts(((2014, 4, 1), (13, 5, 9), 0, 0))),
            ),
            (
                "2014-04-01T13:05:09.25+02:00",
                Some(ts(((2014, 4, 1), (13, 5, 9), 250_000, 7200))),
            ),
            (
                "2014-04-01t13:05:09-00:30",
                Some(ts(((2014, 4, 1), (13, 5, 9), 0, -1800))),
            ),
            ("2014-02-30 00:00:00", None),
            ("2014-04-01", None),
            ("2014-04-01 00:00:00+0200", None),
            ("2014-04-01 00:00:00.", None),
            ("2014/04/01 00:00:00", None),
            ("2014-04-01 0a:00:00", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timestamp(text), *want, "{text}");
        }
    }

    #[test]
    fn reads_series() {
        let input = "timestamp,value\r\n2014-04-01 00:00:00,1.5\n\n2014-04-01 00:05:00,\n2014-04-01 00:10:00,NaN\n2014-04-01 00:15:00,-2e3\n";
        let points = read_series_csv(input.as_bytes()).unwrap();
        assert_eq!(points.len(), 4);
        assert_eq!(points[0].timestamp_text, "2014-04-01 00:00:00");
        assert_eq!(points[0].value, 1.5);
        assert!(points[1].value.is_nan());
        assert!(points[2].value.is_nan());
        assert_eq!(points[3].value, -2000.0);
        assert_eq!(points[3].value_text, "-2e3");
        assert_eq!(
            points[1].timestamp.micros() - points[0].timestamp.micros(),
            300_000_000
        );

        // Column order and extra columns do not matter.
        let input = "id,Value,timestamp\nx,3,2014-04-01T00:00:00Z\n";
        let points = read_series_csv(input.as_bytes()).unwrap();
        assert_eq!(points[0].value, 3.0);
    }

    #[test]
    fn rejects_bad_input_with_exact_messages() {
        let cases: &[(&str, &str)] = &[
            (
                "",
                "empty input: expected a header line with `timestamp` and `value` columns",
            ),
            ("time,value\n", "line 1: header has no `timestamp` column"),
            ("timestamp,val\n", "line 1: header has no `value` column"),
            (
                "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00\n",
                "line 3: expected 2 fields, found 1",
            ),
            (
                "timestamp,value\n2014-04-01 00:00:00,1,2\n",
                "line 2: expected 2 fields, found 3",
            ),
            (
                "timestamp,value\n2014-13-01 00:00:00,1\n",
                "line 2: invalid timestamp \"2014-13-01 00:00:00\": expected `YYYY-MM-DD HH:MM:SS` or RFC 3339",
            ),
            (
                "timestamp,value\n\n2014-04-01 00:00:00,abc\n",
                "line 3: invalid value \"abc\"",
            ),
            (
                "timestamp,value\n2014-04-01 00:00:00,inf\n",
                "line 2: invalid value \"inf\"",
            ),
        ];
        for (input, want) in cases {
            let err = read_series_csv(input.as_bytes()).unwrap_err();
            assert_eq!(err.to_string(), *want, "{input:?}");
        }
    }

    #[test]
    fn writes_scores_keeping_text() {
        let points =
            read_series_csv("timestamp,value\n2014-04-01 00:00:00,1.50\n".as_bytes()).unwrap();
        let mut out = Vec::new();
        write_scored_csv(&mut out, &points, &[0.25]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "timestamp,value,anomaly_score\n2014-04-01 00:00:00,1.50,0.25\n"
        );
        let err = write_scored_csv(Vec::new(), &points, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "points and scores differ in length: 1 vs 0"
        );
    }
}
