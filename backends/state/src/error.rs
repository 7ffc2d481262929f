//! The state layer's errors.

use crate::Table;

/// Why a state or object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A conditional write found another version than expected: someone else wrote first.
    /// Nothing of the operation was written; read again and retry.
    #[error("conflicting write to {table} `{key}`: it was changed by someone else (read it again and retry)")]
    Conflict {
        /// The table.
        table: Table,
        /// The item's key.
        key: String,
    },
    /// The store URL is not understood.
    #[error("invalid store URL `{url}`: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The adapter the URL names is not part of this build.
    #[error("{0}")]
    NotBuiltIn(String),
    /// The store was opened read-only (e.g. for `gosling deploy --dry-run`).
    #[error("the store is open read-only; nothing may be written")]
    ReadOnly,
    /// A stored item does not have the expected shape.
    #[error("corrupt item in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: Table,
        /// What is wrong.
        reason: String,
    },
    /// The embedded SQLite store failed.
    #[error("embedded store `{path}`: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// Why.
        source: rusqlite::Error,
    },
    /// A local file could not be read or written.
    #[error("`{path}`: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A remote store (DynamoDB, YDB, S3) failed after retries.
    #[error("{service} {operation} failed: {message}")]
    Remote {
        /// `DynamoDB`, `YDB` or `S3`.
        service: &'static str,
        /// The API operation (`TransactWriteItems`, `PutObject`, …) and its target.
        operation: String,
        /// The error, with the service's code and message.
        message: String,
    },
    /// An object key that could escape its store or is otherwise unusable.
    #[error(
        "invalid object key `{0}`: use letters, digits and `._-/`, no `..` and no leading `/`"
    )]
    BadObjectKey(String),
    /// Encryption or decryption of a secret failed.
    #[error("{0}")]
    Crypto(String),
    /// The operation's input is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl StateError {
    /// Whether the store could not be reached or used for now (a lock, a full disk, a
    /// remote service down): the same request may well succeed later, however long that
    /// takes. Conflicts and bad input are not outages.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            StateError::Sqlite { .. } | StateError::Io { .. } | StateError::Remote { .. }
        )
    }
}

/// Short for `Result<T, StateError>`.
pub type Result<T, E = StateError> = std::result::Result<T, E>;
