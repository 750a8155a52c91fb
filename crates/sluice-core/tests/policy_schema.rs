//! The policy format against its documentation: every fixture under `tests/fixtures/policy`
//! parses (or fails with the exact message in its `.err` file), and `docs/policy.schema.json`
//! agrees with the serde types: a policy using every field and algorithm validates, the schema
//! names exactly the fields the types serialise, and documents the types refuse are refused by
//! the schema too, at the same path.

use std::path::PathBuf;

use serde_json::{json, Value};
use sluice_core::limit::{Algorithm, Cidr, CostUnit, IpMatch, Limit, Match, Selector};
use sluice_core::policy::{Policy, Rule};

fn schema() -> Value {
    let text = include_str!("../../../docs/policy.schema.json");
    serde_json::from_str(text).expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("the schema compiles")
}

/// Instance paths (JSON pointers) of the schema errors for `doc`, sorted and deduplicated.
fn schema_errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    let mut paths: Vec<String> = v
        .iter_errors(doc)
        .map(|e| e.instance_path().to_string())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

fn fixtures() -> Vec<(String, PathBuf)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    assert!(out.len() >= 8, "fixtures missing: {out:?}");
    out
}

#[test]
fn fixtures_parse_or_fail_with_their_exact_message() {
    for (name, path) in fixtures() {
        let bytes = std::fs::read(&path).unwrap();
        let got = Policy::parse(&bytes);
        if name.starts_with("valid") {
            assert!(got.is_ok(), "{name}: {}", got.unwrap_err());
        } else {
            let expect = std::fs::read_to_string(path.with_extension("err"))
                .unwrap_or_else(|e| panic!("{name}: missing .err file: {e}"));
            assert_eq!(
                got.map(|_| ()).unwrap_err().to_string(),
                expect.trim_end(),
                "{name}"
            );
        }
    }
}

#[test]
fn schema_accepts_valid_fixtures_and_refuses_invalid_ones_at_their_path() {
    let v = validator();
    for (name, path) in fixtures() {
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let errors = schema_errors(&v, &doc);
        let expect: &[&str] = match name.as_str() {
            n if n.starts_with("valid") => &[],
            // Unique ids are beyond JSON Schema; `sluice policy check` reports them.
            "invalid-duplicate-id" => &[],
            "invalid-zero-rate" => &["/rules/0/limit"],
            "invalid-bad-cidr" => &["/rules/0/selector/ip"],
            "invalid-unknown-algorithm" => &["/rules/0/limit", "/rules/0/limit/algorithm"],
            "invalid-unknown-field" => &["/rules/0"],
            "invalid-format" => &["/format"],
            other => panic!("fixture {other} has no expected schema errors in this table"),
        };
        assert_eq!(errors, expect, "{name}");
    }
}

