//! Conformance: every line the simulator writes, in every format, parses back with the matching
//! `sluice_logs::Parser` into the record it was written from, to the precision the format carries.

use sluice_core::AccessRecord;
use sluice_logs::Parser;
use sluice_sim::{generate, LineWriter, SimConfig, SimFormat};

/// The fields every format must carry, with the timestamp truncated to its precision.
#[derive(Debug, PartialEq)]
struct Key {
    ts: i64,
    ip: Option<std::net::IpAddr>,
    api_key: Option<String>,
    method: Option<String>,
    path: String,
    query: Option<String>,
    status: u16,
    user_agent: Option<String>,
    latency_ms: Option<u64>,
}

fn key(r: &AccessRecord<'_>, f: SimFormat) -> Key {
    let p = f.ts_precision_us();
    Key {
        ts: r.ts.micros().div_euclid(p) * p,
        ip: r.ip,
        api_key: if f.carries_api_key() {
            r.api_key.as_deref().map(str::to_owned)
        } else {
            None
        },
        method: r.method.as_deref().map(str::to_owned),
        path: r.path.to_string(),
        query: r.query.as_deref().map(str::to_owned),
        status: r.status,
        user_agent: r.user_agent.as_deref().map(str::to_owned),
        // nginx combined carries no latency
        latency_ms: if f == SimFormat::Nginx {
            None
        } else {
            r.latency_us.map(|us| us / 1000)
        },
    }
}

#[test]
fn every_format_round_trips_through_its_parser() {
    // short, but with every kind of identity (IPv6 browsers, all attack classes, the flash crowd)
    let cfg = SimConfig {
        legit_clients: 25,
        browsers: 40,
        batch_jobs: 2,
        ..SimConfig::for_duration(11, 900)
    };
    let records: Vec<_> = generate(&cfg).unwrap().collect();
    assert!(records.iter().any(|r| r.ip.is_some_and(|ip| ip.is_ipv6())));
    for format in SimFormat::ALL {
        let parser = Parser::new(&format.parser_spec()).unwrap();
        let mut writer = LineWriter::new(format);
        let mut line = Vec::new();
        for (i, rec) in records.iter().enumerate() {
            line.clear();
            writer.write(rec, &mut line);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            let text = String::from_utf8_lossy(&line);
            let parsed = parser
                .parse_line(&line)
                .unwrap_or_else(|e| panic!("{format} line {i}: {e}\n{text}"));
            assert_eq!(
                key(&parsed, format),
                key(rec, format),
                "{format} line {i}:\n{text}"
            );
        }
    }
}

#[test]
fn ndjson_is_lossless() {
    let cfg = SimConfig {
        legit_clients: 10,
        browsers: 5,
        batch_jobs: 1,
        ..SimConfig::for_duration(4, 300)
    };
    let parser = Parser::new(&SimFormat::Ndjson.parser_spec()).unwrap();
    let mut writer = LineWriter::new(SimFormat::Ndjson);
    let mut line = Vec::new();
    for rec in generate(&cfg).unwrap() {
        line.clear();
        writer.write(&rec, &mut line);
        assert_eq!(parser.parse_line(&line).unwrap().into_owned(), rec);
    }
}

#[test]
fn default_formats_detect_as_themselves() {
    // lines of the stock formats are recognised by `--format auto`
    let cfg = SimConfig {
        legit_clients: 10,
        browsers: 5,
        batch_jobs: 1,
        ..SimConfig::for_duration(4, 300)
    };
    let records: Vec<_> = generate(&cfg).unwrap().take(200).collect();
    for (format, name) in [
        (SimFormat::Nginx, "combined (nginx/apache)"),
        (SimFormat::EnvoyJson, "envoy-json"),
        (SimFormat::Kong, "kong"),
        (SimFormat::Ndjson, "ndjson (sluice canonical)"),
    ] {
        let mut writer = LineWriter::new(format);
        let lines: Vec<Vec<u8>> = records
            .iter()
            .map(|r| {
                let mut l = Vec::new();
                writer.write(r, &mut l);
                l
            })
            .collect();
        let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_slice()).collect();
        let detected = sluice_logs::detect(&refs).unwrap();
        assert_eq!(detected.name, name, "{format}");
    }
}
