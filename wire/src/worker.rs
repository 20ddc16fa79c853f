//! The chat page ↔ browser worker messages, sent as JSON text through `postMessage`.

use serde::{Deserialize, Serialize};

use crate::chat::ChatMessage;
use crate::generation::{Completion, GenerateParams, ModelInfo};

/// The headers that make a page cross-origin isolated, and so give the worker memory shared
/// between threads: sent by the server on every response and by the Hub (README.md's
/// `custom_headers`, checked against these). The page loads nothing from other origins, so
/// `require-corp` blocks nothing; CORP lets other isolated pages embed the Space's files.
pub const ISOLATION_HEADERS: [(&str, &str); 3] = [
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-embedder-policy", "require-corp"),
    ("cross-origin-resource-policy", "cross-origin"),
];

/// What the page asks of the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerRequest {
    /// Loads the model at `url` (from the browser's cache when it is there), checking its size
    /// first and its sha256 after. `requantize` rewrites slow quantisations as Q8_0 (see
    /// `engine::LoadOptions`): about three times faster there, but no longer the server's
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
    /// The worker is listening (messages sent before this are lost), deciding on `threads`
    /// threads; `limit` says why fewer than the visitor's setting.
    Started {
        threads: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<ThreadLimit>,
    },
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

/// Why the browser model runs on fewer threads than the visitor asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ThreadLimit {
    /// The page was not served cross-origin isolated (COOP/COEP headers), so the browser
    /// shares no memory between workers: one thread.
    NotIsolated,
    /// The threads' bundle or its workers failed to start; `message` is the browser's.
    StartFailed { message: String },
}

impl WorkerRequest {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("worker requests are plain data")
    }
}

impl WorkerEvent {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("worker events are plain data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Role;
    use crate::generation::{FinishReason, SamplingParams, Timings, Usage};

    #[test]
    fn every_message_round_trips() {
        let requests = [
            WorkerRequest::Load {
                url: "/models/m.gguf".into(),
                sha256: "ab".into(),
                bytes: 7,
                requantize: true,
            },
            WorkerRequest::Generate {
                messages: vec![ChatMessage::new(Role::User, "¿Qué tal?")],
                params: GenerateParams {
                    sampling: SamplingParams::greedy(),
                    max_tokens: 24,
                    ..GenerateParams::default()
                },
            },
            WorkerRequest::Stop,
        ];
        for request in requests {
            let back: WorkerRequest = serde_json::from_str(&request.to_json()).unwrap();
            assert_eq!(back, request);
        }
        let events = [
            WorkerEvent::Started {
                threads: 1,
                limit: Some(ThreadLimit::NotIsolated),
            },
            WorkerEvent::Started {
                threads: 2,
                limit: Some(ThreadLimit::StartFailed {
                    message: "no workers".into(),
                }),
            },
            WorkerEvent::Started {
                threads: 4,
                limit: None,
            },
            WorkerEvent::Progress {
                done: 5,
                total: 10,
                from_cache: true,
            },
            WorkerEvent::Ready {
                info: ModelInfo {
                    architecture: "llama".into(),
                    quantization: "Q4_1".into(),
                    parameters: 135,
                    tensor_types: vec![("Q4_1".into(), 3)],
                    context_length: 8192,
                },
                from_cache: false,
                load_seconds: 1.5,
            },
            WorkerEvent::Delta {
                text: "¡Hola".into(),
            },
            WorkerEvent::Done {
                completion: Completion {
                    text: "¡Hola!".into(),
                    finish_reason: FinishReason::Length,
                    usage: Usage {
                        prompt_tokens: 3,
                        completion_tokens: 7,
                        cached_tokens: 2,
                    },
                    timings: Timings {
                        prefill_ms: 1.0,
                        prefill_tokens_per_second: 2.0,
                        decode_tokens_per_second: 9.5,
                    },
                },
            },
            WorkerEvent::Failed {
                message: "too large".into(),
            },
        ];
        for event in events {
            let back: WorkerEvent = serde_json::from_str(&event.to_json()).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn messages_are_tagged_by_type() {
        assert_eq!(WorkerRequest::Stop.to_json(), r#"{"type":"stop"}"#);
        let page = r#"{"type":"generate","messages":[{"role":"user","content":"Hola"}],"params":{"max_tokens":24,"sampling":{"seed":42,"temperature":0.0}}}"#;
        let WorkerRequest::Generate { params, .. } = serde_json::from_str(page).unwrap() else {
            panic!("not a generate request")
        };
        // Unset fields take the engine's defaults, as the server's API does.
        assert_eq!(
            (
                params.max_tokens,
                params.sampling.seed,
                params.sampling.top_k
            ),
            (24, 42, SamplingParams::default().top_k)
        );
    }
}
