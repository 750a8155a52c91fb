//! The ingest pipeline: pick a parser (or detect one), split input into lines, parse, derive the
//! route and client identity, encode into batches and hand them to the store.
//!
//! Architecture invariant: every non-blank input line ends up either accepted or rejected (with
//! its reason) in exactly one batch, so `read == accepted + rejected` for every batch and run.
//! Parsing is CPU work and runs on blocking threads; only finished batches cross into async code.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use sluice_core::{ClientKeyPolicy, RouteNormalizer};
use sluice_logs::{detect, split_json_array, FormatName, FormatSpec, NginxEscape, Parser};
use sluice_store::encode::{BatchBuilder, EncodedBatch, IngestCounts};
use sluice_store::ingest::{IngestWriter, WriteOutcome};
use sluice_store::StoreError;

/// Default number of lines per batch (one transaction each).
pub const DEFAULT_BATCH_LINES: usize = 50_000;
/// Longest line kept whole; longer lines are rejected (their first 8 KiB kept).
pub const MAX_LINE_BYTES: usize = 1 << 20;
const READ_CHUNK: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Format(#[from] sluice_logs::FormatError),
    #[error("cannot detect the log format: {0}; name it with --format (nginx, apache, envoy, envoy-json, kong, ndjson)")]
    Detect(#[from] sluice_logs::DetectError),
    #[error("--log-format applies to the nginx, apache and envoy formats, not {0}")]
    LogFormatNotApplicable(&'static str),
    #[error("the input is empty: nothing to detect a format from")]
    EmptyInput,
    #[error("failed to read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("stopped after committing {committed} lines: {source}")]
    Interrupted {
        committed: u64,
        #[source]
        source: Box<IngestError>,
    },
}

impl IngestError {
    /// The store error underneath, if any (to map "database down" to 503 and such).
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            IngestError::Store(e) => Some(e),
            IngestError::Interrupted { source, .. } => source.store_error(),
            _ => None,
        }
    }
}

/// A `--format` choice plus its optional `--log-format` string.
#[derive(Clone, Debug)]
pub struct FormatChoice {
    pub name: FormatName,
    pub log_format: Option<String>,
}

impl Default for FormatChoice {
    fn default() -> Self {
        FormatChoice {
            name: FormatName::Auto,
            log_format: None,
        }
    }
}

impl FormatChoice {
    /// The concrete format, or `None` when it must be detected from the input.
    pub fn spec(&self) -> Result<Option<FormatSpec>, IngestError> {
        let Some(default) = self.name.default_spec() else {
            return match &self.log_format {
                // `auto` with a format string: an nginx-style string ($vars) or Apache (%x).
                Some(f) if f.contains('$') => Ok(Some(FormatSpec::Nginx {
                    log_format: f.clone(),
                    escape: NginxEscape::Default,
                })),
                Some(f) if f.contains('%') => Ok(Some(FormatSpec::Apache { log_format: f.clone() })),
                _ => Ok(None),
            };
        };
        let Some(lf) = &self.log_format else {
            return Ok(Some(default));
        };
        Ok(Some(match self.name {
            FormatName::Nginx => FormatSpec::Nginx {
                log_format: lf.clone(),
                escape: NginxEscape::Default,
            },
            FormatName::Apache => FormatSpec::Apache { log_format: lf.clone() },
            FormatName::Envoy => FormatSpec::EnvoyText {
                format: Some(lf.clone()),
            },
            other => return Err(IngestError::LogFormatNotApplicable(other.as_str())),
        }))
    }
}

/// How records are enriched after parsing.
#[derive(Clone, Debug, Default)]
pub struct Enrichment {
    pub client_key: ClientKeyPolicy,
    pub routes: RouteNormalizer,
}

/// A compiled parser plus enrichment: turns input units into batch entries.
#[derive(Debug)]
pub struct Pipeline {
    parser: Parser,
    /// Name stored with each batch (`nginx`, `kong`, ...).
    format: &'static str,
    json_format: bool,
    /// How the format was chosen, when it was detected.
    detection: Option<String>,
    enrich: Arc<Enrichment>,
}

