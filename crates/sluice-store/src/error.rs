//! The store's error type: database failures become domain errors here, never in handlers.

use crate::embedded::EmbeddedError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now; callers may retry later (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("failed to apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    /// The input is invalid or refers to something that does not fit (HTTP 400).
    #[error("{0}")]
    Conflict(String),
    /// The request is valid but conflicts with the current state, e.g. publishing content the
    /// newest version already has (HTTP 409).
    #[error("{0}")]
    StateConflict(String),
    /// Stored data that fails its own checks (e.g. a policy whose hash does not match).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("invalid database url: {0}")]
    BadUrl(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // Class 08: connection exceptions; 57P0x: shutdown in progress; 53300: too many
                // connections.
                Some(code)
                    if code.starts_with("08")
                        || code == "57P01"
                        || code == "57P02"
                        || code == "57P03"
                        || code == "53300" =>
                {
                    StoreError::Unavailable(e.to_string())
                }
                _ => StoreError::Database(e),
            },
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
