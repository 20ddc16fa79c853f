//! Feedback over HTTP: `POST /v1/feedback` stores a rated (or shared) answer, `GET
//! /v1/feedback/<id>` reads it back, and the admin exports `GET /v1/export/corpus.jsonl`,
//! `/v1/export/dpo.jsonl` and `/v1/export/kto.jsonl` turn the store into training data, behind
//! `VITRINA_ADMIN_TOKEN`.

use std::convert::Infallible;
use std::sync::Arc;

use app::facts::ModelRole;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use wire::feedback::{
    AnswerBackend, AnswerClaim, AnswerReport, Stored, permalink, question_content,
};

use crate::client::{PerMinute, Visitor};
use crate::error::ApiError;
use crate::facts::Facts;
use wire::feedback::StoredAnswer;

use crate::browser_model::Remake;
use crate::feedback::{FeedbackStore, Order, StoreError};
use crate::validation::ValidRequest;
use futures_util::StreamExt;

use wire::limits::{
    KEY_CHARS, MAX_ANSWER_BYTES, MAX_COMMENT_CHARS, MAX_FEEDBACK_BODY_BYTES, RECEIPT_HEX_CHARS,
};

use crate::scheduler::{Priority, Scheduler};

pub struct FeedbackApi {
    pub facts: Arc<Facts>,
    /// `VITRINA_ADMIN_TOKEN`; unset (or empty) disables the exports.
    pub admin_token: Option<String>,
    /// The corpus's `idioma` for exported rows: the project's first language.
    pub idioma: String,
    /// `[limits] trusted_proxies`, to tell visitors apart as the chat does.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `[limits] requests_per_minute_per_client`, counted apart from the chat's.
    pub per_minute: PerMinute,
    /// `[feedback] dpo_pairs_per_question`.
    pub dpo_pairs_per_question: usize,
    /// The chat's line, which a browser answer's remake waits in (at the lowest priority).
    pub line: Arc<Scheduler>,
    /// `[limits]` and `[chat]`: a remake is checked as a chat request is.
    pub limits: space::Limits,
    pub chat: space::ChatDefaults,
}

impl crate::client::TrustsProxies for FeedbackApi {
    fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.trusted_proxies
    }
}

pub fn routes(api: Arc<FeedbackApi>) -> Router {
    let inference = Arc::clone(&api.facts.inference);
    crate::error::count_refusals(
        Router::new()
            .route("/v1/feedback", post(save))
            .route("/v1/feedback/{id}", get(read))
            .route("/v1/export/{file}", get(export))
            .layer(DefaultBodyLimit::max(MAX_FEEDBACK_BODY_BYTES))
            .with_state(api),
        inference,
    )
}

