//! The chat's data, apart from how it is shown: what is stored in the browser, what is sent to
//! `/v1/chat/completions`, and how the server's stream and errors are read.

use serde::{Deserialize, Serialize};
use wire::feedback::{AnswerBackend, AnswerReport, Provenance, Rating, WireMessage};
use wire::generation::GenerateParams;
use wire::limits;
use wire::openai::{ChatCompletionRequest, ErrorBody, StreamData};
use wire::worker::{ThreadLimit, WorkerEvent, WorkerRequest};
use wire::{ChatMessage, Role};

use crate::space::ChatDefaults;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Speaker {
    Visitor,
    Model,
}

/// How one answer went, shown under it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerStats {
    pub tokens: u64,
    pub tokens_per_second: f64,
    /// Where it ran, as the server names it (`cpu`, `cuda`…).
    pub device: String,
    /// The server's receipt for it (none for an answer made in the browser), sent back with
    /// feedback on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// The model that wrote it: its name and quantisation ("qwen2.5-coder-0.5b Q4_K_M").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// In the browser: how many threads decoded it, and why fewer than the visitor's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_limit: Option<ThreadLimit>,
}

/// One message as the browser keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedTurn {
    pub speaker: Speaker,
    pub text: String,
    /// The text a question refers to (an example's `contexto`), shown apart from it.
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub stats: Option<AnswerStats>,
    /// How a model's answer was made and what the visitor thought of it.
    #[serde(default)]
    pub meta: Option<AnswerMeta>,
    /// Answers to the same question that a regeneration replaced, oldest first.
    #[serde(default)]
    pub earlier: Vec<EarlierAnswer>,
}

impl SavedTurn {
    /// A turn with no answer data yet.
    pub fn new(speaker: Speaker, text: String, context: Option<String>) -> Self {
        Self {
            speaker,
            text,
            context,
            stats: None,
            meta: None,
            earlier: Vec::new(),
        }
    }
}

/// What an answer needs to be reported, rated and reproduced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerMeta {
    /// This answer's own id, so that a second rating updates the first.
    pub answer_key: String,
    /// Shared by every answer to the same question (regenerations included).
    pub turn_key: String,
    pub seed: u64,
    pub backend: AnswerBackend,
    /// The settings it was generated with (system prompt included).
    pub settings: Settings,
    #[serde(default)]
    pub rating: Rating,
}

/// An answer a regeneration replaced: kept, as the visitor preferred another one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlierAnswer {
    pub text: String,
    pub stats: Option<AnswerStats>,
    pub meta: AnswerMeta,
}

/// Where answers are generated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// The server while it answers, the visitor's browser when it cannot.
    #[default]
    Auto,
    Server,
    Browser,
}

/// The visitor's chat settings, starting from `[chat]` in space.toml.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub system_prompt: String,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    #[serde(default)]
    pub backend: BackendChoice,
    /// The browser model's threads; `None`: the device's cores but one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_threads: Option<u32>,
}

impl From<&ChatDefaults> for Settings {
    fn from(defaults: &ChatDefaults) -> Self {
        Self {
            system_prompt: defaults.system_prompt.clone().unwrap_or_default(),
            temperature: defaults.temperature,
            top_p: defaults.top_p,
            max_tokens: defaults.max_tokens,
            backend: BackendChoice::Auto,
            browser_threads: None,
        }
    }
}

impl Settings {
    /// Brings values typed by hand back into what the server accepts.
    pub fn clamped(mut self) -> Self {
        self.temperature = limits::TEMPERATURE.clamp(self.temperature);
        self.top_p = limits::TOP_P.clamp(self.top_p);
        self.max_tokens = limits::MAX_TOKENS.clamp(self.max_tokens);
        self.browser_threads = self
            .browser_threads
            .map(|n| limits::BROWSER_THREADS.clamp(n));
        self
    }
}

