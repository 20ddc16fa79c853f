//! What Vitrina's crates say to each other, as Rust types on both ends.
//!
//! The server writes these types and the chat page, the browser worker and the remote backend
//! read them (and the other way round), so a field renamed on one side is a compile error on
//! the other instead of a silent `null`. Only serde: the crate builds for the browser bundles.
//!
//! - [`chat`]: a conversation's messages, as everyone exchanges them.
//! - [`openai`]: `/v1/chat/completions` and `/v1/models`, OpenAI's wire format with Vitrina's
//!   additions (queue position, timings).
//! - [`generation`]: what the engine is asked (sampling, length, stops) and what it answers.
//! - [`worker`]: the page ↔ browser worker messages.
//! - [`health`]: `/health` and the browser model's description at `/models`.
//! - [`feedback`]: ratings, permalinks and what they store.
//! - [`sse`]: one decoder for server-sent events.
//! - [`limits`]: every bound and default of a request, in one table.
//! - [`pages`]: which hydration bundle each page loads.
//! - `js` (in the browser's bundles only): how an error thrown by JavaScript reads as text,
//!   for the page and the worker.

pub mod chat;
pub mod feedback;
pub mod generation;
pub mod health;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub mod js;
pub mod limits;
pub mod openai;
pub mod pages;
pub mod reasoning;
pub mod sse;
pub mod worker;

pub use chat::{ChatMessage, Role};

/// Where an answer was generated, as `/health`, each answer's timings, the chat and the judges'
/// page name it.
pub mod device {
    pub const CPU: &str = "cpu";
    /// An NVIDIA GPU (a build with `--features cuda`).
    pub const CUDA: &str = "cuda";
    /// The visitor's browser (WebAssembly).
    pub const BROWSER: &str = "wasm";
    /// An OpenAI-compatible server behind this one (`[server] backend = "remote"`).
    pub const REMOTE: &str = "remote";
}
