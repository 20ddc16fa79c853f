//! Visitors' verdicts on answers — 👍/👎, a comment, and the alternatives a regeneration
//! produced — as the chat sends them, the server stores them (SQLite) and the permalink page
//! shows them. Every answer carries how it was made, so that it can be made again.

use serde::{Deserialize, Serialize};

use crate::chat::{ChatMessage, Role};
use crate::generation::GenerateParams;
use crate::openai::ChatCompletionRequest;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    /// Kept without a verdict: an alternative of a rated answer, or a shared permalink.
    #[default]
    None,
    Up,
    Down,
}

impl Rating {
    pub fn as_i64(self) -> i64 {
        match self {
            Self::None => 0,
            Self::Up => 1,
            Self::Down => -1,
        }
    }

    pub fn from_i64(value: i64) -> Self {
        match value {
            1 => Self::Up,
            -1 => Self::Down,
            _ => Self::None,
        }
    }
}

/// Where an answer was generated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerBackend {
    #[default]
    Server,
    Browser,
}

/// How an answer was produced: the model file, its settings and the seed. The browser sends
/// what it chose (backend, sampling, seed); the server fills in the model it describes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub backend: AnswerBackend,
    /// `cpu`, `cuda`, `wasm`…
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub quantization: String,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    pub seed: u64,
}

/// One message of the conversation the model read, in OpenAI's wire form. The role stays text
/// here: rows stored with any role are read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireMessage {
    pub role: String,
    pub content: String,
}

impl From<&ChatMessage> for WireMessage {
    fn from(message: &ChatMessage) -> Self {
        Self {
            role: message.role.as_str().to_owned(),
            content: message.content.clone(),
        }
    }
}

/// One answer as the chat reports it when the visitor rates it or asks for its permalink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerReport {
    /// The browser's own id for this answer: sending it again updates the same row. A secret
    /// of the visitor who made the answer: stored answers are served without it (empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub answer_key: String,
    pub conversation: String,
    /// Shared by every alternative answer to one question.
    pub turn_key: String,
    /// What the model read, system prompt first, ending with the question.
    pub messages: Vec<WireMessage>,
    pub pregunta: String,
    #[serde(default)]
    pub entrada: Option<String>,
    pub respuesta: String,
    #[serde(default)]
    pub rating: Rating,
    #[serde(default)]
    pub comment: Option<String>,
    pub provenance: Provenance,
    /// The server's receipt for a server-made answer (the last chunk's `receipt`): without a
    /// valid one, feedback on a server answer is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// What a receipt vouches for: this answer, to this conversation (as the client sent it),
/// with these settings, by the model file of this sha256 (empty for a remote backend). The
/// server signs it as it answers and checks it when feedback comes, so no one can store as
/// the model's an answer it did not give, nor move a real answer to another question.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnswerClaim<'a> {
    pub messages: &'a [WireMessage],
    pub answer: &'a str,
    pub sha256: &'a str,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    pub seed: u64,
}

impl<'a> AnswerClaim<'a> {
    /// What the server vouches for as it answers `messages` with `answer`.
    pub fn of_answer(
        messages: &'a [WireMessage],
        answer: &'a str,
        sha256: &'a str,
        params: &GenerateParams,
    ) -> Self {
        Self {
            messages,
            answer,
            sha256,
            temperature: params.sampling.temperature,
            top_p: params.sampling.top_p,
            max_tokens: u32::try_from(params.max_tokens).unwrap_or(u32::MAX),
            seed: params.sampling.seed,
        }
    }

    /// What `report` claims of a server answer made with the model file `sha256`.
    pub fn of_report(report: &'a AnswerReport, sha256: &'a str) -> Self {
        let provenance = &report.provenance;
        Self {
            messages: &report.messages,
            answer: &report.respuesta,
            sha256,
            temperature: provenance.temperature,
            top_p: provenance.top_p,
            max_tokens: provenance.max_tokens,
            seed: provenance.seed,
        }
    }

    /// The bytes signed: the claim as JSON, its fields in this order.
    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a claim serialises")
    }
}

/// A question as the model reads it: the visitor's text, then the context they pasted.
pub fn question_content(question: &str, context: Option<&str>) -> String {
    match context {
        Some(context) if !context.trim().is_empty() => format!("{question}\n\n{context}"),
        _ => question.to_owned(),
    }
}

/// What `POST /v1/feedback` answers: the stored answer's id and its permalink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub id: String,
    pub permalink: String,
}

/// An answer as the database keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The digest of the conversation its receipt covers, which the DPO export groups
    /// alternatives by; the server's own, never sent.
    #[serde(skip)]
    pub conversation_sha256: String,
    #[serde(flatten)]
    pub report: AnswerReport,
}

/// Where an answer's permalink points.
pub fn permalink(id: &str) -> String {
    format!("/{}/{id}", crate::pages::PERMALINK)
}

impl AnswerReport {
    /// The conversation the model read. Messages stored with a role no chat has are left out.
    pub fn chat_messages(&self) -> Vec<ChatMessage> {
        self.messages
            .iter()
            .filter_map(|message| {
                Role::named(&message.role)
                    .map(|role| ChatMessage::new(role, message.content.clone()))
            })
            .collect()
    }

    /// The settings the chat page answered with.
    pub fn chat_params(&self) -> GenerateParams {
        let provenance = &self.provenance;
        GenerateParams::chat(
            provenance.temperature,
            provenance.top_p,
            provenance.max_tokens,
            provenance.seed,
        )
    }
}

/// The request that generates `report`'s answer again through the OpenAI-compatible API.
pub fn reproduction_request(report: &AnswerReport) -> ChatCompletionRequest {
    let provenance = &report.provenance;
    ChatCompletionRequest {
        messages: report.chat_messages(),
        temperature: Some(provenance.temperature),
        top_p: Some(provenance.top_p),
        max_tokens: Some(provenance.max_tokens.into()),
        seed: Some(provenance.seed),
        ..ChatCompletionRequest::default()
    }
}
