//! Parser throughput benchmark: generates realistic lines for every format in memory (fixed seed),
//! parses them on one thread and prints the median of 5 runs.
//!
//! `cargo run --release -p sluice-logs --example parse_bench [-- SCALE]` (SCALE multiplies the line
//! counts, default 1.0 = 1,000,000 nginx combined lines).

use std::hint::black_box;
use std::time::Instant;

use sluice_logs::{EnvoyJsonFields, FormatSpec, NginxEscape, Parser};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:109.0) Gecko/20100101 Firefox/115.0",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
];
const PATHS: &[&str] = &[
    "/v1/products",
    "/v1/products/{}",
    "/v1/users/{}/orders",
    "/v1/search",
    "/static/app.{}.js",
    "/healthz",
    "/v2/carts/{}/items",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const STATUSES: &[&str] = &[
    "200", "200", "200", "201", "204", "304", "404", "429", "500",
];
const REFERERS: &[&str] = &["-", "https://example.com/", "https://shop.example.com/cart"];
const MONTHS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

struct Req {
    ip: String,
    day: u64,
    month: usize,
    h: u64,
    m: u64,
    s: u64,
    ms: u64,
    method: &'static str,
    path: String,
    query: String,
    status: &'static str,
    bytes: u64,
    rt_ms: u64,
    up_ms: u64,
    agent: &'static str,
    referer: &'static str,
    key: String,
    rid: u64,
}

fn req(r: &mut Rng) -> Req {
    let path = r.pick(PATHS).replace("{}", &r.below(100_000).to_string());
    let query = if r.below(3) == 0 {
        format!("?page={}&q=item{}", r.below(20), r.below(1000))
    } else {
        String::new()
    };
    Req {
        ip: if r.below(10) == 0 {
            format!("2001:db8::{:x}", r.below(65_536))
        } else {
            format!(
                "{}.{}.{}.{}",
                1 + r.below(223),
                r.below(256),
                r.below(256),
                1 + r.below(254)
            )
        },
        day: 1 + r.below(28),
        month: r.below(12) as usize,
        h: r.below(24),
        m: r.below(60),
        s: r.below(60),
        ms: r.below(1000),
        method: r.pick(METHODS),
        path,
        query,
        status: r.pick(STATUSES),
        bytes: r.below(200_000),
        rt_ms: r.below(2_000),
        up_ms: r.below(1_500),
        agent: r.pick(AGENTS),
        referer: r.pick(REFERERS),
        key: format!("ak_{:08x}", r.below(5_000)),
        rid: r.next(),
    }
}

fn clf(q: &Req) -> String {
    format!(
        "{:02}/{}/2024:{:02}:{:02}:{:02} +0000",
        q.day, MONTHS[q.month], q.h, q.m, q.s
    )
}

fn iso(q: &Req) -> String {
    format!(
        "2024-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        q.month + 1,
        q.day,
        q.h,
        q.m,
        q.s,
        q.ms
    )
}

fn gen(kind: &str, n: usize, seed: u64) -> Vec<String> {
    let mut r = Rng(seed);
    (0..n)
        .map(|_| {
            let q = req(&mut r);
            match kind {
                "nginx combined" => format!(
                    r#"{} - - [{}] "{} {}{} HTTP/1.1" {} {} "{}" "{}""#,
                    q.ip, clf(&q), q.method, q.path, q.query, q.status, q.bytes, q.referer, q.agent
                ),
                "nginx custom" => format!(
                    r#"{} - - [{}] "{} {}{} HTTP/1.1" {} {} "{}" "{}" {} {}.{:03} "{}.{:03}""#,
                    q.ip, clf(&q), q.method, q.path, q.query, q.status, q.bytes, q.referer, q.agent,
                    q.key, q.rt_ms / 1000, q.rt_ms % 1000, q.up_ms / 1000, q.up_ms % 1000
                ),
                "apache combined %D" => format!(
                    r#"{} - - [{}] "{} {}{} HTTP/1.1" {} {} "{}" "{}" {}"#,
                    q.ip, clf(&q), q.method, q.path, q.query, q.status, q.bytes, q.referer, q.agent,
                    q.rt_ms * 1000
                ),
                "envoy text" => format!(
                    r#"[{}] "{} {}{} HTTP/1.1" {} - {} {} {} {} "{}" "{}" "{:016x}" "api.example.com" "10.0.0.5:8080""#,
                    iso(&q), q.method, q.path, q.query, q.status, q.bytes / 10, q.bytes, q.rt_ms,
                    q.up_ms, q.ip, q.agent, q.rid
                ),
                "envoy json" => format!(
                    r#"{{"start_time":"{}","method":"{}","path":"{}{}","protocol":"HTTP/1.1","response_code":{},"response_flags":"-","bytes_received":{},"bytes_sent":{},"duration":{},"upstream_service_time":"{}","x_forwarded_for":"{}","user_agent":"{}","request_id":"{:016x}","authority":"api.example.com","upstream_host":"10.0.0.5:8080","x_api_key":"{}"}}"#,
                    iso(&q), q.method, q.path, q.query, q.status, q.bytes / 10, q.bytes, q.rt_ms,
                    q.up_ms, q.ip, q.agent, q.rid, q.key
                ),
                "kong" => format!(
                    r#"{{"request":{{"method":"{}","uri":"{}{}","url":"https://api.example.com{}{}","size":{},"querystring":{{}},"headers":{{"host":"api.example.com","user-agent":"{}","x-api-key":"{}","accept":"*/*"}}}},"upstream_uri":"{}","response":{{"status":{},"size":{},"headers":{{"content-type":"application/json","content-length":"{}"}}}},"route":{{"id":"r-1","name":"products"}},"service":{{"id":"s-1","name":"catalog","host":"catalog.internal","port":8080}},"latencies":{{"proxy":{},"kong":3,"request":{}}},"client_ip":"{}","started_at":{},"consumer":{{"id":"c-{}","username":"user{}"}}}}"#,
                    q.method, q.path, q.query, q.path, q.query, q.bytes / 10, q.agent, q.key, q.path,
                    q.status, q.bytes, q.bytes, q.up_ms, q.rt_ms, q.ip,
                    1_704_067_200_000 + q.rid % 31_536_000_000, q.rid % 5000, q.rid % 5000
                ),
                "ndjson" => format!(
                    r#"{{"ts":"{}","api_key":"{}","ip":"{}","method":"{}","host":"api.example.com","path":"{}","status":{},"bytes_sent":{},"latency_us":{},"user_agent":"{}","request_id":"{:016x}"}}"#,
                    iso(&q), q.key, q.ip, q.method, q.path, q.status, q.bytes, q.rt_ms * 1000,
                    q.agent, q.rid
                ),
                other => unreachable!("{other}"),
            }
        })
        .collect()
}

fn main() {
    let scale: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |base: usize| ((base as f64 * scale) as usize).max(1000);
    let formats: Vec<(&str, FormatSpec, usize)> = vec![
        ("nginx combined", FormatSpec::Nginx { log_format: "combined".into(), escape: NginxEscape::Default }, n(1_000_000)),
        ("nginx custom", FormatSpec::Nginx {
            log_format: r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $http_x_api_key $request_time "$upstream_response_time""#.into(),
            escape: NginxEscape::Default,
        }, n(500_000)),
        ("apache combined %D", FormatSpec::Apache { log_format: r#"%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\" %D"#.into() }, n(500_000)),
        ("envoy text", FormatSpec::EnvoyText { format: None }, n(500_000)),
        ("envoy json", FormatSpec::EnvoyJson { fields: EnvoyJsonFields::default() }, n(200_000)),
        ("kong", FormatSpec::Kong, n(200_000)),
        ("ndjson", FormatSpec::Ndjson, n(200_000)),
    ];
    println!("| format | lines | seconds (median of 5) | lines/s/core |");
    println!("|---|---:|---:|---:|");
    for (i, (name, spec, count)) in formats.into_iter().enumerate() {
        let lines = gen(name, count, 0x5EED_0000 + i as u64);
        let parser = Parser::new(&spec).expect("benchmark format compiles");
        // every generated line must parse; otherwise the numbers would measure the error path
        for l in lines.iter().take(1000) {
            if let Err(e) = parser.parse_line(l.as_bytes()) {
                panic!("{name}: {e}: {l}");
            }
        }
        let mut times = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let mut ok = 0usize;
            let mut acc = 0u64;
            for l in &lines {
                if let Ok(rec) = parser.parse_line(black_box(l.as_bytes())) {
                    ok += 1;
                    acc = acc.wrapping_add(u64::from(rec.status) + rec.path.len() as u64);
                }
            }
            times.push(start.elapsed().as_secs_f64());
            assert_eq!(ok, lines.len(), "{name}: every line parses");
            black_box(acc);
        }
        times.sort_by(f64::total_cmp);
        let median = times[2];
        println!(
            "| {name} | {} | {median:.3} | {:.0} |",
            lines.len(),
            lines.len() as f64 / median
        );
    }
}
