//! The reference input: the same records `sluice ingest` stores, pre-converted to CSV with the
//! columns of `access_log`, parsed and enriched by Sluice's own parser and enrichment so that the
//! rows are identical (the benchmark checks that with `EXCEPT ALL`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use sluice_engine::ingest::Enrichment;
use sluice_logs::{AccessRecord, FormatSpec, NginxEscape, Parser};

/// What the conversion produced.
#[derive(Debug)]
pub struct Converted {
    pub rows: u64,
    pub bytes: u64,
    /// UTC day starts (µs) of the records: the partitions the reference table needs.
    pub days: BTreeSet<i64>,
}

pub fn nginx_combined() -> FormatSpec {
    FormatSpec::Nginx {
        log_format: "combined".into(),
        escape: NginxEscape::Default,
    }
}

/// Convert the nginx `combined` log at `input` into `output` (CSV, `access_log` column order).
/// `source` is the source name `sluice ingest` gives records that carry none (the file name).
pub fn convert(
    input: &Path,
    output: &Path,
    source: &str,
    enrich: &Enrichment,
) -> anyhow::Result<Converted> {
    let parser = Parser::new(&nginx_combined())?;
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(input)?);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(output)?);
    let mut line = Vec::new();
    let mut row = Vec::new();
    let mut rows = 0;
    let mut days = BTreeSet::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let mut rec = parser
            .parse_line(text)
            .map_err(|e| anyhow::anyhow!("line {line_no}: {}", e.reason()))
            .context("the generated log should parse")?;
        rec.route = Some(enrich.routes.normalize(&rec.path).into_owned().into());
        rec.client = enrich.client_key.resolve(&rec);
        days.insert(rec.ts.day_floor().micros());
        row.clear();
        write_row(&mut row, &rec, source);
        w.write_all(&row)?;
        rows += 1;
    }
    w.flush()?;
    Ok(Converted {
        rows,
        bytes: std::fs::metadata(output)?.len(),
        days,
    })
}

/// One CSV row with exactly the values `sluice_store::encode::BatchBuilder::push` encodes.
fn write_row(b: &mut Vec<u8>, rec: &AccessRecord<'_>, source: &str) {
    let ts = rec.ts.to_chrono().format("%Y-%m-%d %H:%M:%S%.6f+00");
    let _ = write!(b, "{ts},");
    text(b, rec.source.as_deref().unwrap_or(source));
    b.push(b',');
    opt_text(b, rec.client.as_ref().map(|c| c.kind.as_str()));
    b.push(b',');
    opt_text(b, rec.client.as_ref().map(|c| &*c.value));
    b.push(b',');
    opt_text(b, rec.api_key.as_deref());
    b.push(b',');
    opt_text(b, rec.consumer.as_deref());
    b.push(b',');
    opt_text(b, rec.user.as_deref());
    b.push(b',');
    if let Some(ip) = rec.ip {
        let _ = write!(b, "{ip}");
    }
    b.push(b',');
    opt_text(b, rec.method.as_deref());
    b.push(b',');
    opt_text(b, rec.host.as_deref());
    b.push(b',');
    text(b, &rec.path);
    b.push(b',');
    text(b, rec.route.as_deref().unwrap_or(&rec.path));
    b.push(b',');
    opt_text(b, rec.query.as_deref());
    b.push(b',');
    opt_text(b, rec.protocol.as_deref());
    let _ = write!(b, ",{},", rec.status.min(i16::MAX as u16));
    for v in [
        rec.bytes_sent,
        rec.bytes_received,
        rec.latency_us,
        rec.upstream_latency_us,
    ] {
        if let Some(v) = v {
            let _ = write!(b, "{}", i64::try_from(v).unwrap_or(i64::MAX));
        }
        b.push(b',');
    }
    opt_text(b, rec.user_agent.as_deref());
    b.push(b',');
    opt_text(b, rec.referer.as_deref());
    b.push(b',');
    opt_text(b, rec.request_id.as_deref());
    b.push(b',');
    if !rec.extras.is_empty() {
        let json = serde_json::to_string(&rec.extras).unwrap_or_else(|_| "{}".into());
        text(b, &json);
    }
    b.push(b'\n');
}

/// A CSV value: unquoted unless it needs quoting (an unquoted empty field is NULL, so empty
/// strings are quoted; so is `\.`, the end-of-data marker).
fn text(b: &mut Vec<u8>, s: &str) {
    let s = s.replace('\0', "\u{fffd}");
    let needs =
        s.is_empty() || s == "\\." || s.bytes().any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r'));
    if !needs {
        b.extend_from_slice(s.as_bytes());
        return;
    }
    b.push(b'"');
    for c in s.bytes() {
        if c == b'"' {
            b.push(b'"');
        }
        b.push(c);
    }
    b.push(b'"');
}

fn opt_text(b: &mut Vec<u8>, s: Option<&str>) {
    if let Some(s) = s {
        text(b, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        let mut b = Vec::new();
        text(&mut b, s);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(t("plain text"), "plain text");
        assert_eq!(t(""), "\"\"");
        assert_eq!(t("a,b"), "\"a,b\"");
        assert_eq!(t("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(t("\\."), "\"\\.\"");
    }
}