fn format_label(spec: &FormatSpec) -> (&'static str, bool) {
    match spec {
        FormatSpec::Nginx { .. } => ("nginx", false),
        FormatSpec::Apache { .. } => ("apache", false),
        FormatSpec::EnvoyText { .. } => ("envoy", false),
        FormatSpec::EnvoyJson { .. } => ("envoy-json", true),
        FormatSpec::Kong => ("kong", true),
        FormatSpec::Ndjson => ("ndjson", true),
    }
}

impl Pipeline {
    pub fn new(spec: &FormatSpec, enrich: Arc<Enrichment>) -> Result<Pipeline, IngestError> {
        let parser = Parser::new(spec)?;
        let (format, json_format) = format_label(spec);
        Ok(Pipeline {
            parser,
            format,
            json_format,
            detection: None,
            enrich,
        })
    }

    /// Build from a choice, detecting the format from `sample` (the start of the input) when
    /// the choice is `auto`.
    pub fn resolve(choice: &FormatChoice, sample: &[u8], enrich: Arc<Enrichment>) -> Result<Pipeline, IngestError> {
        if let Some(spec) = choice.spec()? {
            return Pipeline::new(&spec, enrich);
        }
        let units = sample_units(sample, sluice_logs::DETECT_SAMPLE_LINES);
        if units.is_empty() {
            return Err(IngestError::EmptyInput);
        }
        let refs: Vec<&[u8]> = units.iter().map(Vec::as_slice).collect();
        let detected = detect(&refs)?;
        let mut p = Pipeline::new(&detected.spec, enrich)?;
        p.detection = Some(format!("format {}: {}", detected.name, detected.reason));
        Ok(p)
    }

    pub fn format(&self) -> &'static str {
        self.format
    }

    /// Why the format was chosen, when it was detected (`format combined (nginx/apache): ...`).
    pub fn detection(&self) -> Option<&str> {
        self.detection.as_deref()
    }

    /// Add every line of `data` (complete lines; a last line without `\n` counts too), numbering
    /// them from `first_line_no`. Returns the number of the next line.
    pub fn add_lines(&self, b: &mut BatchBuilder, data: &[u8], first_line_no: u64) -> u64 {
        let mut line_no = first_line_no;
        for line in LineIter::new(data) {
            self.add_unit(b, line_no, line);
            line_no += 1;
        }
        line_no
    }

    /// Add one unit: a log line, a JSON value, a JSON array of records, or a shipper envelope
    /// (`{"message": "<raw line>"}` from Vector, `{"log": ...}` from Fluent Bit). Blank units are
    /// skipped and not counted.
    pub fn add_unit(&self, b: &mut BatchBuilder, line_no: u64, unit: &[u8]) {
        let unit = trim(unit);
        if unit.is_empty() {
            return;
        }
        if unit[0] == b'[' && !(self.format == "envoy" && looks_like_envoy_line(unit)) {
            match split_json_array(unit) {
                Ok(elements) => {
                    for el in elements {
                        self.add_unit(b, line_no, el);
                    }
                }
                Err(e) => b.reject(line_no, &e.reason(), unit),
            }
            return;
        }
        if unit[0] == b'{' && !self.json_format {
            match unwrap_envelope(unit) {
                Ok(inner) => self.add_parsed(b, line_no, inner.as_bytes(), unit),
                Err(reason) => b.reject(line_no, &format!("{reason}, but the format is {} (text)", self.format), unit),
            }
            return;
        }
        self.add_parsed(b, line_no, unit, unit);
    }

    fn add_parsed(&self, b: &mut BatchBuilder, line_no: u64, line: &[u8], raw: &[u8]) {
        match self.parser.parse_line(line) {
            Ok(mut rec) => {
                let route = self.enrich.routes.normalize(&rec.path);
                // Borrow the route from the record's path when unchanged.
                rec.route = Some(match route {
                    std::borrow::Cow::Borrowed(_) => rec.path.clone(),
                    std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s),
                });
                rec.client = self.enrich.client_key.resolve(&rec);
                b.push(&rec);
            }
            Err(e) => b.reject(line_no, &e.reason(), raw),
        }
    }
}