impl FeedbackApi {
    /// Runs `work` on the store, off the async threads (SQLite waits for the disk).
    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&FeedbackStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self
            .facts
            .store
            .clone()
            .map_err(ApiError::FeedbackUnavailable)?;
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|error| ApiError::Storage(error.to_string()))?
            .map_err(|error| match error {
                StoreError::AlreadyStored(_) => ApiError::AlreadyStored(error.to_string()),
                error => ApiError::Storage(error.to_string()),
            })
    }

    /// The exports are for the team only.
    fn authorise(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let expected = self
            .admin_token
            .as_deref()
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::ExportsDisabled)?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Checks what a browser sent before it is stored: every field is bounded (the conversation
/// by the chat's own limits, see [`FeedbackApi::conversation`]), and what the server can
/// say itself it says (see [`save`]).
fn validate(report: &AnswerReport) -> Result<(), ApiError> {
    let invalid = |message: String| Err(ApiError::InvalidRequest(message));
    for (name, key) in [
        ("answer_key", &report.answer_key),
        ("conversation", &report.conversation),
        ("turn_key", &report.turn_key),
    ] {
        let valid = KEY_CHARS.contains(&key.len())
            && key
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !valid {
            let shown: String = key.chars().take(*KEY_CHARS.end()).collect();
            return invalid(format!(
                "`{name}` is {shown:?}…; allowed: {} to {} letters, digits, '-' or '_'",
                KEY_CHARS.start(),
                KEY_CHARS.end()
            ));
        }
    }
    if report.respuesta.len() > MAX_ANSWER_BYTES {
        return invalid(format!(
            "`respuesta` is {} bytes long; the limit is {MAX_ANSWER_BYTES} (no answer of this Space is longer)",
            report.respuesta.len()
        ));
    }
    if report
        .receipt
        .as_ref()
        .is_some_and(|receipt| receipt.len() > RECEIPT_HEX_CHARS)
    {
        return invalid(format!(
            "`receipt` is longer than {RECEIPT_HEX_CHARS} characters; send the receipt the answer came with"
        ));
    }
    if report.pregunta.trim().is_empty() || report.respuesta.trim().is_empty() {
        return invalid("`pregunta` and `respuesta` must not be empty".into());
    }
    if let Some(message) = report
        .messages
        .iter()
        .find(|message| wire::chat::Role::named(&message.role).is_none())
    {
        return invalid(format!(
            "`messages` has the role {:?}; allowed: system, user, assistant",
            message.role
        ));
    }
    let Some(question) = report
        .messages
        .last()
        .filter(|message| message.role == "user")
    else {
        return invalid("`messages` must end with the visitor's question (role \"user\")".into());
    };
    // The corpus keeps `pregunta` and `entrada`: they must be the question the model read.
    if question.content != question_content(&report.pregunta, report.entrada.as_deref()) {
        return invalid(
            "`pregunta` and `entrada` are not the last message of `messages` (the question, then the context after a blank line)".into(),
        );
    }
    if report
        .comment
        .as_ref()
        .is_some_and(|comment| comment.chars().count() > MAX_COMMENT_CHARS)
    {
        return invalid(format!(
            "`comment` is longer than {MAX_COMMENT_CHARS} characters"
        ));
    }
    let provenance = &report.provenance;
    if !provenance.temperature.is_finite() || !provenance.top_p.is_finite() {
        return invalid("`provenance.temperature` and `provenance.top_p` must be numbers".into());
    }
    Ok(())
}

impl FeedbackApi {
    /// The conversation and settings of `report`, checked as a chat request is: the same
    /// bounds on messages, bytes and settings as `/v1/chat/completions`.
    fn conversation(&self, report: &AnswerReport) -> Result<ValidRequest, ApiError> {
        let request = wire::feedback::reproduction_request(report);
        Ok(crate::validation::validate(
            request,
            &self.chat,
            &self.limits,
        )?)
    }
}

async fn save(
    State(api): State<Arc<FeedbackApi>>,
    Visitor(visitor): Visitor,
    headers: HeaderMap,
    report: Result<Json<AnswerReport>, JsonRejection>,
) -> Result<Json<Stored>, ApiError> {
    crate::validation::require_json(&headers)?;
    api.per_minute.admit(visitor)?;
    let Json(mut report) = report
        .map_err(|rejection| ApiError::Rejected(rejection.status(), rejection.body_text()))?;
    validate(&report)?;
    let conversation = api.conversation(&report)?;
    report.comment = report.comment.filter(|comment| !comment.trim().is_empty());
    // The model is the server's to name: the browser only says where the answer ran.
    let role = match report.provenance.backend {
        AnswerBackend::Server => ModelRole::Server,
        AnswerBackend::Browser => ModelRole::Browser,
    };
    match report.provenance.backend {
        // A server answer is stored only with the receipt the server gave it, for this very
        // answer to this conversation.
        AnswerBackend::Server => {
            let sha256 = api
                .facts
                .model(ModelRole::Server)
                .and_then(|model| model.sha256)
                .unwrap_or_default();
            let receipt = report.receipt.as_deref().ok_or(ApiError::NoReceipt)?;
            if !api
                .facts
                .receipts
                .verify(&AnswerClaim::of_report(&report, &sha256), receipt)
            {
                return Err(ApiError::ForgedAnswer);
            }
        }
        // The browser's word is not taken: the server makes its answer again first, unless
        // it is one stored already (an edit, or the same answer sent twice).
        AnswerBackend::Browser => {
            let browser_model = &api.facts.browser_model;
            // Not fetched yet: no browser can have run it, and the remake says so.
            let sha256 = browser_model.sha256().unwrap_or_default();
            let receipt = api
                .facts
                .receipts
                .sign_remade(&AnswerClaim::of_report(&report, &sha256));
            let (answer_key, known_receipt) = (report.answer_key.clone(), receipt.clone());
            let stored = api
                .with_store(move |store| store.knows(&answer_key, &known_receipt))
                .await?;
            if !stored {
                let place = api.line.admit(visitor, Priority::Remake)?;
                let remake = Remake {
                    request: conversation,
                    answer: report.respuesta.clone(),
                };
                browser_model
                    .remake(remake, place, Arc::clone(&api.line), api.limits.clone())
                    .await?;
            }
            report.receipt = Some(receipt);
        }
    }
    // What the server knows it says itself: nothing the visitor wrote of the model or where it
    // ran is stored (a free text there was unbounded and vouched for by nobody).
    let model = api.facts.model(role);
    let provenance = &mut report.provenance;
    provenance.model = model
        .as_ref()
        .map(|model| model.name.clone())
        .unwrap_or_default();
    provenance.sha256 = model
        .as_ref()
        .and_then(|model| model.sha256.clone())
        .unwrap_or_default();
    provenance.quantization = model
        .as_ref()
        .and_then(|model| model.quantization.clone())
        .unwrap_or_default();
    provenance.device = model.map(|model| model.device).unwrap_or_default();
    let id = api.with_store(move |store| store.save(&report)).await?;
    Ok(Json(Stored {
        permalink: permalink(&id),
        id,
    }))
}

impl FeedbackApi {
    /// The answer stored under `id`, read off the async threads.
    pub async fn read(&self, id: String) -> Result<Option<StoredAnswer>, ApiError> {
        self.with_store(move |store| store.get(&id)).await
    }
}

async fn read(
    State(api): State<Arc<FeedbackApi>>,
    Visitor(visitor): Visitor,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.per_minute.admit(visitor)?;
    let answer = api.read(id.clone()).await?;
    match answer {
        Some(answer) => Ok(Json(answer).into_response()),
        None => Err(ApiError::NotFound(format!(
            "no stored answer has the id {id:?}"
        ))),
    }
}

/// What an export takes in.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ExportOptions {
    /// Answers made in visitors' browsers too: by another model than the Space's (the server
    /// made each again before storing it), so left out unless asked for.
    include_browser: bool,
}