/// Everything the browser remembers between visits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub turns: Vec<SavedTurn>,
    pub settings: Settings,
    /// A random id that groups this conversation's feedback.
    #[serde(default)]
    pub conversation: String,
}

/// The `localStorage` key; a new layout gets a new key rather than misreading an old one.
pub const STORAGE_KEY: &str = "vitrina-chat-v1";

/// What the model reads for a visitor's turn: the question, then the text it refers to.
pub fn message_content(turn: &SavedTurn) -> String {
    wire::feedback::question_content(&turn.text, turn.context.as_deref())
}

/// The conversation in OpenAI's wire form, the settings' system prompt first.
fn messages(turns: &[SavedTurn], settings: &Settings) -> Vec<ChatMessage> {
    let system = (!settings.system_prompt.trim().is_empty())
        .then(|| ChatMessage::new(Role::System, settings.system_prompt.clone()));
    let turns = turns.iter().map(|turn| {
        let role = match turn.speaker {
            Speaker::Visitor => Role::User,
            Speaker::Model => Role::Assistant,
        };
        ChatMessage::new(role, message_content(turn))
    });
    system.into_iter().chain(turns).collect()
}

/// The request for the server's `/v1/chat/completions`; `model` picks `[compare]`'s base
/// model (`"compare"`) instead of the Space's. The seed makes the answer reproducible
/// (permalinks).
pub fn request_body(
    turns: &[SavedTurn],
    settings: &Settings,
    seed: u64,
    model: Option<&str>,
) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: model.map(str::to_owned),
        messages: messages(turns, settings),
        temperature: Some(settings.temperature),
        top_p: Some(settings.top_p),
        max_tokens: Some(settings.max_tokens.into()),
        seed: Some(seed),
        stream: true,
        ..ChatCompletionRequest::default()
    }
}

/// The same request for the browser worker: the sampling settings the server's API does not
/// take are the engine's defaults, as the server's are.
pub fn worker_request(turns: &[SavedTurn], settings: &Settings, seed: u64) -> WorkerRequest {
    WorkerRequest::Generate {
        messages: messages(turns, settings),
        params: GenerateParams::chat(
            settings.temperature,
            settings.top_p,
            settings.max_tokens,
            seed,
        ),
    }
}

/// The conversation up to and including the visitor's last question, as the model read it
/// (system prompt first), for feedback and permalinks.
pub fn wire_messages(turns: &[SavedTurn], settings: &Settings) -> Vec<WireMessage> {
    messages(turns, settings)
        .iter()
        .map(WireMessage::from)
        .collect()
}

/// The report of one answer for `POST /v1/feedback`: `history` is the conversation before it
/// (ending with the visitor's question).
pub fn answer_report(
    conversation: &str,
    history: &[SavedTurn],
    text: &str,
    stats: Option<&AnswerStats>,
    meta: &AnswerMeta,
    comment: Option<String>,
) -> Option<AnswerReport> {
    let question = history
        .iter()
        .rev()
        .find(|turn| turn.speaker == Speaker::Visitor)?;
    let settings = &meta.settings;
    Some(AnswerReport {
        answer_key: meta.answer_key.clone(),
        conversation: conversation.to_owned(),
        turn_key: meta.turn_key.clone(),
        messages: wire_messages(history, settings),
        pregunta: question.text.clone(),
        entrada: question
            .context
            .clone()
            .filter(|context| !context.trim().is_empty()),
        respuesta: text.to_owned(),
        rating: meta.rating,
        comment,
        receipt: stats.and_then(|stats| stats.receipt.clone()),
        provenance: Provenance {
            backend: meta.backend,
            device: stats.map(|stats| stats.device.clone()).unwrap_or_default(),
            temperature: settings.temperature,
            top_p: settings.top_p,
            max_tokens: settings.max_tokens,
            seed: meta.seed,
            ..Provenance::default()
        },
    })
}

