//! Black-box tests of the real `sluice` binary: `ingest`, `replay`, `rejects`, `token`, `serve`
//! and `db`, run as processes against a fresh test database each (`TestDb`: `DATABASE_URL`, or a
//! throwaway
//! embedded cluster) and checked through their output and through SQL.
//!
//! The sources live at the top of the repository (`tests/blackbox`) and are the `blackbox` test
//! target of the `sluice` package, so cargo builds the binary they run (`CARGO_BIN_EXE_sluice`)
//! with the features of this build. `SLUICE_BIN=/path/to/sluice` runs another binary.

mod cli;
mod policy;
mod replay;
mod review;
mod serve;
mod support;
