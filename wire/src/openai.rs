//! `/v1/chat/completions` and `/v1/models` as OpenAI writes them, so that OpenAI's own clients
//! (and LangChain's) work unchanged, plus Vitrina's additions, which those clients read past:
//! a chunk's `queue` (the place in line while waiting) and the last chunk's `timings`.
//!
//! Everything a reader may meet from another server (the remote backend reads TGI, vLLM or
//! llama-server) is optional on the way in.

use serde::{Deserialize, Serialize};

use crate::chat::{ChatMessage, Role};
use crate::generation;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// Vitrina answers with the Space's model whatever is named, except `"compare"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Keep going past end-of-turn tokens until `max_tokens` (llama.cpp's and vLLM's extension:
    /// benchmarks ask every server for answers of the same length).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_eos: bool,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Every other field the client sent: the server answers each one it does not honour with
    /// an error naming it rather than quietly ignoring it (`n: 2` must not get one choice).
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// OpenAI takes one stop text or a list of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(stop) => vec![stop],
            Self::Many(stops) => stops,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask for a last chunk with the token counts.
    #[serde(default)]
    pub include_usage: bool,
}

/// Why an answer ended, in OpenAI's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    /// What other servers may say (`content_filter`, `tool_calls`…).
    #[serde(other)]
    Other,
}

impl From<generation::FinishReason> for FinishReason {
    fn from(reason: generation::FinishReason) -> Self {
        match reason {
            generation::FinishReason::Stop | generation::FinishReason::Cancelled => Self::Stop,
            generation::FinishReason::Length => Self::Length,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: usize,
    #[serde(default)]
    pub completion_tokens: usize,
    #[serde(default)]
    pub total_tokens: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// OpenAI's breakdown of the prompt's tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose keys and values were kept from an earlier request.
    #[serde(default)]
    pub cached_tokens: usize,
}

impl Usage {
    pub fn cached_tokens(&self) -> usize {
        self.prompt_tokens_details
            .map_or(0, |details| details.cached_tokens)
    }
}

impl From<generation::Usage> for Usage {
    fn from(usage: generation::Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens + usage.completion_tokens,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: usage.cached_tokens,
            }),
        }
    }
}

/// The whole answer of a request without `stream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    /// Vitrina's: the server's signature of the answer, which feedback on it must carry
    /// (see `wire::feedback::AnswerClaim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: AnswerMessage,
    pub finish_reason: Option<FinishReason>,
}

/// The assistant's message of a whole answer: a reasoning model's thinking apart from its
/// answer, as llama-server gives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerMessage {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl ChatCompletion {
    pub fn new(id: &str, created: u64, model: &str, completion: &generation::Completion) -> Self {
        Self {
            id: id.to_owned(),
            object: "chat.completion".into(),
            created,
            model: model.to_owned(),
            choices: vec![Choice {
                index: 0,
                message: {
                    let (reasoning_content, content) = crate::reasoning::split(&completion.text);
                    AnswerMessage {
                        role: Role::Assistant,
                        content,
                        reasoning_content,
                    }
                },
                finish_reason: Some(completion.finish_reason.into()),
            }],
            usage: completion.usage.into(),
            receipt: None,
        }
    }
}

/// One server-sent event of a streamed answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Vitrina's: still waiting for a free place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStatus>,
    /// Vitrina's, on the last chunk: how fast it went and where it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<StreamTimings>,
    /// Vitrina's, on the last chunk: see [`ChatCompletion::receipt`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    /// `null` until the last chunk, as OpenAI writes it.
    pub finish_reason: Option<FinishReason>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A reasoning model's thinking, apart from `content` (llama-server's field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// A waiting request's place in line: 1 is next.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub position: u64,
    #[serde(default)]
    pub estimated_wait_seconds: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamTimings {
    pub prefill_ms: f64,
    pub decode_tokens_per_second: f64,
    /// `cpu`, `cuda`, `remote`…
    pub device: String,
    /// The model file's quantisation (`Q4_K_M`…), which the chat names with `model`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub quantization: String,
}