/// What the browser worker reports (the `worker` crate's `WorkerEvent`), as the chat needs it.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerMessage {
    Started {
        threads: u32,
        limit: Option<ThreadLimit>,
    },
    Progress {
        done: u64,
        total: u64,
        from_cache: bool,
    },
    Ready,
    Event(StreamEvent),
    Failed(String),
}

/// Reads one message of the browser worker's.
pub fn parse_worker_message(json: &str) -> Result<WorkerMessage, ChatError> {
    let event: WorkerEvent =
        serde_json::from_str(json).map_err(|error| ChatError::other(error.to_string()))?;
    Ok(match event {
        WorkerEvent::Started { threads, limit } => WorkerMessage::Started { threads, limit },
        WorkerEvent::Progress {
            done,
            total,
            from_cache,
        } => WorkerMessage::Progress {
            done,
            total,
            from_cache,
        },
        WorkerEvent::Ready { .. } => WorkerMessage::Ready,
        WorkerEvent::Delta { text } => WorkerMessage::Event(StreamEvent::Text(text)),
        WorkerEvent::Done { completion } => {
            WorkerMessage::Event(StreamEvent::Finished(AnswerStats {
                tokens: completion.usage.completion_tokens as u64,
                tokens_per_second: completion.timings.decode_tokens_per_second,
                device: wire::device::BROWSER.to_owned(),
                receipt: None,
                model: String::new(),
                threads: None,
                thread_limit: None,
            }))
        }
        WorkerEvent::Failed { message } => WorkerMessage::Failed(message),
    })
}

/// One server-sent event of an answer.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    Text(String),
    /// A reasoning model's thinking (`reasoning_content`).
    Reasoning(String),
    /// Still waiting: `position` 1 is next.
    Queued {
        position: u64,
        estimated_wait_seconds: Option<f64>,
    },
    Finished(AnswerStats),
    Nothing,
}

/// Adds an event's text to `answer` as the model generated it: thinking between
/// [`wire::reasoning::OPEN`] and [`wire::reasoning::CLOSE`], as receipts sign it and the next
/// turn sends it back (the model's template leaves earlier thinking out).
pub fn append_answer(answer: &mut String, event: &StreamEvent) {
    use wire::reasoning::{CLOSE, OPEN};
    match event {
        StreamEvent::Reasoning(text) => {
            if answer.is_empty() {
                answer.push_str(OPEN);
            }
            answer.push_str(text);
        }
        StreamEvent::Text(text) => {
            if answer.starts_with(OPEN) && !answer.contains(CLOSE) {
                answer.push_str(CLOSE);
            }
            answer.push_str(text);
        }
        _ => {}
    }
}

