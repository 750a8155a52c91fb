//! CSV input and output: the M4 competition layout (`id,V1..Vn` in, `id,F1..Fh` out) and a plain
//! `timestamp,value` series with its `timestamp,value,lower,upper` forecast.

use std::io::{BufRead, Write};

use chrono::{DateTime, NaiveDateTime, SecondsFormat};

use super::{Forecast, ForecastError};

fn parse_err(line: usize, message: impl Into<String>) -> ForecastError {
    ForecastError::Parse {
        line,
        message: message.into(),
    }
}

fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"')
        .and_then(|g| g.strip_suffix('"'))
        .unwrap_or(f)
}

/// Reads an M4 file: a header line, then `id,v1,v2,...` per series (fields may be quoted, rows may
/// end in empty fields). Line numbers in errors count the header as line 1.
pub fn read_m4_csv(r: impl BufRead) -> Result<Vec<(String, Vec<f64>)>, ForecastError> {
    let mut out = Vec::new();
    let mut saw_header = false;
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        let lineno = i + 1;
        if !saw_header {
            saw_header = true;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split(',').map(unquote);
        let id = fields.next().unwrap_or_default();
        if id.is_empty() {
            return Err(parse_err(lineno, "empty series id"));
        }
        let raw: Vec<&str> = fields.collect();
        let used = raw.iter().rposition(|f| !f.is_empty()).map_or(0, |p| p + 1);
        let mut values = Vec::with_capacity(used);
        for (c, f) in raw[..used].iter().enumerate() {
            let v: f64 = f.parse().map_err(|_| {
                parse_err(lineno, format!("invalid value {f:?} in column {}", c + 2))
            })?;
            if !v.is_finite() {
                return Err(parse_err(
                    lineno,
                    format!("invalid value {f:?} in column {}", c + 2),
                ));
            }
            values.push(v);
        }
        if values.is_empty() {
            return Err(parse_err(lineno, format!("series {id} has no values")));
        }
        out.push((id.to_string(), values));
    }
    if !saw_header {
        return Err(ForecastError::Input("input is empty".to_string()));
    }
    if out.is_empty() {
        return Err(ForecastError::Input("input has no series".to_string()));
    }
    Ok(out)
}

/// Writes `id,F1..Fh` rows (h is the longest forecast).
pub fn write_m4_csv(mut w: impl Write, rows: &[(String, Vec<f64>)]) -> Result<(), ForecastError> {
    let h = rows.iter().map(|(_, f)| f.len()).max().unwrap_or(0);
    write!(w, "id")?;
    for i in 1..=h {
        write!(w, ",F{i}")?;
    }
    writeln!(w)?;
    for (id, f) in rows {
        write!(w, "{id}")?;
        for v in f {
            write!(w, ",{v}")?;
        }
        writeln!(w)?;
    }
    w.flush()?;
    Ok(())
}

/// How the input wrote its timestamps; the forecast writes them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// Integer seconds since the Unix epoch.
    UnixSeconds,
    /// `2024-05-01 13:00:00` (UTC).
    SpaceSeparated,
    /// `2024-05-01T13:00:00` (UTC).
    IsoLocal,
    /// RFC 3339 with an offset; the forecast is written in UTC (`...Z`).
    Rfc3339,
}

fn parse_time(s: &str) -> Option<(i64, TimeFormat)> {
    if !s.is_empty()
        && s.trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return s.parse().ok().map(|v| (v, TimeFormat::UnixSeconds));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Some((t.and_utc().timestamp(), TimeFormat::SpaceSeparated));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Some((t.and_utc().timestamp(), TimeFormat::IsoLocal));
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| (t.timestamp(), TimeFormat::Rfc3339))
}

