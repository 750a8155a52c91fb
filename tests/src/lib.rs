//! Black-box tests that start the real sluice server.
