//! The engine in a browser Web Worker.
//!
//! When the server cannot answer (overloaded, model not loaded, Space asleep) the chat page
//! starts this worker and generates in the visitor's browser with the same `engine` crate the
//! server uses. The worker and the page talk through the messages below, structured-cloned as
//! JSON; the generation loop itself lives in `engine`, never here.

use engine::ChatMessage;
use serde::{Deserialize, Serialize};

/// What the page asks of the worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerRequest {
    Generate { messages: Vec<ChatMessage> },
    Cancel,
}

/// What the worker reports back, in order: text deltas, then one `Done` or `Failed`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerEvent {
    Delta { text: String },
    Done,
    Failed { message: String },
}

#[cfg(target_arch = "wasm32")]
mod browser {
    use wasm_bindgen::prelude::*;

    /// The protocol revision, so the page can refuse a stale cached worker bundle.
    #[wasm_bindgen(js_name = protocolVersion)]
    pub fn protocol_version() -> u32 {
        1
    }
}