fn format_time(secs: i64, format: TimeFormat) -> String {
    let dt = DateTime::from_timestamp(secs, 0).unwrap_or_default();
    match format {
        TimeFormat::UnixSeconds => secs.to_string(),
        TimeFormat::SpaceSeparated => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
        TimeFormat::IsoLocal => dt.format("%Y-%m-%dT%H:%M:%S").to_string(),
        TimeFormat::Rfc3339 => dt.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// A regular series read from `timestamp,value` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesCsv {
    /// Seconds since the Unix epoch of the first value.
    pub start: i64,
    /// Seconds between values: the most common gap between consecutive rows.
    pub step: i64,
    /// Values on the regular grid; rows missing from the input are NaN.
    pub values: Vec<f64>,
    /// How many grid points had no row (filled with NaN, treated as missing by the forecaster).
    pub gaps: usize,
    pub format: TimeFormat,
}

impl SeriesCsv {
    /// Timestamp (seconds) of the last value.
    pub fn last(&self) -> i64 {
        self.start + self.step * (self.values.len() as i64 - 1)
    }
}

/// Longest grid a series may fill, to bound memory on a bad step.
const MAX_POINTS: usize = 10_000_000;

/// Reads `timestamp,value` rows (an optional header line first). Timestamps are integer Unix
/// seconds, `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS` (both UTC) or RFC 3339; they must
/// increase, and the step is the most common gap. Larger gaps that are whole multiples of the step
/// become NaN values; any other gap is an error.
pub fn read_series_csv(r: impl BufRead) -> Result<SeriesCsv, ForecastError> {
    let mut rows: Vec<(usize, i64, f64)> = Vec::new();
    let mut format = None;
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(unquote).collect();
        if fields.len() != 2 {
            return Err(parse_err(
                lineno,
                format!(
                    "expected 2 fields (timestamp,value), found {}",
                    fields.len()
                ),
            ));
        }
        let parsed_time = parse_time(fields[0]);
        if lineno == 1 && parsed_time.is_none() {
            // A header line.
            continue;
        }
        let (t, f) = parsed_time
            .ok_or_else(|| parse_err(lineno, format!("invalid timestamp {:?}", fields[0])))?;
        match format {
            None => format = Some(f),
            Some(expected) if expected != f => {
                return Err(parse_err(
                    lineno,
                    format!(
                        "timestamp {:?} is not in the format of the first row",
                        fields[0]
                    ),
                ))
            }
            Some(_) => {}
        }
        let v: f64 = fields[1]
            .parse()
            .map_err(|_| parse_err(lineno, format!("invalid value {:?}", fields[1])))?;
        if v.is_infinite() {
            return Err(parse_err(lineno, format!("invalid value {:?}", fields[1])));
        }
        if let Some(&(_, prev, _)) = rows.last() {
            if t <= prev {
                return Err(parse_err(
                    lineno,
                    format!("timestamp {:?} is not after the previous row", fields[0]),
                ));
            }
        }
        rows.push((lineno, t, v));
    }
    let format = match (rows.len(), format) {
        (0, _) | (_, None) => {
            return Err(ForecastError::Input("input has no data rows".to_string()))
        }
        (1, _) => {
            return Err(ForecastError::Input(
                "need at least 2 rows to infer the step".to_string(),
            ))
        }
        (_, Some(f)) => f,
    };
    let mut gaps: Vec<i64> = rows.windows(2).map(|w| w[1].1 - w[0].1).collect();
    gaps.sort_unstable();
    let step = mode(&gaps);
    let start = rows[0].1;
    let points = ((rows[rows.len() - 1].1 - start) / step) as usize + 1;
    if points > MAX_POINTS {
        return Err(ForecastError::Input(format!(
            "series spans {points} steps of {step} s, more than {MAX_POINTS}"
        )));
    }
    let mut values = vec![f64::NAN; points];
    for &(lineno, t, v) in &rows {
        if (t - start) % step != 0 {
            return Err(parse_err(
                lineno,
                format!("timestamp is off the {step}-second grid of the series"),
            ));
        }
        values[((t - start) / step) as usize] = v;
    }
    Ok(SeriesCsv {
        start,
        step,
        gaps: points - rows.len(),
        values,
        format,
    })
}