fn looks_like_envoy_line(unit: &[u8]) -> bool {
    // `[2016-04-15T20:17:00.310Z] "GET ...`: a bracketed timestamp, not a JSON array.
    unit.len() > 2 && unit[1].is_ascii_digit()
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., last] = s {
        if matches!(last, b'\r' | b'\n' | b' ' | b'\t') {
            s = rest;
        } else {
            break;
        }
    }
    while let [first, rest @ ..] = s {
        if matches!(first, b' ' | b'\t') {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// The raw line inside a log shipper's JSON envelope.
fn unwrap_envelope(unit: &[u8]) -> Result<String, &'static str> {
    let v: serde_json::Value = serde_json::from_slice(unit).map_err(|_| "invalid JSON object")?;
    for key in ["message", "log", "msg"] {
        if let Some(s) = v.get(key).and_then(|m| m.as_str()) {
            return Ok(s.trim_end_matches(['\n', '\r']).to_owned());
        }
    }
    Err("JSON object without a \"message\" or \"log\" string field")
}

/// Up to `max` units from the start of `data`, with arrays split and envelopes unwrapped, for
/// format detection.
pub fn sample_units(data: &[u8], max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let trimmed = trim(data);
    // A body that is one JSON array spanning several lines.
    if trimmed.first() == Some(&b'[') && trimmed.get(1).is_some_and(|c| !c.is_ascii_digit()) {
        if let Ok(elements) = split_json_array(trimmed) {
            for el in elements.into_iter().take(max) {
                out.push(unwrap_or_keep(el));
            }
            return out;
        }
    }
    for line in LineIter::new(data) {
        let line = trim(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b'[' && line.get(1).is_some_and(|c| !c.is_ascii_digit()) {
            if let Ok(elements) = split_json_array(line) {
                out.extend(elements.into_iter().map(unwrap_or_keep));
            }
        } else {
            out.push(unwrap_or_keep(line));
        }
        if out.len() >= max {
            out.truncate(max);
            break;
        }
    }
    out
}

fn unwrap_or_keep(unit: &[u8]) -> Vec<u8> {
    let unit = trim(unit);
    if unit.first() == Some(&b'{') {
        let v: Option<serde_json::Value> = serde_json::from_slice(unit).ok();
        if let Some(v) = v {
            // An envelope has a message and no request fields of its own.
            let is_record = ["status", "request", "response_code", "ts", "started_at"]
                .iter()
                .any(|k| v.get(k).is_some());
            if !is_record {
                if let Ok(inner) = unwrap_envelope(unit) {
                    return inner.into_bytes();
                }
            }
        }
    }
    unit.to_vec()
}

/// Lines of a buffer, without their `\n`.
struct LineIter<'a> {
    data: &'a [u8],
}

impl<'a> LineIter<'a> {
    fn new(data: &'a [u8]) -> Self {
        LineIter { data }
    }
}

impl<'a> Iterator for LineIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.data.is_empty() {
            return None;
        }
        match memchr::memchr(b'\n', self.data) {
            Some(i) => {
                let line = &self.data[..i];
                self.data = &self.data[i + 1..];
                Some(line)
            }
            None => Some(std::mem::take(&mut self.data)),
        }
    }
}

/// Where `sluice ingest` reads from.
#[derive(Clone, Debug)]
pub enum InputSource {
    File(PathBuf),
    Stdin,
}

impl InputSource {
    pub fn describe(&self) -> String {
        match self {
            InputSource::File(p) => p.display().to_string(),
            InputSource::Stdin => "standard input".into(),
        }
    }

    /// Default source name: the file name, or `stdin`.
    pub fn default_source_name(&self) -> String {
        match self {
            InputSource::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".gz").to_owned())
                .unwrap_or_else(|| "file".into()),
            InputSource::Stdin => "stdin".into(),
        }
    }
}

/// Settings of one `sluice ingest` run.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub format: FormatChoice,
    pub enrich: Arc<Enrichment>,
    /// Source name for records that carry none; default: the file name.
    pub source: Option<String>,
    pub batch_lines: usize,
    /// Batches in flight between the parser and the database (memory bound).
    pub queue_batches: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            format: FormatChoice::default(),
            enrich: Arc::new(Enrichment::default()),
            source: None,
            batch_lines: DEFAULT_BATCH_LINES,
            queue_batches: 2,
        }
    }
}

/// Progress of a run, reported after each committed batch.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub counts: IngestCounts,
    pub bytes_read: u64,
    pub batches: u64,
    pub duplicate_batches: u64,
}

