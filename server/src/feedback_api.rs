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

use crate::feedback::{FeedbackStore, StoreError};

const MAX_BODY_BYTES: usize = 512 * 1024;
const MAX_COMMENT_CHARS: usize = 2000;

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
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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

/// Checks what a browser sent before it is stored.
fn validate(report: &AnswerReport) -> Result<(), ApiError> {
    let invalid = |message: String| Err(ApiError::InvalidRequest(message));
    for (name, key) in [
        ("answer_key", &report.answer_key),
        ("conversation", &report.conversation),
        ("turn_key", &report.turn_key),
    ] {
        let valid = (8..=64).contains(&key.len())
            && key
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !valid {
            return invalid(format!(
                "`{name}` is {key:?}; allowed: 8 to 64 letters, digits, '-' or '_'"
            ));
        }
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

async fn save(
    State(api): State<Arc<FeedbackApi>>,
    Visitor(visitor): Visitor,
    report: Result<Json<AnswerReport>, JsonRejection>,
) -> Result<Json<Stored>, ApiError> {
    api.per_minute.admit(visitor)?;
    let Json(mut report) = report
        .map_err(|rejection| ApiError::Rejected(rejection.status(), rejection.body_text()))?;
    validate(&report)?;
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
                browser_model
                    .remake(
                        report.chat_messages(),
                        report.chat_params(),
                        report.respuesta.clone(),
                    )
                    .await?;
            }
            report.receipt = Some(receipt);
        }
    }
    if let Some(model) = api.facts.model(role) {
        let provenance = &mut report.provenance;
        provenance.model = model.name;
        provenance.sha256 = model.sha256.unwrap_or_default();
        provenance.quantization = model.quantization.unwrap_or_default();
    }
    let id = api.with_store(move |store| store.save(&report)).await?;
    Ok(Json(Stored {
        permalink: permalink(&id),
        id,
    }))
}

async fn read(
    State(api): State<Arc<FeedbackApi>>,
    Visitor(visitor): Visitor,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.per_minute.admit(visitor)?;
    let lookup = id.clone();
    let answer = api.with_store(move |store| store.get(&lookup)).await?;
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

/// The stored answers an export is made of, for a caller entitled to it.
async fn stored_answers(
    api: &FeedbackApi,
    headers: &HeaderMap,
    options: &ExportOptions,
) -> Result<Vec<StoredAnswer>, ApiError> {
    api.authorise(headers)?;
    let mut answers = api.with_store(FeedbackStore::all).await?;
    if !options.include_browser {
        answers.retain(|answer| answer.report.provenance.backend == AnswerBackend::Server);
    }
    Ok(answers)
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

/// An export streamed line by line: however many answers are stored, no copy of the whole
/// file is made.
fn jsonl(file_name: &str, lines: impl Iterator<Item = String> + Send + 'static) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .expect("a plain file name");
    let body = Body::from_stream(futures_util::stream::iter(lines.map(Ok::<_, Infallible>)));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jsonl; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// What `GET /v1/export/{file}` makes of the stored answers.
enum Export {
    Corpus,
    Dpo,
    Kto,
}

/// `GET /v1/export/{file}`: the caller admitted and entitled, then the stored answers streamed
/// as the file asked for.
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
    let answers = stored_answers(&api, &headers, &export_options(options)?).await?;
    Ok(match export {
        Export::Corpus => jsonl(
            &file,
            crate::feedback::corpus_lines(answers, api.idioma.clone()),
        ),
        Export::Dpo => jsonl(
            &file,
            crate::feedback::dpo_lines(answers, api.dpo_pairs_per_question),
        ),
        Export::Kto => jsonl(&file, crate::feedback::kto_lines(answers)),
    })
}