fn export_options(
    options: Result<Query<ExportOptions>, QueryRejection>,
) -> Result<ExportOptions, ApiError> {
    options.map(|Query(options)| options).map_err(|rejection| {
        ApiError::InvalidRequest(format!(
            "{}; the exports take only `include_browser=true`",
            rejection.body_text()
        ))
    })
}

/// Lines of an export held at once between the database and the connection: the reader's
/// speed, not the database's size, sets how much is in memory.
const EXPORT_LINES_AHEAD: usize = 64;

/// What `GET /v1/export/{file}` makes of the stored answers.
#[derive(Clone, Copy)]
enum Export {
    Corpus,
    Dpo,
    Kto,
}

impl Export {
    /// Reads the store row by row and sends each line made of it, until the reader leaves.
    fn write(
        self,
        store: &FeedbackStore,
        api: &FeedbackApi,
        options: &ExportOptions,
        lines: &tokio::sync::mpsc::Sender<String>,
    ) -> Result<(), StoreError> {
        let wanted = |answer: &StoredAnswer| {
            options.include_browser || answer.report.provenance.backend == AnswerBackend::Server
        };
        let send = |line: String| lines.blocking_send(line).is_ok();
        match self {
            Self::Corpus => store.each(Order::Stored, |answer| {
                !wanted(&answer)
                    || crate::feedback::corpus_line(&answer, &api.idioma).is_none_or(send)
            }),
            Self::Kto => store.each(Order::Stored, |answer| {
                !wanted(&answer) || crate::feedback::kto_line(&answer).is_none_or(send)
            }),
            Self::Dpo => {
                // One conversation's answers at a time, as they come together.
                let mut group: Vec<StoredAnswer> = Vec::new();
                let flush = |group: &mut Vec<StoredAnswer>| {
                    let lines = crate::feedback::dpo_lines(group, api.dpo_pairs_per_question);
                    group.clear();
                    lines.into_iter().all(send)
                };
                let mut reading = true;
                store.each(Order::ByConversation, |answer| {
                    if group.first().is_some_and(|first| {
                        first.conversation_sha256 != answer.conversation_sha256
                    }) {
                        reading = flush(&mut group);
                    }
                    if wanted(&answer) {
                        group.push(answer);
                    }
                    reading
                })?;
                if reading {
                    flush(&mut group);
                }
                Ok(())
            }
        }
    }
}

/// `GET /v1/export/{file}`: the caller admitted and entitled, then the stored answers streamed
/// as the file asked for, row by row.
async fn export(
    State(api): State<Arc<FeedbackApi>>,
    Visitor(visitor): Visitor,
    Path(file): Path<String>,
    headers: HeaderMap,
    options: Result<Query<ExportOptions>, QueryRejection>,
) -> Result<Response, ApiError> {
    api.per_minute.admit(visitor)?;
    let export = match file.as_str() {
        "corpus.jsonl" => Export::Corpus,
        "dpo.jsonl" => Export::Dpo,
        "kto.jsonl" => Export::Kto,
        _ => {
            return Err(ApiError::NotFound(format!(
                "no export {file:?}; allowed: corpus.jsonl, dpo.jsonl, kto.jsonl"
            )));
        }
    };
    api.authorise(&headers)?;
    let options = export_options(options)?;
    let store = api
        .facts
        .store
        .clone()
        .map_err(ApiError::FeedbackUnavailable)?;
    let (lines, received) = tokio::sync::mpsc::channel(EXPORT_LINES_AHEAD);
    let writer = Arc::clone(&api);
    tokio::task::spawn_blocking(move || {
        if let Err(error) = export.write(&store, &writer, &options, &lines) {
            // The status is sent: the file ends early, and the log says why.
            tracing::error!(%error, "an export stopped");
        }
    });
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
        .expect("a plain file name");
    let body = Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(received).map(Ok::<_, Infallible>),
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jsonl; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