/// The outcome of a whole run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IngestSummary {
    pub read: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Batches (and their lines) that had been committed by an earlier run and were skipped;
    /// their counts are included above as originally recorded.
    pub duplicate_batches: u64,
    pub duplicate_lines: u64,
    pub batches: u64,
    pub bytes: u64,
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection: Option<String>,
    pub source: String,
    pub seconds: f64,
    pub lines_per_second: f64,
}

struct Produced {
    batch: EncodedBatch,
    bytes_read: u64,
}

/// Read `input` (plain or gzip), parse and store it batch by batch. A batch is keyed by the
/// file's identity and its byte range, so running the same file again writes nothing twice.
pub async fn ingest_stream(
    writer: Arc<IngestWriter>,
    input: InputSource,
    cfg: StreamConfig,
    mut progress: impl FnMut(&Progress) + Send,
) -> Result<IngestSummary, IngestError> {
    let started = Instant::now();
    let source = cfg.source.clone().unwrap_or_else(|| input.default_source_name());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Produced, IngestError>>(cfg.queue_batches.max(1));
    let (meta_tx, meta_rx) = tokio::sync::oneshot::channel::<(&'static str, Option<String>)>();
    let producer_source = source.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let res = produce(&input, &cfg, &producer_source, meta_tx, &tx);
        if let Err(e) = res {
            let _ = tx.blocking_send(Err(e));
        }
    });

    let mut summary = IngestSummary {
        source,
        ..Default::default()
    };
    let mut p = Progress::default();
    let mut failure: Option<IngestError> = None;
    while let Some(item) = rx.recv().await {
        let produced = match item {
            Ok(p) => p,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let lines = produced.batch.counts.read;
        match writer.write(produced.batch).await {
            Ok(outcome) => {
                p.counts.add(outcome.counts());
                p.batches += 1;
                if let WriteOutcome::Duplicate { .. } = outcome {
                    p.duplicate_batches += 1;
                    summary.duplicate_lines += lines;
                }
                p.bytes_read = produced.bytes_read;
                progress(&p);
            }
            Err(e) => {
                failure = Some(e.into());
                break;
            }
        }
    }
    drop(rx);
    let _ = producer.await;
    if let Ok((format, detection)) = meta_rx.await {
        summary.format = format.to_owned();
        summary.detection = detection;
    }
    if let Some(e) = failure {
        return Err(if p.counts.read > 0 {
            IngestError::Interrupted {
                committed: p.counts.read,
                source: Box::new(e),
            }
        } else {
            e
        });
    }
    let secs = started.elapsed().as_secs_f64();
    summary.read = p.counts.read;
    summary.accepted = p.counts.accepted;
    summary.rejected = p.counts.rejected;
    summary.batches = p.batches;
    summary.duplicate_batches = p.duplicate_batches;
    summary.bytes = p.bytes_read;
    summary.seconds = secs;
    summary.lines_per_second = if secs > 0.0 { p.counts.read as f64 / secs } else { 0.0 };
    Ok(summary)
}

fn open(input: &InputSource) -> Result<Box<dyn Read + Send>, IngestError> {
    let raw: Box<dyn Read + Send> = match input {
        InputSource::File(p) => Box::new(std::fs::File::open(p).map_err(|source| IngestError::Read {
            what: p.display().to_string(),
            source,
        })?),
        InputSource::Stdin => Box::new(std::io::stdin()),
    };
    // Decide on gzip by its magic bytes, not the file name.
    let mut peekable = std::io::BufReader::with_capacity(READ_CHUNK, raw);
    let head = std::io::BufRead::fill_buf(&mut peekable).map_err(|source| IngestError::Read {
        what: input.describe(),
        source,
    })?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(peekable)))
    } else {
        Ok(Box::new(peekable))
    }
}