impl ChatCompletionChunk {
    /// A chunk of answer `id` with one choice carrying `delta`.
    pub fn new(id: &str, created: u64, model: &str, delta: Delta) -> Self {
        Self {
            id: id.to_owned(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.to_owned(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: None,
            }],
            ..Self::default()
        }
    }

    /// The first choice's text, when it carries any.
    pub fn text(&self) -> Option<&str> {
        self.choices
            .first()
            .and_then(|choice| choice.delta.content.as_deref())
            .filter(|text| !text.is_empty())
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.choices.first().and_then(|choice| choice.finish_reason)
    }
}

/// How OpenAI writes an error, as a response body or as an event mid-stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `rate_limit_error`, `service_unavailable`, `server_error`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Always `null` here; other servers' values are not read.
    #[serde(skip_deserializing)]
    pub param: Option<String>,
    #[serde(skip_deserializing)]
    pub code: Option<String>,
}

impl ErrorBody {
    pub fn new(message: String, kind: &str) -> Self {
        Self {
            error: ErrorDetail {
                message,
                kind: kind.to_owned(),
                param: None,
                code: None,
            },
        }
    }

    /// The message of an error body, if `text` is one.
    pub fn message_in(text: &str) -> Option<String> {
        serde_json::from_str::<Self>(text)
            .ok()
            .map(|body| body.error.message)
    }
}

/// What one `data:` line of a stream holds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StreamData {
    Error(ErrorBody),
    Chunk(ChatCompletionChunk),
}

/// The end-of-stream marker OpenAI sends as the last `data:`.
pub const DONE: &str = "[DONE]";

/// `GET /v1/models`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub data: Vec<ModelCard>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub owned_by: String,
}

impl ModelList {
    pub fn new(ids: impl IntoIterator<Item = String>) -> Self {
        Self {
            object: "list".into(),
            data: ids
                .into_iter()
                .map(|id| ModelCard {
                    id,
                    object: "model".into(),
                    owned_by: "vitrina".into(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_written_as_openai_writes_them() {
        let chunk = ChatCompletionChunk::new(
            "chatcmpl-1",
            7,
            "m",
            Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                reasoning_content: None,
            },
        );
        assert_eq!(
            serde_json::to_string(&chunk).unwrap(),
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#
        );
    }

    #[test]
    fn other_servers_chunks_and_errors_are_read() {
        let usage_only = r#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#;
        let StreamData::Chunk(chunk) = serde_json::from_str(usage_only).unwrap() else {
            panic!("not a chunk")
        };
        assert_eq!(
            (
                chunk.text(),
                chunk.usage.map(|usage| usage.completion_tokens)
            ),
            (None, Some(5))
        );
        let filtered = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"content_filter"}]}"#;
        let StreamData::Chunk(chunk) = serde_json::from_str(filtered).unwrap() else {
            panic!("not a chunk")
        };
        assert_eq!(chunk.finish_reason(), Some(FinishReason::Other));
        let error = r#"{"error":{"message":"busy","type":"rate_limit_error","code":429}}"#;
        assert_eq!(
            serde_json::from_str::<StreamData>(error).unwrap(),
            StreamData::Error(ErrorBody::new("busy".into(), "rate_limit_error"))
        );
        assert_eq!(ErrorBody::message_in("not json"), None);
    }

    #[test]
    fn a_request_leaves_out_what_it_does_not_set() {
        let request = ChatCompletionRequest {
            messages: vec![ChatMessage::new(Role::User, "Hola")],
            stop: Some(Stop::Many(vec!["\n".into()])),
            ..ChatCompletionRequest::default()
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"messages":[{"role":"user","content":"Hola"}],"stop":["\n"],"stream":false}"#
        );
    }
}