/// A policy that uses every field of a rule, every selector field and every algorithm.
fn full_policy() -> Policy {
    let limits = [
        Limit::FixedWindow {
            rate: 10,
            window_seconds: 60,
        },
        Limit::SlidingWindowLog {
            rate: 10,
            window_seconds: 60,
        },
        Limit::SlidingWindowCounter {
            rate: 10,
            window_seconds: 60,
        },
        Limit::TokenBucket {
            rate: 10,
            window_seconds: 60,
            burst: 5,
        },
        Limit::LeakyBucket {
            rate: 10,
            window_seconds: 60,
            queue: 5,
        },
    ];
    assert_eq!(limits.len(), Algorithm::ALL.len());
    let selectors = [
        Selector {
            api_key: Some(Match::Each),
            consumer: Some(Match::Exactly("c1".into())),
            user: Some(Match::Exactly("bob".into())),
            ip: Some(IpMatch::Net("10.0.0.0/8".parse::<Cidr>().unwrap())),
            route: Some(Match::Exactly("/v1/items/{id}".into())),
            method: Some(Match::Exactly("POST".into())),
        },
        Selector {
            ip: Some(IpMatch::Each),
            route: Some(Match::Each),
            method: Some(Match::Each),
            ..Selector::default()
        },
        Selector {
            ip: Some(IpMatch::Net("2001:db8::/32".parse::<Cidr>().unwrap())),
            ..Selector::default()
        },
        Selector {
            ip: Some(IpMatch::Net("192.0.2.7".parse::<Cidr>().unwrap())),
            ..Selector::default()
        },
        Selector::default(),
    ];
    let rules = limits
        .iter()
        .zip(selectors)
        .enumerate()
        .map(|(i, (limit, selector))| Rule {
            id: format!("rule-{i}"),
            selector,
            limit: *limit,
            cost: if i % 2 == 0 {
                CostUnit::CostUnits
            } else {
                CostUnit::Requests
            },
            shadow: i % 2 == 1,
            expires_at: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            ratelimit_policy: None,
            reason: Some("why".into()),
            source: Some("test".into()),
        })
        .collect();
    Policy::new(rules).unwrap()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn schema_is_in_sync_with_the_serde_types() {
    let v = validator();
    let p = full_policy();
    let doc: Value = serde_json::from_slice(&p.to_json(Some(12))).unwrap();
    assert_eq!(schema_errors(&v, &doc), Vec::<String>::new(), "{doc:#}");

    let s = schema();
    // Every field the types write is in the schema, and the schema has no field they lack.
    assert_eq!(keys(&s["properties"]), keys(&doc));
    assert_eq!(
        keys(&s["$defs"]["rule"]["properties"]),
        keys(&doc["rules"][0])
    );
    assert_eq!(
        keys(&s["$defs"]["selector"]["properties"]),
        keys(&doc["rules"][0]["selector"])
    );
    let algorithms: Vec<&str> = s["$defs"]["limit"]["properties"]["algorithm"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        algorithms,
        Algorithm::ALL.map(|a| a.as_str()).to_vec(),
        "algorithm enum"
    );
    for rule in doc["rules"].as_array().unwrap() {
        let limit = &rule["limit"];
        let variant = s["$defs"]["limit"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| {
                let a = &b["properties"]["algorithm"];
                a["const"] == limit["algorithm"]
                    || a["enum"]
                        .as_array()
                        .is_some_and(|e| e.contains(&limit["algorithm"]))
            })
            .expect("a oneOf branch per algorithm");
        assert_eq!(keys(&variant["properties"]), keys(limit), "{limit}");
    }
    let costs: Vec<Value> = [CostUnit::Requests, CostUnit::CostUnits]
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    assert_eq!(
        s["$defs"]["rule"]["properties"]["cost"]["enum"],
        json!(costs)
    );
}

#[test]
fn documents_the_types_refuse_the_schema_refuses_at_the_same_path() {
    let v = validator();
    let base: Value = serde_json::from_slice(&full_policy().to_json(None)).unwrap();
    type Mutation = fn(&mut Value);
    let cases: [(&str, Mutation, &str); 10] = [
        (
            "zero rate",
            |d| d["rules"][0]["limit"]["rate"] = json!(0),
            "/rules/0/limit",
        ),
        (
            "zero window",
            |d| d["rules"][1]["limit"]["window_seconds"] = json!(0),
            "/rules/1/limit",
        ),
        (
            "window over 31 days",
            |d| d["rules"][2]["limit"]["window_seconds"] = json!(2_678_401),
            "/rules/2/limit",
        ),
        (
            "zero burst",
            |d| d["rules"][3]["limit"]["burst"] = json!(0),
            "/rules/3/limit",
        ),
        (
            "burst on a window algorithm",
            |d| d["rules"][0]["limit"]["burst"] = json!(3),
            "/rules/0/limit",
        ),
        (
            "lower-case method",
            |d| d["rules"][0]["selector"]["method"] = json!("get"),
            "/rules/0/selector/method",
        ),
        (
            "route without slash",
            |d| d["rules"][0]["selector"]["route"] = json!("v1"),
            "/rules/0/selector/route",
        ),
        (
            "empty selector value",
            |d| d["rules"][0]["selector"]["user"] = json!(""),
            "/rules/0/selector/user",
        ),
        (
            "bad rule id",
            |d| d["rules"][0]["id"] = json!("a b"),
            "/rules/0/id",
        ),
        (
            "unknown cost",
            |d| d["rules"][0]["cost"] = json!("bytes"),
            "/rules/0/cost",
        ),
    ];
    for (what, mutate, path) in cases {
        let mut doc = base.clone();
        mutate(&mut doc);
        assert!(
            Policy::parse(doc.to_string().as_bytes()).is_err(),
            "{what}: the types accepted it"
        );
        let errors = schema_errors(&v, &doc);
        assert!(
            errors.iter().any(|e| e == path),
            "{what}: expected a schema error at {path}, got {errors:?}"
        );
    }
    // And the unmodified document is valid for both.
    assert!(Policy::parse(base.to_string().as_bytes()).is_ok());
    assert!(schema_errors(&v, &base).is_empty());
}
