//! Vitrina's inference engine.
//!
//! One crate, with no server or browser dependencies, so that the axum server (native, CPU or
//! CUDA) and the visitor's browser (wasm32 in a Web Worker) run the very same generation code.
//! Today it holds the conversation types both sides exchange; GGUF loading, tokenisation, chat
//! templates and sampling arrive on top of them.

pub mod chat;

pub use chat::{ChatMessage, Role};
