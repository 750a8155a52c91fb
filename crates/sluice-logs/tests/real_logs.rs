//! Real-world logs (a copy of the shared data set, vendored under tests/data so a clean clone
//! has it): they must parse exactly as expected.

use std::collections::HashSet;

use sluice_logs::{detect, FormatSpec, NginxEscape, Parser};

const APACHE_LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/elastic-apache-combined.log.gz"
);

fn read() -> Vec<u8> {
    use std::io::Read;
    let file =
        std::fs::File::open(APACHE_LOG).unwrap_or_else(|e| panic!("cannot read {APACHE_LOG}: {e}"));
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut data)
        .unwrap_or_else(|e| panic!("cannot decompress {APACHE_LOG}: {e}"));
    data
}

fn check(spec: FormatSpec) {
    let data = read();
    let parser = Parser::new(&spec).unwrap();
    let mut accepted = 0;
    let mut rejected = Vec::new();
    let mut ips = HashSet::new();
    for (i, line) in data.split(|&c| c == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match parser.parse_line(line) {
            Ok(rec) => {
                accepted += 1;
                ips.insert(rec.ip.expect("every line has a client ip"));
                assert!(rec.path.starts_with('/'), "line {}: {:?}", i + 1, rec.path);
            }
            Err(e) => rejected.push((i + 1, e.reason())),
        }
    }
    assert_eq!(accepted, 9_999, "{}", parser.name());
    assert_eq!(ips.len(), 1_753);
    let ua = if parser.name() == "apache" {
        "%{User-agent}i"
    } else {
        "$http_user_agent"
    };
    assert_eq!(
        rejected,
        vec![(
            8899,
            format!("expected '\"' after {ua} but the line ended (unterminated quoted field)")
        )]
    );
}

#[test]
fn elastic_apache_combined_parses_as_apache_combined() {
    check(FormatSpec::Apache {
        log_format: "combined".into(),
    });
}

#[test]
fn elastic_apache_combined_parses_as_nginx_combined() {
    check(FormatSpec::Nginx {
        log_format: "combined".into(),
        escape: NginxEscape::Default,
    });
}

#[test]
fn elastic_apache_combined_is_detected() {
    let data = read();
    let lines: Vec<&[u8]> = data.split(|&c| c == b'\n').collect();
    let d = detect(&lines[..100]).unwrap();
    assert_eq!(d.name, "combined (nginx/apache)");
    assert_eq!(
        d.reason,
        "every sampled line (100) matches combined (nginx/apache)"
    );
    // the sample holding the malformed line still detects, and says so
    let d = detect(&lines[8850..8950]).unwrap();
    assert_eq!(d.name, "combined (nginx/apache)");
    assert!(d.reason.starts_with("99 of 100 sampled lines match combined (nginx/apache); 1 match no known format (first: "), "{}", d.reason);
}
