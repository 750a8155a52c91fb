//! A deterministic, realistic nginx `combined` access log: 500 clients with a skewed popularity
//! (IPv4, some IPv6, some basic-auth users), REST paths with numeric and UUID ids, query strings,
//! a realistic status mix, sticky user agents, and timestamps spread over six hours that cross a
//! UTC midnight (two daily partitions).

use std::io::{BufWriter, Write};
use std::path::Path;

/// First timestamp of the generated log: 2024-03-10 21:00:00 UTC (Unix seconds).
pub const START_UNIX: i64 = 1_710_104_400;
/// The log spans this many seconds.
pub const SPAN_SECS: i64 = 6 * 3600;
pub const CLIENTS: usize = 500;

/// xorshift64*: fixed seed, same file on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
    "PostmanRuntime/7.36.3",
];
const REFERERS: &[&str] = &[
    "https://shop.example.com/",
    "https://shop.example.com/cart",
    "https://www.google.com/",
];
const WORDS: &[&str] = &[
    "shoes",
    "red+dress",
    "laptop",
    "usb-c",
    "coffee",
    "gift%20card",
    "tent",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

struct Client {
    ip: String,
    user: Option<String>,
    agent: &'static str,
}

fn clients(r: &mut Rng) -> Vec<Client> {
    (0..CLIENTS)
        .map(|i| {
            let ip = if i % 12 == 5 {
                format!(
                    "2001:db8:{:x}:{:x}::{:x}",
                    r.below(0xffff),
                    r.below(0xffff),
                    1 + r.below(0xfffe)
                )
            } else {
                format!(
                    "{}.{}.{}.{}",
                    1 + r.below(222),
                    r.below(256),
                    r.below(256),
                    1 + r.below(254)
                )
            };
            let user = (i % 6 == 1).then(|| format!("user{:04}", r.below(10_000)));
            Client {
                ip,
                user,
                agent: r.pick(AGENTS),
            }
        })
        .collect()
}

fn uuid(r: &mut Rng) -> String {
    let a = r.next_u64();
    let b = r.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// Method, path with query, status and body bytes of one request.
fn request(r: &mut Rng, out: &mut String) -> (&'static str, u16, u64) {
    use std::fmt::Write as _;
    out.clear();
    let (method, ok) = match r.below(100) {
        0..=24 => {
            let _ = write!(out, "/v1/products/{}", r.below(50_000));
            ("GET", 200)
        }
        25..=39 => {
            let _ = write!(out, "/v1/products?page={}&per_page=50", 1 + r.below(40));
            ("GET", 200)
        }
        40..=49 => {
            let _ = write!(out, "/v1/users/{}/orders", r.below(200_000));
            ("GET", 200)
        }
        50..=56 => {
            let _ = write!(out, "/v1/orders/{}", uuid(r));
            ("GET", 200)
        }
        57..=61 => {
            out.push_str("/v1/orders");
            ("POST", 201)
        }
        62..=69 => {
            let _ = write!(out, "/v1/search?q={}&sort=price", r.pick(WORDS));
            ("GET", 200)
        }
        70..=74 => {
            let _ = write!(out, "/v2/carts/{}/items/{}", r.below(80_000), r.below(500));
            (if r.below(3) == 0 { "DELETE" } else { "PUT" }, 204)
        }
        75..=84 => {
            let _ = write!(out, "/static/js/app.{:08x}.js", r.below(4) * 0x1f3a_9c27);
            ("GET", 200)
        }
        85..=89 => {
            out.push_str("/login");
            ("POST", 200)
        }
        90..=94 => {
            out.push_str("/healthz");
            ("GET", 200)
        }
        _ => {
            out.push('/');
            ("GET", 200)
        }
    };
    let status = match r.below(1000) {
        0..=879 => ok,
        880..=909 => 304,
        910..=934 => 404,
        935..=949 => 401,
        950..=954 => 403,
        955..=974 => 429,
        975..=984 => 400,
        985..=994 => 500,
        995..=997 => 502,
        _ => 503,
    };
    let bytes = match status {
        204 | 304 => 0,
        200 | 201 => 200 + r.below(60_000),
        _ => 100 + r.below(400),
    };
    (method, status, bytes)
}

/// Write `lines` lines to `path`; returns the file size in bytes.
pub fn write_nginx_combined(path: &Path, lines: u64, seed: u64) -> std::io::Result<u64> {
    let mut r = Rng::new(seed);
    let clients = clients(&mut r);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut time_local = String::new();
    let mut time_sec = i64::MIN;
    let mut req = String::new();
    for i in 0..lines {
        // Nearly ordered, as in a real log: a few seconds of jitter around the ideal position.
        let sec = START_UNIX
            + (i as i128 * SPAN_SECS as i128 / lines.max(1) as i128) as i64
            + r.below(3) as i64;
        if sec != time_sec {
            time_sec = sec;
            let t = chrono::DateTime::from_timestamp(sec, 0).unwrap_or_default();
            use chrono::{Datelike, Timelike};
            time_local = format!(
                "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
                t.day(),
                MONTHS[t.month0() as usize],
                t.year(),
                t.hour(),
                t.minute(),
                t.second()
            );
        }
        // A fifth of the traffic comes from the 20 busiest clients.
        let c = if r.below(5) == 0 {
            &clients[r.below(20) as usize]
        } else {
            &clients[r.below(CLIENTS as u64) as usize]
        };
        let (method, status, bytes) = request(&mut r, &mut req);
        let referer = if r.below(4) == 0 {
            r.pick(REFERERS)
        } else {
            "-"
        };
        writeln!(
            w,
            "{} - {} [{}] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\"",
            c.ip,
            c.user.as_deref().unwrap_or("-"),
            time_local,
            method,
            req,
            status,
            bytes,
            referer,
            c.agent
        )?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}
