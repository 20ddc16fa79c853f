//! The engine in a browser Web Worker.
//!
//! When the server cannot answer (overloaded, model not loaded, Space asleep) the chat page
//! starts this worker and generates in the visitor's browser with the same `engine` crate the
//! server uses. The worker and the page talk through the messages below, as JSON text; the
//! generation loop itself lives in `engine`, never here.

use engine::{ChatMessage, Completion, GenerateParams, ModelInfo};
use serde::{Deserialize, Serialize};

/// The largest model a browser is asked to hold: wasm32 addresses 4 GiB, and loading keeps the
/// file and the weights in memory at once.
pub const MAX_MODEL_BYTES: u64 = 1536 << 20;

/// What the page asks of the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerRequest {
    /// Loads the model at `url` (from the browser's cache when it is there), checking its size
    /// first and its sha256 after. `requantize` rewrites slow quantisations as Q8_0 (see
    /// `engine::LoadOptions`): about three times faster here, but no longer the server's
    /// numbers to the last bit.
    Load {
        url: String,
        sha256: String,
        bytes: u64,
        #[serde(default)]
        requantize: bool,
    },
    Generate {
        messages: Vec<ChatMessage>,
        params: GenerateParams,
    },
    /// Ends the current answer after the token being decoded.
    Stop,
}

/// What the worker reports back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The worker is listening (messages sent before this are lost).
    Started,
    Progress {
        done: u64,
        total: u64,
        from_cache: bool,
    },
    Ready {
        info: ModelInfo,
        from_cache: bool,
        load_seconds: f64,
    },
    Delta {
        text: String,
    },
    Done {
        completion: Completion,
    },
    Failed {
        message: String,
    },
}

/// The plain-words refusal for a model too large for a browser, before anything is downloaded.
pub fn too_large(bytes: u64) -> Option<String> {
    (bytes > MAX_MODEL_BYTES).then(|| {
        format!(
            "the browser model is {} MB; a browser can hold at most {} MB. Choose a smaller model or quantisation in space.toml [browser] model",
            bytes >> 20,
            MAX_MODEL_BYTES >> 20
        )
    })
}

#[cfg(target_arch = "wasm32")]
mod browser;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let request = WorkerRequest::Load {
            url: "/models/m.gguf".into(),
            sha256: "ab".into(),
            bytes: 7,
            requantize: false,
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            json,
            r#"{"type":"load","url":"/models/m.gguf","sha256":"ab","bytes":7,"requantize":false}"#
        );
        assert_eq!(
            serde_json::from_str::<WorkerRequest>(&json).unwrap(),
            request
        );
        let event: WorkerEvent =
            serde_json::from_str(r#"{"type":"delta","text":"¡Hola"}"#).unwrap();
        assert_eq!(
            event,
            WorkerEvent::Delta {
                text: "¡Hola".into()
            }
        );
    }

    /// The text the chat page sends (app's `conversation::worker_request`, whose test pins it).
    #[test]
    fn the_pages_generate_request_is_understood_with_engine_defaults() {
        let page = r#"{"messages":[{"content":"Hola","role":"user"}],"params":{"max_tokens":24,"sampling":{"seed":42,"temperature":0.0,"top_p":1.0}},"type":"generate"}"#;
        let WorkerRequest::Generate { messages, params } = serde_json::from_str(page).unwrap()
        else {
            panic!("not a generate request")
        };
        assert_eq!(
            messages,
            [engine::ChatMessage::new(engine::Role::User, "Hola")]
        );
        assert_eq!(
            (
                params.max_tokens,
                params.sampling.temperature,
                params.sampling.seed
            ),
            (24, 0.0, 42)
        );
        // What the server's API does with the same request.
        let defaults = engine::SamplingParams::default();
        assert_eq!(
            params.sampling.repetition_penalty,
            defaults.repetition_penalty
        );
    }

    #[test]
    fn models_too_large_for_a_browser_are_refused_by_size() {
        assert!(too_large(100 << 20).is_none());
        let message = too_large(4 << 30).unwrap();
        assert!(
            message.contains("4096 MB") && message.contains("[browser] model"),
            "{message}"
        );
    }
}
