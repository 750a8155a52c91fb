//! The ingest pipeline: pick a parser (or detect one), split input into lines, parse, derive the
//! route and client identity, encode into batches and hand them to the store.
//!
//! Architecture invariant: every non-blank input line ends up either accepted or rejected (with
//! its reason) in exactly one batch, so `read == accepted + rejected` for every batch and run.
//! Parsing is CPU work and runs on blocking threads; only finished batches cross into async code.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use sluice_core::{ClientKeyPolicy, RouteNormalizer};
use sluice_logs::{detect, split_json_array, FormatName, FormatSpec, NginxEscape, Parser};
use sluice_store::encode::{BatchBuilder, EncodedBatch, IngestCounts};
use sluice_store::ingest::{BatchTurn, IngestWriter, WriteOutcome};
use sluice_store::StoreError;
use tokio::sync::oneshot;

/// Default number of lines per batch (one transaction each).
pub const DEFAULT_BATCH_LINES: usize = 50_000;
/// Longest line kept whole; longer lines are rejected (their first 8 KiB kept).
pub const MAX_LINE_BYTES: usize = 1 << 20;
const READ_CHUNK: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Format(#[from] sluice_logs::FormatError),
    // `DetectError` already starts with "cannot detect the log format: " and says to pass
    // --format; only the list of names is added.
    #[error("{0}; the formats are nginx, apache, envoy, envoy-json, kong and ndjson")]
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
                Some(f) if f.contains('%') => Ok(Some(FormatSpec::Apache {
                    log_format: f.clone(),
                })),
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
            FormatName::Apache => FormatSpec::Apache {
                log_format: lf.clone(),
            },
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
    pub fn resolve(
        choice: &FormatChoice,
        sample: &[u8],
        enrich: Arc<Enrichment>,
    ) -> Result<Pipeline, IngestError> {
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
    /// them from `first_line_no`. Lines longer than [`MAX_LINE_BYTES`] are rejected, as in files.
    /// Returns the number of the next line.
    pub fn add_lines(&self, b: &mut BatchBuilder, data: &[u8], first_line_no: u64) -> u64 {
        let mut line_no = first_line_no;
        for line in LineIter::new(data) {
            if line.len() > MAX_LINE_BYTES {
                reject_overlong(b, line_no, line);
            } else {
                self.add_unit(b, line_no, line);
            }
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
                Err(reason) => b.reject(
                    line_no,
                    &format!("{reason}, but the format is {} (text)", self.format),
                    unit,
                ),
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

/// Batches written concurrently by [`ingest_stream`], each on its own connection.
const WRITES_IN_FLIGHT: usize = 2;

/// A spawned write that is cancelled (its transaction rolled back) when the stream is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<WriteOutcome, StoreError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    let source = cfg
        .source
        .clone()
        .unwrap_or_else(|| input.default_source_name());
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<Produced, IngestError>>(cfg.queue_batches.max(1));
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
    // Up to WRITES_IN_FLIGHT batches are written at once on separate connections (Postgres
    // works on one per connection); `BatchTurn` keeps their commits in order, so results are
    // handled below in order, exactly as if written one after another.
    let mut in_flight: VecDeque<(u64, u64, AbortOnDrop)> = VecDeque::new();
    let mut prev_turn: (
        Option<oneshot::Receiver<()>>,
        Option<oneshot::Receiver<bool>>,
    ) = (None, None);
    let mut input_error: Option<IngestError> = None;
    let mut input_done = false;
    loop {
        while !input_done && failure.is_none() && in_flight.len() < WRITES_IN_FLIGHT {
            match rx.recv().await {
                None => input_done = true,
                Some(Err(e)) => {
                    // Reported after the batches before it are written, as they came first.
                    input_error = Some(e);
                    input_done = true;
                }
                Some(Ok(produced)) => {
                    let (started_tx, started_rx) = oneshot::channel();
                    let (done_tx, done_rx) = oneshot::channel();
                    let (prev_started, prev_done) =
                        std::mem::replace(&mut prev_turn, (Some(started_rx), Some(done_rx)));
                    let turn = BatchTurn {
                        prev_started,
                        prev_done,
                        started: Some(started_tx),
                        done: Some(done_tx),
                    };
                    let lines = produced.batch.counts.read;
                    let w = writer.clone();
                    let task =
                        tokio::spawn(async move { w.write_in_turn(produced.batch, turn).await });
                    in_flight.push_back((lines, produced.bytes_read, AbortOnDrop(task)));
                }
            }
        }
        let Some((lines, bytes_read, mut task)) = in_flight.pop_front() else {
            break;
        };
        let res = (&mut task.0)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        if failure.is_some() {
            continue; // later batches roll back after a failure; wait for them to finish
        }
        match res {
            Ok(outcome) => {
                p.counts.add(outcome.counts());
                p.batches += 1;
                if let WriteOutcome::Duplicate { .. } = outcome {
                    p.duplicate_batches += 1;
                    summary.duplicate_lines += lines;
                }
                p.bytes_read = bytes_read;
                progress(&p);
            }
            Err(e) => failure = Some(e.into()),
        }
    }
    if failure.is_none() {
        failure = input_error;
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
    summary.lines_per_second = if secs > 0.0 {
        p.counts.read as f64 / secs
    } else {
        0.0
    };
    Ok(summary)
}

fn open(input: &InputSource) -> Result<Box<dyn Read + Send>, IngestError> {
    let raw: Box<dyn Read + Send> = match input {
        InputSource::File(p) => {
            Box::new(std::fs::File::open(p).map_err(|source| IngestError::Read {
                what: p.display().to_string(),
                source,
            })?)
        }
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
        let key = identity
            .as_ref()
            .map(|id| format!("file:{id}:{start}-{end}"));
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
            // A long line that arrived whole within the buffer is rejected like one that spans
            // reads, so the outcome does not depend on where the 4 MiB reads fall.
            if line.len() > MAX_LINE_BYTES {
                reject_overlong(&mut builder, line_no, line);
            } else {
                pipeline.add_unit(&mut builder, line_no, line);
            }
            line_no += 1;
            lines_in_batch += 1;
            if lines_in_batch >= batch_lines {
                let end = buf_offset + consumed as u64;
                let done = std::mem::replace(&mut builder, BatchBuilder::new(source));
                if tx
                    .blocking_send(Ok(finish(done, batch_start, end)))
                    .is_err()
                {
                    return Ok(()); // the writer stopped; it reports why
                }
                batch_start = end;
                lines_in_batch = 0;
            }
        }
        buf.drain(..consumed);
        buf_offset += consumed as u64;
        if buf.len() > MAX_LINE_BYTES && !skipping_long_line {
            reject_overlong(&mut builder, line_no, &buf);
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

/// Reject a line longer than [`MAX_LINE_BYTES`], keeping its first 8 KiB.
fn reject_overlong(b: &mut BatchBuilder, line_no: u64, line: &[u8]) {
    b.reject(
        line_no,
        &format!("line longer than {MAX_LINE_BYTES} bytes"),
        &line[..line.len().min(8192)],
    );
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
    if trimmed.first() == Some(&b'[')
        && !looks_like_envoy_line(trimmed)
        && split_json_array(trimmed).is_ok()
    {
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn combined(i: usize) -> String {
        format!(
            r#"10.0.{}.{} - - [20/May/2015:12:05:{:02} +0000] "GET /items/{i} HTTP/1.1" 200 {} "-" "test-agent/1.0""#,
            (i / 250) % 250,
            i % 250,
            i % 60,
            100 + i % 900,
        )
    }

    fn nginx() -> Pipeline {
        Pipeline::new(
            &FormatSpec::Nginx {
                log_format: "combined".into(),
                escape: NginxEscape::Default,
            },
            Arc::new(Enrichment::default()),
        )
        .unwrap()
    }

    fn batch_of(p: &Pipeline, units: &[&[u8]]) -> EncodedBatch {
        let mut b = BatchBuilder::new("test");
        for (i, u) in units.iter().enumerate() {
            p.add_unit(&mut b, i as u64 + 1, u);
        }
        b.finish(None, p.format())
    }

    fn rejects(b: &EncodedBatch) -> Vec<(u64, &str)> {
        b.rejects
            .iter()
            .map(|r| (r.line_no, r.reason.as_str()))
            .collect()
    }

    /// Run the blocking producer on its own thread and collect every batch and the metadata.
    fn produce_all(input: InputSource, cfg: StreamConfig) -> (Vec<Produced>, &'static str) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let (meta_tx, meta_rx) = tokio::sync::oneshot::channel();
        let producer = std::thread::spawn(move || produce(&input, &cfg, "test", meta_tx, &tx));
        let mut out = Vec::new();
        while let Some(item) = rx.blocking_recv() {
            out.push(item.expect("producer failed"));
        }
        producer.join().unwrap().expect("producer failed");
        let (format, _) = meta_rx.blocking_recv().expect("format metadata");
        (out, format)
    }

    /// Byte range `start-end` from a batch's idempotency key `file:ID:start-end`.
    fn key_range(b: &EncodedBatch) -> (u64, u64) {
        let key = b
            .idempotency_key
            .as_deref()
            .expect("file batches have a key");
        let range = key.rsplit(':').next().unwrap();
        let (s, e) = range.split_once('-').unwrap();
        (s.parse().unwrap(), e.parse().unwrap())
    }

    #[test]
    fn envelopes_are_unwrapped_for_text_formats() {
        let p = nginx();
        let line = combined(1);
        let vector = serde_json::json!({"message": line, "host": "edge-1", "timestamp": "2015-05-20T12:05:01Z"}).to_string();
        let fluent = serde_json::json!({"date": 1.7e9, "log": format!("{line}\n")}).to_string();
        let msg = serde_json::json!({"msg": line}).to_string();
        let array = format!("[{vector}, {fluent}]");
        let b = batch_of(
            &p,
            &[
                vector.as_bytes(),
                fluent.as_bytes(),
                msg.as_bytes(),
                array.as_bytes(),
                br#"{"level": "info"}"#,
                b"{not json",
                br#"{"message": "not a log line"}"#,
            ],
        );
        assert_eq!(b.counts.read, 8);
        assert_eq!(b.counts.accepted, 5);
        assert_eq!(b.counts.rejected, 3);
        let r = rejects(&b);
        assert_eq!(
            r[0],
            (5, "JSON object without a \"message\" or \"log\" string field, but the format is nginx (text)")
        );
        assert_eq!(
            r[1],
            (6, "invalid JSON object, but the format is nginx (text)")
        );
        assert_eq!(r[2].0, 7);
        // The raw text kept for a rejected envelope is the whole envelope.
        assert_eq!(b.rejects[2].raw, r#"{"message": "not a log line"}"#);
    }

    #[test]
    fn json_formats_parse_objects_themselves() {
        let p = Pipeline::new(&FormatSpec::Ndjson, Arc::new(Enrichment::default())).unwrap();
        let b = batch_of(
            &p,
            &[
                br#"{"ts":"2015-05-17T10:05:03Z","path":"/a","status":200}"#,
                br#"[{"ts":"2015-05-17T10:05:04Z","path":"/b","status":200},{"ts":"2015-05-17T10:05:05Z","path":"/c","status":404}]"#,
                br#"{"message":"1.2.3.4 - - [20/May/2015:12:05:01 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\""}"#,
                b"[1, 2",
            ],
        );
        assert_eq!(
            (b.counts.read, b.counts.accepted, b.counts.rejected),
            (5, 3, 2)
        );
        let r = rejects(&b);
        // An envelope is not unwrapped for a JSON format: it is a record without its fields.
        assert_eq!(r[0].0, 3);
        assert!(r[0].1.starts_with("missing required field"), "{}", r[0].1);
        assert_eq!(r[1].0, 4);
        assert!(r[1].1.starts_with("invalid json: "), "{}", r[1].1);
    }

    #[test]
    fn blank_lines_are_skipped_but_keep_line_numbers() {
        let p = nginx();
        let data = format!(
            "{}\n\n   \n\t\r\nbroken line\r\n\n{}",
            combined(1),
            combined(2)
        );
        let mut b = BatchBuilder::new("test");
        let next = p.add_lines(&mut b, data.as_bytes(), 1);
        assert_eq!(next, 8);
        let b = b.finish(None, "nginx");
        assert_eq!(
            (b.counts.read, b.counts.accepted, b.counts.rejected),
            (3, 2, 1)
        );
        assert_eq!(b.rejects[0].line_no, 5);
        assert_eq!(b.rejects[0].raw, "broken line");
    }

    #[test]
    fn sample_units_split_arrays_and_unwrap_envelopes() {
        let line = combined(7);
        let vector = serde_json::json!({"message": line, "host": "h"}).to_string();
        let fluent = serde_json::json!({"date": 1.7e9, "log": line}).to_string();
        let ndjson_rec = r#"{"ts":"2015-05-17T10:05:03Z","path":"/a","status":200,"message":"x"}"#;
        let kong = r#"{"started_at":1431857103000,"request":{"method":"GET","uri":"/a"},"response":{"status":200}}"#;
        let envoy =
            r#"[2016-04-15T20:17:00.310Z] "GET / HTTP/2" 200 - 0 1 2 - "-" "-" "-" "h" "-""#;

        // One pretty-printed JSON array spanning lines.
        let pretty = format!("[\n  {vector},\n  {fluent}\n]\n");
        assert_eq!(
            sample_units(pretty.as_bytes(), 10),
            vec![line.clone().into_bytes(); 2]
        );
        // NDJSON of envelopes, with blank lines.
        let nd = format!("\n{vector}\n\n{fluent}\n");
        assert_eq!(
            sample_units(nd.as_bytes(), 10),
            vec![line.clone().into_bytes(); 2]
        );
        // One array per line (batches), cut at `max`.
        let batches = format!("[{vector},{vector}]\n[{fluent},{fluent}]\n");
        assert_eq!(sample_units(batches.as_bytes(), 3).len(), 3);
        // Records with request fields of their own are kept whole, even with a "message" field.
        let recs = format!("{ndjson_rec}\n{kong}\n");
        assert_eq!(
            sample_units(recs.as_bytes(), 10),
            vec![ndjson_rec.as_bytes().to_vec(), kong.as_bytes().to_vec()]
        );
        // A bracketed envoy timestamp is not a JSON array.
        assert_eq!(
            sample_units(envoy.as_bytes(), 10),
            vec![envoy.as_bytes().to_vec()]
        );
        assert!(sample_units(b" \n\n\t\n", 10).is_empty());
    }

    #[test]
    fn auto_detection_sees_through_envelopes() {
        let enrich = Arc::new(Enrichment::default());
        let auto = FormatChoice::default();
        let lines: Vec<String> = (0..5).map(combined).collect();
        let vector_array = serde_json::to_string(
            &lines
                .iter()
                .map(|l| serde_json::json!({"message": l, "host": "edge"}))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let fluent_ndjson: String = lines
            .iter()
            .map(|l| serde_json::json!({"date": 1.7e9, "log": l}).to_string() + "\n")
            .collect();
        for body in [
            vector_array.as_str(),
            fluent_ndjson.as_str(),
            &lines.join("\n"),
        ] {
            let p = Pipeline::resolve(&auto, body.as_bytes(), enrich.clone()).unwrap();
            assert_eq!(p.format(), "nginx", "{body}");
            assert_eq!(
                p.detection(),
                Some("format combined (nginx/apache): every sampled line (5) matches combined (nginx/apache)")
            );
            let b = batch_from_body(&p, body.as_bytes(), "edge", None);
            assert_eq!(
                (b.counts.read, b.counts.accepted, b.counts.rejected),
                (5, 5, 0),
                "{body}"
            );
        }

        let ndjson = r#"{"ts":"2015-05-17T10:05:03Z","path":"/a","status":200}"#;
        let p = Pipeline::resolve(&auto, ndjson.as_bytes(), enrich.clone()).unwrap();
        assert_eq!(p.format(), "ndjson");

        assert!(matches!(
            Pipeline::resolve(&auto, b"  \n", enrich.clone()),
            Err(IngestError::EmptyInput)
        ));
        assert!(matches!(
            Pipeline::resolve(&auto, b"[]", enrich.clone()),
            Err(IngestError::EmptyInput)
        ));
        let err = Pipeline::resolve(&auto, b"hello world\n", enrich.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot detect the log format: no known format matches the sampled lines (1 match no known format, first: \"hello world\"); name the format explicitly (--format, or ?format= / X-Sluice-Format over HTTP); the formats are nginx, apache, envoy, envoy-json, kong and ndjson"
        );
    }

    #[test]
    fn pretty_printed_array_body_is_one_unit() {
        let p = nginx();
        let body = format!(
            "[\n  {{\"message\": {:?}}},\n  {{\"log\": \"garbage\"}}\n]\n",
            combined(1)
        );
        let b = batch_from_body(&p, body.as_bytes(), "edge", Some("k".into()));
        assert_eq!(
            (b.counts.read, b.counts.accepted, b.counts.rejected),
            (2, 1, 1)
        );
        assert_eq!(b.idempotency_key.as_deref(), Some("k"));
        assert_eq!(b.format, "nginx");
    }

    #[test]
    fn overlong_lines_are_rejected_and_the_next_line_parsed() {
        let p = nginx();
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        let data = format!("{}\n{long}\n{}\n", combined(1), combined(2));
        let mut b = BatchBuilder::new("test");
        p.add_lines(&mut b, data.as_bytes(), 1);
        let b = b.finish(None, "nginx");
        assert_eq!(
            (b.counts.read, b.counts.accepted, b.counts.rejected),
            (3, 2, 1)
        );
        assert_eq!(rejects(&b), vec![(2, "line longer than 1048576 bytes")]);
        assert_eq!(b.rejects[0].raw.len(), 8192);
    }

    /// A log file being written line by line, with the rejects it should cause.
    #[derive(Default)]
    struct LogFile {
        data: Vec<u8>,
        lines: u64,
        non_blank: u64,
        /// Line number and reason; an empty reason means "rejected by the parser".
        rejects: Vec<(u64, String)>,
        good: usize,
    }

    impl LogFile {
        fn push(&mut self, line: &[u8], reject: Option<&str>) {
            self.lines += 1;
            self.data.extend_from_slice(line);
            self.data.push(b'\n');
            if !trim(line).is_empty() {
                self.non_blank += 1;
            }
            if let Some(r) = reject {
                self.rejects.push((self.lines, r.to_owned()));
            }
        }

        /// Lines up to about `until` bytes: a bad line every 997 and a blank one every 101.
        fn fill(&mut self, until: usize) {
            while self.data.len() + 200 < until {
                self.good += 1;
                let i = self.good;
                if i.is_multiple_of(997) {
                    self.push(b"this is not an access log line", Some(""));
                } else if i.is_multiple_of(101) {
                    self.push(b"", None);
                } else {
                    self.push(combined(i).as_bytes(), None);
                }
            }
        }
    }

    /// A file of several read chunks, with bad lines, blank lines and overlong lines placed on
    /// and around the 4 MiB read boundaries, cut into small batches.
    #[test]
    fn files_across_read_chunks_and_batches_keep_every_line() {
        const MIB: usize = 1 << 20;
        let long = format!("line longer than {MAX_LINE_BYTES} bytes");
        let mut f = LogFile::default();
        // Starts 200 KB before the first read boundary, ends after it: whole in the buffer.
        f.fill(READ_CHUNK - 200_000);
        f.push(&vec![b'a'; MAX_LINE_BYTES + 10], Some(&long));
        // Starts 1.5 MiB before the second boundary: rejected while still incomplete, skipped.
        f.fill(2 * READ_CHUNK - 3 * MIB / 2);
        f.push(&vec![b'b'; 3 * MIB], Some(&long));
        // Wholly inside the third read.
        f.fill(2 * READ_CHUNK + 2 * MIB);
        f.push(&vec![b'c'; MAX_LINE_BYTES + 1], Some(&long));
        // Starts 2 MiB before the fourth boundary and spans the whole fifth read.
        f.fill(4 * READ_CHUNK - 2 * MIB);
        f.push(&vec![b'd'; 7 * MIB], Some(&long));
        // Exactly the longest line kept whole: parsed (and rejected by the parser, not for length).
        f.push(&vec![b'e'; MAX_LINE_BYTES], Some(""));
        f.fill(6 * READ_CHUNK + 12_345);
        // A last bad line without a newline.
        f.data.extend_from_slice(b"trailing garbage");
        f.lines += 1;
        f.non_blank += 1;
        f.rejects.push((f.lines, String::new()));
        let LogFile {
            data,
            non_blank,
            rejects: expect_rejects,
            ..
        } = f;

        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("access.log");
        std::fs::write(&plain, &data).unwrap();
        let gz = dir.path().join("access.log.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();

        for path in [plain, gz] {
            let cfg = StreamConfig {
                batch_lines: 7_919,
                ..StreamConfig::default()
            };
            let (produced, format) = produce_all(InputSource::File(path.clone()), cfg);
            assert_eq!(format, "nginx");
            let mut total = IngestCounts::default();
            let mut next_start = 0;
            let mut got_rejects = Vec::new();
            for p in &produced {
                let c = p.batch.counts;
                assert_eq!(c.read, c.accepted + c.rejected);
                assert!(c.read <= 7_919);
                let (start, end) = key_range(&p.batch);
                assert_eq!(start, next_start, "batches cover the input without gaps");
                assert_eq!(p.bytes_read, end);
                next_start = end;
                total.add(c);
                got_rejects.extend(
                    p.batch
                        .rejects
                        .iter()
                        .map(|r| (r.line_no, r.reason.clone())),
                );
            }
            assert_eq!(next_start, data.len() as u64, "{}", path.display());
            assert!(produced.len() > 5);
            assert_eq!(total.read, non_blank);
            assert_eq!(total.rejected, expect_rejects.len() as u64);
            assert_eq!(
                got_rejects.iter().map(|r| r.0).collect::<Vec<_>>(),
                expect_rejects.iter().map(|r| r.0).collect::<Vec<_>>()
            );
            for ((_, got), (no, want)) in got_rejects.iter().zip(&expect_rejects) {
                if want.is_empty() {
                    assert_ne!(got, &long, "line {no}");
                } else {
                    assert_eq!(got, want, "line {no}");
                }
            }
        }
    }
}