/// How an answer names its model: the name, then the file's quantisation when known.
pub fn model_label(name: &str, quantization: &str) -> String {
    [name, quantization]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads one `data:` payload; `Err` carries an error the server sent mid-stream.
pub fn parse_event(data: &str) -> Result<StreamEvent, ChatError> {
    let chunk = match serde_json::from_str::<StreamData>(data) {
        Ok(StreamData::Chunk(chunk)) => chunk,
        Ok(StreamData::Error(body)) => {
            return Err(ChatError::from_kind(&body.error.kind, &body.error.message));
        }
        Err(error) => return Err(ChatError::other(error.to_string())),
    };
    if let Some(queue) = chunk.queue {
        return Ok(StreamEvent::Queued {
            position: queue.position,
            estimated_wait_seconds: queue.estimated_wait_seconds,
        });
    }
    if let Some(delta) = chunk.choices.first().map(|choice| &choice.delta) {
        if let Some(reasoning) = &delta.reasoning_content {
            return Ok(StreamEvent::Reasoning(reasoning.clone()));
        }
        // An empty text (but the opening chunk's, which names the role) ends a reasoning
        // model's thinking: see [`append_answer`].
        if let Some(text) = delta
            .content
            .as_ref()
            .filter(|text| !text.is_empty() || delta.role.is_none())
        {
            return Ok(StreamEvent::Text(text.clone()));
        }
    }
    if let Some(usage) = chunk.usage {
        let timings = chunk.timings.unwrap_or_default();
        let model = model_label(&chunk.model, &timings.quantization);
        return Ok(StreamEvent::Finished(AnswerStats {
            tokens: usage.completion_tokens as u64,
            tokens_per_second: timings.decode_tokens_per_second,
            device: if timings.device.is_empty() {
                wire::device::CPU.to_owned()
            } else {
                timings.device
            },
            receipt: chunk.receipt,
            model,
            threads: None,
            thread_limit: None,
        }));
    }
    Ok(StreamEvent::Nothing)
}

/// Why an answer failed, in the terms the visitor is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Too many people right now (429).
    Busy,
    /// The model is still loading (503).
    Loading,
    /// The conversation is too long for the model (422, or a context-window error).
    TooLong,
    /// The server could not be reached or the connection dropped.
    Connection,
    /// The browser could not run the model (too large, download failed, no storage…).
    Browser,
    Other,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatError {
    pub failure: Failure,
    /// The server's own words, shown in small print for those who want them.
    pub detail: String,
}

impl ChatError {
    pub fn other(detail: String) -> Self {
        Self {
            failure: Failure::Other,
            detail,
        }
    }

    pub fn browser(detail: String) -> Self {
        Self {
            failure: Failure::Browser,
            detail,
        }
    }

    /// Whether the visitor's browser could give the answer the server did not.
    pub fn server_could_not_serve(&self) -> bool {
        matches!(
            self.failure,
            Failure::Busy | Failure::Loading | Failure::Connection | Failure::Other
        )
    }

    pub fn connection(detail: String) -> Self {
        Self {
            failure: Failure::Connection,
            detail,
        }
    }

    /// From an HTTP status and the OpenAI-style body that came with it.
    pub fn from_response(status: u16, body: &str) -> Self {
        let detail = ErrorBody::message_in(body).unwrap_or_else(|| format!("HTTP {status}"));
        let failure = match status {
            429 => Failure::Busy,
            503 => Failure::Loading,
            413 | 422 => Failure::TooLong,
            400 if detail.contains("context window") => Failure::TooLong,
            _ => Failure::Other,
        };
        Self { failure, detail }
    }

    fn from_kind(kind: &str, message: &str) -> Self {
        let failure = match kind {
            "rate_limit_error" => Failure::Busy,
            "service_unavailable" => Failure::Loading,
            _ if message.contains("context window") => Failure::TooLong,
            _ => Failure::Other,
        };
        Self {
            failure,
            detail: message.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(speaker: Speaker, text: &str, context: Option<&str>) -> SavedTurn {
        SavedTurn::new(speaker, text.into(), context.map(Into::into))
    }

    #[test]
    fn the_request_carries_settings_system_prompt_and_context() {
        let settings = Settings {
            system_prompt: "Sé breve.".into(),
            temperature: 0.2,
            top_p: 0.5,
            max_tokens: 64,
            backend: BackendChoice::Auto,
            browser_threads: None,
        };
        let turns = [
            turn(
                Speaker::Visitor,
                "Resume el texto.",
                Some("Un texto largo."),
            ),
            turn(Speaker::Model, "Hecho.", None),
        ];
        let body = serde_json::to_value(request_body(&turns, &settings, 7, None)).unwrap();
        assert_eq!(
            body["messages"][0],
            serde_json::json!({"role": "system", "content": "Sé breve."})
        );
        assert_eq!(
            body["messages"][1]["content"],
            "Resume el texto.\n\nUn texto largo."
        );
        assert_eq!(body["messages"][2]["role"], "assistant");
        assert_eq!(
            (
                body["temperature"].as_f64(),
                body["max_tokens"].as_u64(),
                body["stream"].as_bool()
            ),
            (Some(0.2), Some(64), Some(true))
        );
        assert_eq!((body["seed"].as_u64(), body.get("model")), (Some(7), None));

        let no_system = Settings {
            system_prompt: "  ".into(),
            ..settings
        };
        let body =
            serde_json::to_value(request_body(&turns, &no_system, 7, Some("compare"))).unwrap();
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["model"], "compare");
    }

    #[test]
    fn an_answer_report_names_the_question_its_context_and_how_it_was_made() {
        let settings = Settings {
            system_prompt: "Sé breve.".into(),
            temperature: 0.3,
            top_p: 0.8,
            max_tokens: 99,
            backend: BackendChoice::Auto,
            browser_threads: None,
        };
        let meta = AnswerMeta {
            answer_key: "answer-1".into(),
            turn_key: "turn-1".into(),
            seed: 42,
            backend: AnswerBackend::Browser,
            settings,
            rating: Rating::Up,
        };
        let history = [
            turn(Speaker::Visitor, "Hola", None),
            turn(Speaker::Model, "¡Hola!", None),
            turn(Speaker::Visitor, "Resume.", Some("Un texto.")),
        ];
        let stats = AnswerStats {
            tokens: 3,
            tokens_per_second: 9.0,
            device: "wasm".into(),
            receipt: None,
            model: String::new(),
            threads: None,
            thread_limit: None,
        };
        let report = answer_report(
            "conv-1",
            &history,
            "Resumen.",
            Some(&stats),
            &meta,
            Some("bien".into()),
        )
        .unwrap();
        assert_eq!(
            (
                report.pregunta.as_str(),
                report.entrada.as_deref(),
                report.respuesta.as_str()
            ),
            ("Resume.", Some("Un texto."), "Resumen.")
        );
        assert_eq!(report.messages.len(), 4);
        assert_eq!(
            (
                report.messages[0].role.as_str(),
                report.messages[3].content.as_str()
            ),
            ("system", "Resume.\n\nUn texto.")
        );
        assert_eq!(
            (
                report.provenance.seed,
                report.provenance.max_tokens,
                report.provenance.device.as_str()
            ),
            (42, 99, "wasm")
        );
        assert_eq!(
            (report.rating, report.comment.as_deref()),
            (Rating::Up, Some("bien"))
        );
        assert!(answer_report("conv-1", &[], "x", None, &meta, None).is_none());
    }

    #[test]
    fn the_worker_gets_the_servers_settings_and_the_engines_other_defaults() {
        let settings = Settings {
            system_prompt: String::new(),
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 24,
            backend: BackendChoice::Browser,
            browser_threads: None,
        };
        let turns = [turn(Speaker::Visitor, "Hola", None)];
        let WorkerRequest::Generate { messages, params } = worker_request(&turns, &settings, 42)
        else {
            panic!("not a generate request")
        };
        assert_eq!(messages, [ChatMessage::new(Role::User, "Hola")]);
        assert_eq!(
            (
                params.max_tokens,
                params.sampling.temperature,
                params.sampling.seed
            ),
            (24, 0.0, 42)
        );
        // What the server's API does with the same request.
        let defaults = wire::generation::SamplingParams::default();
        assert_eq!(
            (params.sampling.repetition_penalty, params.sampling.top_k),
            (defaults.repetition_penalty, defaults.top_k)
        );
    }

    #[test]
    fn worker_messages_are_read() {
        assert_eq!(
            parse_worker_message(
                r#"{"type":"started","threads":1,"limit":{"reason":"not_isolated"}}"#
            ),
            Ok(WorkerMessage::Started {
                threads: 1,
                limit: Some(ThreadLimit::NotIsolated)
            })
        );
        assert_eq!(
            parse_worker_message(r#"{"type":"progress","done":5,"total":10,"from_cache":true}"#),
            Ok(WorkerMessage::Progress {
                done: 5,
                total: 10,
                from_cache: true
            })
        );
        let done = r#"{"type":"done","completion":{"text":"x","finish_reason":"stop","usage":{"prompt_tokens":3,"completion_tokens":7},"timings":{"prefill_ms":1.0,"prefill_tokens_per_second":2.0,"decode_tokens_per_second":9.5}}}"#;
        assert_eq!(
            parse_worker_message(done),
            Ok(WorkerMessage::Event(StreamEvent::Finished(AnswerStats {
                tokens: 7,
                tokens_per_second: 9.5,
                device: "wasm".into(),
                receipt: None,
                model: String::new(),
                threads: None,
                thread_limit: None,
            })))
        );
        assert_eq!(
            parse_worker_message(r#"{"type":"failed","message":"too large"}"#),
            Ok(WorkerMessage::Failed("too large".into()))
        );
    }

    #[test]
    fn stream_events_are_read() {
        let text = r#"{"choices":[{"index":0,"delta":{"content":"¡Hola"},"finish_reason":null}]}"#;
        assert_eq!(parse_event(text), Ok(StreamEvent::Text("¡Hola".into())));
        let queued = r#"{"choices":[{"index":0,"delta":{},"finish_reason":null}],"queue":{"position":3,"estimated_wait_seconds":12.0}}"#;
        assert_eq!(
            parse_event(queued),
            Ok(StreamEvent::Queued {
                position: 3,
                estimated_wait_seconds: Some(12.0)
            })
        );
        let last = r#"{"model":"qwen2.5-coder-0.5b","choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"completion_tokens":9},"timings":{"decode_tokens_per_second":31.5,"device":"cpu","quantization":"Q4_K_M"},"receipt":"ab12"}"#;
        assert_eq!(
            parse_event(last),
            Ok(StreamEvent::Finished(AnswerStats {
                tokens: 9,
                tokens_per_second: 31.5,
                device: "cpu".into(),
                receipt: Some("ab12".into()),
                model: "qwen2.5-coder-0.5b Q4_K_M".into(),
                threads: None,
                thread_limit: None,
            }))
        );
        assert_eq!(
            parse_event(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#),
            Ok(StreamEvent::Nothing)
        );
        // A reasoning model's thinking, its end (an empty text) and its answer: put back
        // together as generated.
        let mut answer = String::new();
        for data in [
            r#"{"choices":[{"delta":{"reasoning_content":""}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"Pienso."}}]}"#,
            r#"{"choices":[{"delta":{"content":""}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hola"}}]}"#,
        ] {
            append_answer(&mut answer, &parse_event(data).unwrap());
        }
        assert_eq!(answer, "<think>Pienso.</think>Hola");
        let error =
            parse_event(r#"{"error":{"message":"busy","type":"rate_limit_error"}}"#).unwrap_err();
        assert_eq!(error.failure, Failure::Busy);
    }

    #[test]
    fn errors_are_sorted_by_what_the_visitor_can_do() {
        let body = r#"{"error":{"message":"the conversation is 3000 tokens long","type":"invalid_request_error"}}"#;
        let error = ChatError::from_response(422, body);
        assert_eq!(
            (error.failure, error.detail.as_str()),
            (Failure::TooLong, "the conversation is 3000 tokens long")
        );
        assert_eq!(ChatError::from_response(429, "{}").failure, Failure::Busy);
        assert_eq!(ChatError::from_response(503, "not json").detail, "HTTP 503");
    }

    #[test]
    fn settings_typed_by_hand_are_brought_into_range() {
        let wild = Settings {
            system_prompt: String::new(),
            temperature: f64::NAN,
            top_p: 7.0,
            max_tokens: 0,
            backend: BackendChoice::Browser,
            browser_threads: Some(64),
        }
        .clamped();
        assert_eq!(
            (
                wild.temperature,
                wild.top_p,
                wild.max_tokens,
                wild.browser_threads
            ),
            (0.7, 1.0, 1, Some(8))
        );
    }
}
