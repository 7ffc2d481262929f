//! Typed errors, and how a failed `tofu` command becomes [`ProviderError::Retryable`] or
//! [`ProviderError::Permanent`].
//!
//! The verdict on a failed command is read from its output ([`classify`]), first match
//! wins:
//!
//! | output | verdict |
//! | --- | --- |
//! | `Saved plan is stale` | retryable (the next attempt plans again) |
//! | `Error acquiring the state lock` | retryable (another operation holds the lock) |
//! | an AWS error code of [`gosling_providers::errors::AWS_PERMANENT_CODES`] (permission, invalid parameter, quota) | permanent |
//! | an AWS error code of [`gosling_providers::errors::AWS_RETRYABLE_CODES`] (throttling, capacity, 5xx) | retryable |
//! | a Yandex Cloud gRPC status `code = …` | as [`gosling_providers::errors::yandex_is_retryable`]: Unavailable, DeadlineExceeded, Aborted, Internal, Unknown, Canceled and rate limits retryable; quotas, InvalidArgument, PermissionDenied, NotFound, … permanent |
//! | network trouble: connection reset/refused, timeouts, `no such host`, HTTP 429/5xx, the registry unreachable (`Failed to query available provider packages`, `could not connect`) | retryable |
//! | anything else (configuration errors such as `Unsupported argument`, `Invalid value`, missing credentials) | permanent |
//!
//! Besides: a command stopped for its time limit is retryable; the `tofu` binary missing,
//! a configuration that cannot be rendered, a stored plan that is missing or corrupt are
//! permanent; the state store's transport failures and write conflicts are retryable.

use crate::render::RenderError;
use gosling_fleet::ProviderError;
use gosling_state::StateError;
use std::path::PathBuf;

