//! What the running server knows and the pages show: its models (the judges' page) and stored
//! answers (permalinks). The pages only describe it; the `server` crate provides it through
//! [`ServerFacts`] in the Leptos context.

use serde::{Deserialize, Serialize};

/// Which of the Space's models a [`ModelFacts`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    /// The team's model, answering on the server.
    Server,
    /// `[compare]`'s base model, answering beside it on the judges' page.
    Compare,
    /// The small model visitors' browsers run when the server cannot answer.
    Browser,
}

/// One model as its file describes it and as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFacts {
    pub role: ModelRole,
    pub name: String,
    /// `ready`, or why not: still loading, failed (with the reason), remote.
    pub status: String,
    pub ready: bool,
    pub architecture: Option<String>,
    pub parameters: Option<u64>,
    pub quantization: Option<String>,
    /// Tensor storage types and how many tensors use each.
    pub tensor_types: Vec<(String, usize)>,
    pub context_length: Option<usize>,
    pub file_bytes: Option<u64>,
    pub sha256: Option<String>,
    /// `candle`, or `remote` for `[server] backend = "remote"`.
    pub backend: String,
    /// `cpu`, `cuda`, `wasm`.
    pub device: String,
    /// Mean decoding speed of the answers given since the server started.
    pub decode_tokens_per_second: Option<f64>,
    /// Tokens per second of every answer together while the model was busy: what a crowd
    /// gets from the batch.
    pub aggregate_tokens_per_second: Option<f64>,
    pub answers: u64,
}

impl ModelFacts {
    /// A model known only by its name so far; the rest is filled in as it loads and answers.
    pub fn named(role: ModelRole, name: String, device: &str) -> Self {
        Self {
            role,
            name,
            status: String::new(),
            ready: false,
            architecture: None,
            parameters: None,
            quantization: None,
            tensor_types: Vec::new(),
            context_length: None,
            file_bytes: None,
            sha256: None,
            backend: "candle".into(),
            device: device.into(),
            decode_tokens_per_second: None,
            aggregate_tokens_per_second: None,
            answers: 0,
        }
    }
}

/// A card the server fetched from the Hub because `[cards]` does not give it.
#[cfg(feature = "ssr")]
#[derive(Clone, Debug, PartialEq)]
pub enum FetchedCard {
    Fetched {
        repo: String,
        path: std::path::PathBuf,
    },
    Failed {
        repo: String,
        reason: String,
    },
}

/// Where the server keeps visitors' feedback and the key of its receipts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageFacts {
    pub dir: String,
    /// Whether it outlives a restart (see the server's `feedback::DataDir`).
    pub persistent: bool,
}

/// The server's side of the pages, provided as `Arc<dyn ServerFacts>` in the context.
#[cfg(feature = "ssr")]
pub trait ServerFacts: Send + Sync {
    fn models(&self) -> Vec<ModelFacts>;
    /// The model's or dataset's card fetched from the Hub; `None` when none was (yet).
    fn fetched_card(&self, kind: crate::cards::CardKind) -> Option<FetchedCard>;
    /// Where feedback is kept, and whether its database opened (`Err` says why not).
    fn storage(&self) -> (StorageFacts, Result<(), String>);
}

/// A permalink's stored answer, read by the server before the page renders (SQLite waits for
/// the disk, which a render must not do on the async threads): left in the request's
/// extensions, `Err` saying why the store cannot be read.
#[cfg(feature = "ssr")]
#[derive(Clone, Debug)]
pub struct StoredAnswerRead(pub Result<Option<wire::feedback::StoredAnswer>, String>);
