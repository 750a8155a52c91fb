//! Black-box tests of the real `sluice` binary: `ingest`, `replay`, `rejects`, `token`, `serve`
//! and `db`, run as processes against a fresh test database each (`TestDb`: `DATABASE_URL`, or a
//! throwaway
//! embedded cluster) and checked through their output and through SQL.
//!
//! Where the binary comes from: `CARGO_BIN_EXE_sluice` exists only for tests inside the `sluice`
//! package, and a dependency on a binary-only package builds nothing on stable Cargo. Rather than
//! scatter black-box tests across the binary's package, this crate stays the one black-box crate
//! and [`support::sluice_bin`] runs `cargo build -p sluice` once per test process, with the cargo,
//! profile and target directory of the running test (cargo releases its build lock before it runs
//! tests, so this is safe, and a no-op when the binary is fresh). The binary therefore always
//! matches the source under test. `SLUICE_BIN=/path/to/sluice` skips the build.

mod cli;
mod policy;
mod replay;
mod serve;
mod support;