/// Most common value of a sorted non-empty slice (the smallest among ties).
fn mode(sorted: &[i64]) -> i64 {
    let mut best = (sorted[0], 0);
    let mut i = 0;
    while i < sorted.len() {
        let j = sorted[i..].partition_point(|&v| v == sorted[i]) + i;
        if j - i > best.1 {
            best = (sorted[i], j - i);
        }
        i = j;
    }
    best.0
}

/// Writes `timestamp,value,lower,upper`, one row per step ahead, continuing the input's grid.
pub fn write_series_forecast_csv(
    mut w: impl Write,
    input: &SeriesCsv,
    forecast: &Forecast,
) -> Result<(), ForecastError> {
    writeln!(w, "timestamp,value,lower,upper")?;
    let last = input.last();
    for (i, ((p, lo), hi)) in forecast
        .point
        .iter()
        .zip(&forecast.lower)
        .zip(&forecast.upper)
        .enumerate()
    {
        let t = last + input.step * (i as i64 + 1);
        writeln!(w, "{},{p},{lo},{hi}", format_time(t, input.format))?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::{Backtest, Model, ModelKind};

    #[test]
    fn m4_reading() {
        // (input, expected series or error message)
        type Expect = Result<Vec<(&'static str, Vec<f64>)>, &'static str>;
        let cases: &[(&str, Expect)] = &[
            (
                "\"V1\",\"V2\",\"V3\",\"V4\"\n\"H1\",\"1\",\"2.5\",\"\"\n\"H2\",\"3\",\"\",\"\"\n",
                Ok(vec![("H1", vec![1.0, 2.5]), ("H2", vec![3.0])]),
            ),
            (
                "id,a\nH1,1\n\nH2,2\n",
                Ok(vec![("H1", vec![1.0]), ("H2", vec![2.0])]),
            ),
            ("", Err("input is empty")),
            ("V1,V2\n", Err("input has no series")),
            (
                "V1,V2\nH1,1\nH2,x\n",
                Err("line 3: invalid value \"x\" in column 2"),
            ),
            (
                "V1,V2,V3\nH1,1,,3\n",
                Err("line 2: invalid value \"\" in column 3"),
            ),
            ("V1,V2\n,1\n", Err("line 2: empty series id")),
            ("V1,V2\nH1,,\n", Err("line 2: series H1 has no values")),
            (
                "V1,V2\nH1,inf\n",
                Err("line 2: invalid value \"inf\" in column 2"),
            ),
        ];
        for (input, expect) in cases {
            let got = read_m4_csv(input.as_bytes()).map_err(|e| e.to_string());
            let expect = expect
                .clone()
                .map(|v| {
                    v.into_iter()
                        .map(|(id, x)| (id.to_string(), x))
                        .collect::<Vec<_>>()
                })
                .map_err(str::to_string);
            assert_eq!(got, expect, "input {input:?}");
        }
    }

    #[test]
    fn m4_writing() {
        let mut out = Vec::new();
        write_m4_csv(
            &mut out,
            &[("H1".into(), vec![1.0, 2.5]), ("H2".into(), vec![3.0, 4.0])],
        )
        .expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "id,F1,F2\nH1,1,2.5\nH2,3,4\n"
        );
    }

    #[test]
    fn series_reading() {
        // (input, expected (start, step, values as strings to compare NaN, gaps, format) or error)
        type Expect = Result<(i64, i64, &'static str, usize, TimeFormat), &'static str>;
        let cases: &[(&str, Expect)] = &[
            ("timestamp,value\n60,1\n120,2\n180,3\n", Ok((60, 60, "1 2 3", 0, TimeFormat::UnixSeconds))),
            ("0,1\n60,2\n180,4\n240,5\n", Ok((0, 60, "1 2 NaN 4 5", 1, TimeFormat::UnixSeconds))),
            (
                "timestamp,value\n2014-04-01 00:00:00,5\n2014-04-01 00:05:00,6\n",
                Ok((1_396_310_400, 300, "5 6", 0, TimeFormat::SpaceSeparated)),
            ),
            (
                "\"2014-04-01T00:00:00Z\",\"5\"\n\"2014-04-01T01:00:00+00:00\",\"7\"\n",
                Ok((1_396_310_400, 3600, "5 7", 0, TimeFormat::Rfc3339)),
            ),
            ("2014-04-01T00:00:00,1\n2014-04-01T00:01:00,2\n", Ok((1_396_310_400, 60, "1 2", 0, TimeFormat::IsoLocal))),
            ("", Err("input has no data rows")),
            ("timestamp,value\n", Err("input has no data rows")),
            ("0,1\n", Err("need at least 2 rows to infer the step")),
            ("0,1\n60,2,3\n", Err("line 2: expected 2 fields (timestamp,value), found 3")),
            ("0,1\n60,x\n", Err("line 2: invalid value \"x\"")),
            ("ts,value\n0,1\nyesterday,2\n", Err("line 3: invalid timestamp \"yesterday\"")),
            ("0,1\n60,2\n60,3\n", Err("line 3: timestamp \"60\" is not after the previous row")),
            ("0,1\n60,2\n120,3\n150,4\n", Err("line 4: timestamp is off the 60-second grid of the series")),
            (
                "0,1\n2014-04-01 00:00:00,2\n",
                Err("line 2: timestamp \"2014-04-01 00:00:00\" is not in the format of the first row"),
            ),
        ];
        for (input, expect) in cases {
            let got = read_series_csv(input.as_bytes())
                .map(|s| {
                    let vals: Vec<String> = s.values.iter().map(|v| v.to_string()).collect();
                    (s.start, s.step, vals.join(" "), s.gaps, s.format)
                })
                .map_err(|e| e.to_string());
            let expect = expect
                .map(|(a, b, c, d, e)| (a, b, c.to_string(), d, e))
                .map_err(str::to_string);
            assert_eq!(got, expect, "input {input:?}");
        }
    }

    #[test]
    fn series_forecast_writing_continues_the_grid_in_the_input_format() {
        let fc = Forecast {
            point: vec![10.0, 11.5],
            lower: vec![8.0, 9.0],
            upper: vec![12.0, 14.0],
            model: Model::Single(ModelKind::SeasonalNaive),
            backtest: Backtest {
                origins: 1,
                mase: 1.0,
                smape: 1.0,
                seasonal_naive_mase: 1.0,
                candidates: Vec::new(),
            },
            cleaned_points: 0,
        };
        // (input, expected output)
        let cases: &[(&str, &str)] = &[
            ("0,1\n60,2\n", "timestamp,value,lower,upper\n120,10,8,12\n180,11.5,9,14\n"),
            (
                "2014-04-01 00:00:00,1\n2014-04-01 00:05:00,2\n",
                "timestamp,value,lower,upper\n2014-04-01 00:10:00,10,8,12\n2014-04-01 00:15:00,11.5,9,14\n",
            ),
            (
                "2014-04-01T23:00:00+02:00,1\n2014-04-02T00:00:00+02:00,2\n",
                "timestamp,value,lower,upper\n2014-04-01T23:00:00Z,10,8,12\n2014-04-02T00:00:00Z,11.5,9,14\n",
            ),
        ];
        for (input, expect) in cases {
            let s = read_series_csv(input.as_bytes()).expect("valid input");
            let mut out = Vec::new();
            write_series_forecast_csv(&mut out, &s, &fc).expect("writes");
            assert_eq!(
                String::from_utf8(out).expect("utf8"),
                *expect,
                "input {input:?}"
            );
        }
    }
}