fn file_identity(input: &InputSource, head: &[u8]) -> Option<String> {
    let InputSource::File(p) = input else {
        return None;
    };
    let canonical = p.canonicalize().unwrap_or_else(|_| p.to_owned());
    let mut h = Sha256::new();
    h.update(canonical.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(&head[..head.len().min(4096)]);
    Some(hex::encode(&h.finalize()[..12]))
}

fn read_full(r: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let mut filled = 0;
    while filled < want {
        match r.read(&mut buf[start + filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(start + filled);
                return Err(e);
            }
        }
    }
    buf.truncate(start + filled);
    Ok(filled)
}

/// The blocking half: read, split, parse, encode; send finished batches.
fn produce(
    input: &InputSource,
    cfg: &StreamConfig,
    source: &str,
    meta: tokio::sync::oneshot::Sender<(&'static str, Option<String>)>,
    tx: &tokio::sync::mpsc::Sender<Result<Produced, IngestError>>,
) -> Result<(), IngestError> {
    let mut reader = open(input)?;
    let read_err = |source| IngestError::Read {
        what: input.describe(),
        source,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK * 2);
    let mut eof = read_full(&mut *reader, &mut buf, READ_CHUNK).map_err(read_err)? < READ_CHUNK;
    let pipeline = Pipeline::resolve(&cfg.format, &buf, cfg.enrich.clone())?;
    let identity = file_identity(input, &buf);
    let _ = meta.send((pipeline.format(), pipeline.detection().map(str::to_owned)));

    let batch_lines = cfg.batch_lines.max(1) as u64;
    let mut builder = BatchBuilder::new(source);
    let mut lines_in_batch: u64 = 0;
    let mut line_no: u64 = 1;
    // Byte offsets (in the decompressed stream) of the batch being built and of `buf[0]`.
    let mut batch_start: u64 = 0;
    let mut buf_offset: u64 = 0;
    let mut skipping_long_line = false;

    let finish = |builder: BatchBuilder, start: u64, end: u64| -> Produced {
        let key = identity.as_ref().map(|id| format!("file:{id}:{start}-{end}"));
        Produced {
            batch: builder.finish(key, pipeline.format()),
            bytes_read: end,
        }
    };

    loop {
        let mut consumed = 0usize;
        while let Some(nl) = memchr::memchr(b'\n', &buf[consumed..]) {
            let line = &buf[consumed..consumed + nl];
            consumed += nl + 1;
            if skipping_long_line {
                skipping_long_line = false;
                continue;
            }
            pipeline.add_unit(&mut builder, line_no, line);
            line_no += 1;
            lines_in_batch += 1;
            if lines_in_batch >= batch_lines {
                let end = buf_offset + consumed as u64;
                let done = std::mem::replace(&mut builder, BatchBuilder::new(source));
                if tx.blocking_send(Ok(finish(done, batch_start, end))).is_err() {
                    return Ok(()); // the writer stopped; it reports why
                }
                batch_start = end;
                lines_in_batch = 0;
            }
        }
        buf.drain(..consumed);
        buf_offset += consumed as u64;
        if buf.len() > MAX_LINE_BYTES && !skipping_long_line {
            builder.reject(
                line_no,
                &format!("line longer than {MAX_LINE_BYTES} bytes"),
                &buf[..buf.len().min(8192)],
            );
            line_no += 1;
            lines_in_batch += 1;
            skipping_long_line = true;
        }
        if skipping_long_line {
            buf_offset += buf.len() as u64;
            buf.clear();
        }
        if eof {
            break;
        }
        eof = read_full(&mut *reader, &mut buf, READ_CHUNK).map_err(read_err)? < READ_CHUNK;
    }
    if !buf.is_empty() && !skipping_long_line {
        pipeline.add_unit(&mut builder, line_no, &buf);
        buf_offset += buf.len() as u64;
    }
    if builder.counts().read > 0 {
        let _ = tx.blocking_send(Ok(finish(builder, batch_start, buf_offset)));
    }
    Ok(())
}

/// Parse a whole request body (HTTP ingestion) into one batch.
pub fn batch_from_body(
    pipeline: &Pipeline,
    body: &[u8],
    source: &str,
    idempotency_key: Option<String>,
) -> EncodedBatch {
    let mut b = BatchBuilder::new(source);
    let trimmed = trim(body);
    // A JSON array body may span lines (pretty-printed); split it as a whole first.
    if trimmed.first() == Some(&b'[') && !looks_like_envoy_line(trimmed) && split_json_array(trimmed).is_ok() {
        pipeline.add_unit(&mut b, 1, trimmed);
    } else {
        pipeline.add_lines(&mut b, body, 1);
    }
    b.finish(idempotency_key, pipeline.format())
}

/// Resolve the path argument `-` to stdin.
pub fn input_for(arg: &Path) -> InputSource {
    if arg.as_os_str() == "-" {
        InputSource::Stdin
    } else {
        InputSource::File(arg.to_owned())
    }
}