/// Why an OpenTofu operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TofuError {
    /// The configuration could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The state store or the object store failed.
    #[error("state: {0}")]
    State(#[from] StateError),
    /// A file of the workspace or the cache could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `tofu` executable could not be started.
    #[error("cannot run `{binary}`: {source}")]
    Spawn {
        /// The executable.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A command ran past its time limit and was stopped.
    #[error("`tofu {command}` did not finish within {seconds} s and was stopped")]
    Timeout {
        /// The subcommand.
        command: String,
        /// The limit.
        seconds: u64,
    },
    /// A command failed.
    #[error("`tofu {command}` failed (exit status {code}): {output}")]
    Failed {
        /// The subcommand.
        command: String,
        /// Its exit status (-1: killed by a signal).
        code: i32,
        /// The end of its output (bounded, secrets removed).
        output: String,
        /// What the output says about retrying.
        verdict: Verdict,
    },
    /// No stored plan has this id.
    #[error("no stored plan `{0}`")]
    NoSuchPlan(String),
    /// A stored plan cannot be used.
    #[error("stored plan `{id}`: {reason}")]
    BadPlan {
        /// The plan.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// `tofu` printed something other than what was expected (JSON).
    #[error("unexpected output from `tofu {command}`: {message}")]
    Output {
        /// The subcommand.
        command: String,
        /// What is wrong.
        message: String,
    },
    /// The runner's configuration is missing (nothing was ever created for it here).
    #[error("no OpenTofu configuration is stored for runner `{0}`")]
    NoConfiguration(String),
}

/// What a failed command's output says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// May succeed later; the reason, for messages and tests.
    Retryable(&'static str),
    /// Will fail again as asked.
    Permanent(&'static str),
}

impl Verdict {
    /// Whether trying again may help.
    pub fn is_retryable(self) -> bool {
        matches!(self, Verdict::Retryable(_))
    }
}

impl TofuError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> TofuError {
        TofuError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether trying again may help (see the module documentation).
    pub fn is_retryable(&self) -> bool {
        match self {
            TofuError::Failed { verdict, .. } => verdict.is_retryable(),
            TofuError::Timeout { .. } | TofuError::Io { .. } => true,
            TofuError::State(e) => matches!(
                e,
                StateError::Conflict { .. }
                    | StateError::Remote { .. }
                    | StateError::Io { .. }
                    | StateError::Sqlite { .. }
            ),
            TofuError::Render(_)
            | TofuError::Spawn { .. }
            | TofuError::NoSuchPlan(_)
            | TofuError::BadPlan { .. }
            | TofuError::Output { .. }
            | TofuError::NoConfiguration(_) => false,
        }
    }

    /// Whether the output names a spot capacity failure (the on-demand fallback's cue).
    pub fn is_spot_capacity(&self) -> bool {
        match self {
            TofuError::Failed { output, .. } => gosling_providers::errors::SPOT_FALLBACK_CODES
                .iter()
                .any(|c| contains_word(output, c)),
            _ => false,
        }
    }

    /// Whether a stored plan was refused because the state changed since it was made.
    pub fn is_stale_plan(&self) -> bool {
        matches!(self, TofuError::Failed { output, .. } if output.contains("Saved plan is stale"))
    }

    /// The error as the provider interface reports it.
    pub fn to_provider_error(&self, provider: &str) -> ProviderError {
        if self.is_retryable() {
            ProviderError::retryable(provider, self.to_string())
        } else {
            ProviderError::permanent(provider, self.to_string())
        }
    }
}

/// `word` in `text`, not as part of a longer identifier.
fn contains_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Yandex Cloud gRPC status names, as the provider prints them (`code = Unavailable`).
const GRPC_NAMES: &[(&str, i64)] = &[
    ("Canceled", 1),
    ("Unknown", 2),
    ("InvalidArgument", 3),
    ("DeadlineExceeded", 4),
    ("NotFound", 5),
    ("AlreadyExists", 6),
    ("PermissionDenied", 7),
    ("ResourceExhausted", 8),
    ("FailedPrecondition", 9),
    ("Aborted", 10),
    ("OutOfRange", 11),
    ("Unimplemented", 12),
    ("Internal", 13),
    ("Unavailable", 14),
    ("DataLoss", 15),
    ("Unauthenticated", 16),
];

const NETWORK: &[&str] = &[
    "connection reset by peer",
    "connection refused",
    "i/o timeout",
    "TLS handshake timeout",
    "context deadline exceeded",
    "Client.Timeout exceeded",
    "no such host",
    "timeout while waiting",
    "Failed to query available provider packages",
    "could not connect to",
    "429 Too Many Requests",
    "500 Internal Server Error",
    "502 Bad Gateway",
    "503 Service Unavailable",
    "504 Gateway Timeout",
    "unexpected EOF",
];

/// The verdict on a failed command's output (see the module documentation).
pub fn classify(output: &str) -> Verdict {
    use gosling_providers::errors::{
        yandex_is_retryable, AWS_PERMANENT_CODES, AWS_RETRYABLE_CODES,
    };
    if output.contains("Saved plan is stale") {
        return Verdict::Retryable("stale plan");
    }
    if output.contains("Error acquiring the state lock") {
        return Verdict::Retryable("state locked");
    }
    if AWS_PERMANENT_CODES.iter().any(|c| contains_word(output, c)) {
        return Verdict::Permanent("AWS error code");
    }
    if AWS_RETRYABLE_CODES.iter().any(|c| contains_word(output, c)) {
        return Verdict::Retryable("AWS error code");
    }
    for line in output.lines() {
        let Some(at) = line.find("code = ") else {
            continue;
        };
        let rest = &line[at + "code = ".len()..];
        let name = rest
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("");
        if let Some((_, code)) = GRPC_NAMES.iter().find(|(n, _)| *n == name) {
            return if yandex_is_retryable(*code, line) {
                Verdict::Retryable("Yandex Cloud status")
            } else {
                Verdict::Permanent("Yandex Cloud status")
            };
        }
    }
    if NETWORK.iter().any(|n| output.contains(n)) {
        return Verdict::Retryable("network");
    }
    Verdict::Permanent("configuration or unknown error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_the_documented_table() {
        let r = |s: &str| classify(s).is_retryable();
        assert!(r("Error: Saved plan is stale"));
        assert!(r(
            "Error: Error acquiring the state lock\n\nConditionalCheckFailedException"
        ));
        assert!(r(
            "api error InsufficientInstanceCapacity: We currently do not have sufficient capacity"
        ));
        assert!(r("operation error EC2: RunInstances, https response error StatusCode: 503, RequestID: x, api error RequestLimitExceeded: Request limit exceeded."));
        assert!(!r(
            "api error UnauthorizedOperation: You are not authorized"
        ));
        assert!(!r(
            "api error InvalidAMIID.NotFound: The image id '[ami-1]' does not exist"
        ));
        assert!(!r(
            "api error VcpuLimitExceeded: You have requested more vCPU capacity"
        ));
        assert!(r("rpc error: code = Unavailable desc = connection error"));
        assert!(r(
            "rpc error: code = ResourceExhausted desc = Too many requests"
        ));
        assert!(!r("rpc error: code = ResourceExhausted desc = Quota limit vpc.externalAddresses.count exceeded"));
        assert!(!r(
            "rpc error: code = PermissionDenied desc = Permission denied"
        ));
        assert!(!r(
            "rpc error: code = InvalidArgument desc = Illegal argument"
        ));
        assert!(r("Error: Failed to query available provider packages\n\ncould not connect to registry.opentofu.org"));
        assert!(r("dial tcp: lookup storage.yandexcloud.net: no such host"));
        assert!(!r(
            "Error: Unsupported argument\n\nAn argument named \"foo\" is not expected here."
        ));
        assert!(!r("Error: No valid credential sources found"));
        // A code inside a longer identifier does not count.
        assert!(!r("Error: SomethingThrottlingLike happened"));
    }

    #[test]
    fn spot_capacity_is_recognised() {
        let e = TofuError::Failed {
            command: "apply".into(),
            code: 1,
            output: "api error InsufficientInstanceCapacity: no capacity".into(),
            verdict: classify("InsufficientInstanceCapacity"),
        };
        assert!(e.is_spot_capacity());
        assert!(e.to_provider_error("tofu").is_retryable());
    }
}
