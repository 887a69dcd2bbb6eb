//! Why a blob stream was stopped: a policy refusal (with the rule that decided it), or bytes that
//! are not the blob. The two are told apart by type, never by the wording of a message.

/// A refusal, as the client will be told: produced by the judge, carried by a [`Veto`] through the
/// stream and by the proxy's error to the one place that renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// One line for people: what was refused and its strongest reasons.
    pub message: String,
    /// A token naming the main reason, safe in a media type and a status line
    /// (`miner.stratum-url`, `override`).
    pub rule: String,
    /// Rule ids and evidence, for the error's `detail`.
    pub detail: serde_json::Value,
}

/// Why a blob was refused mid-stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Veto {
    /// Judged malicious, or denied by policy.
    #[error("{}", .0.message)]
    Blocked(Box<Refusal>),
    /// The bytes are not the blob (wrong digest, wrong size) or the transfer failed: the
    /// upstream's fault, and never grounds for a verdict.
    #[error("{0}")]
    Failed(String),
}

impl Veto {
    pub fn failed(why: impl Into<String>) -> Veto {
        Veto::Failed(why.into())
    }

    pub fn blocked(refusal: Refusal) -> Veto {
        Veto::Blocked(Box::new(refusal))
    }

    /// The refusal, when this veto is a policy block.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Veto::Blocked(r) => Some(r),
            Veto::Failed(_) => None,
        }
    }
}
