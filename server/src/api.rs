//! The OpenAI-compatible API: `/v1/chat/completions` (JSON or SSE stream), `/v1/models`, and
//! `/health` for the Space's load balancer and the page.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::{ChatMessage, Completion, FinishReason, Flow, GenerateParams, SamplingParams};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::error::ApiError;
use crate::inference::{Inference, ModelState};

const MAX_MESSAGES: usize = 256;
const MAX_TOKENS_LIMIT: usize = 4096;
const DEFAULT_MAX_TOKENS: usize = 512;

pub fn routes(inference: Arc<Inference>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/metrics", get(metrics))
        .with_state(inference)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    #[allow(dead_code, reason = "accepted for compatibility: one Space serves one model")]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<usize>,
    stop: Option<Stop>,
    seed: Option<u64>,
    #[serde(default)]
    stream: bool,
}

impl ChatRequest {
    fn params(&self) -> Result<GenerateParams, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::InvalidRequest("`messages` is empty; send at least one message".into()));
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(ApiError::InvalidRequest(format!("`messages` has {} entries; the limit is {MAX_MESSAGES}", self.messages.len())));
        }
        let max_tokens = self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        if !(1..=MAX_TOKENS_LIMIT).contains(&max_tokens) {
            return Err(ApiError::InvalidRequest(format!("`max_tokens` is {max_tokens}; allowed: 1 to {MAX_TOKENS_LIMIT}")));
        }
        let defaults = SamplingParams::default();
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            seed: self.seed.unwrap_or(defaults.seed),
            ..defaults
        };
        sampling.validate()?;
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(stop)) => vec![stop.clone()],
            Some(Stop::Many(stops)) => stops.clone(),
        };
        Ok(GenerateParams { sampling, max_tokens, stop, ..GenerateParams::default() })
    }
}

async fn health(State(inference): State<Arc<Inference>>) -> Response {
    match inference.state() {
        ModelState::Loading { done, total } => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading", "progress": {"done": done, "total": total}}))).into_response()
        }
        ModelState::Ready { name, info } => {
            Json(json!({"status": "ok", "model": name, "architecture": info.architecture, "quantization": info.quantization, "backend": "candle", "device": "cpu"}))
                .into_response()
        }
        ModelState::Failed(message) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "error", "message": message}))).into_response(),
    }
}

async fn models(State(inference): State<Arc<Inference>>) -> Json<Value> {
    let data: Vec<Value> = match inference.state() {
        ModelState::Ready { name, .. } => vec![json!({"id": name, "object": "model", "owned_by": "vitrina"})],
        _ => Vec::new(),
    };
    Json(json!({"object": "list", "data": data}))
}

async fn metrics(State(inference): State<Arc<Inference>>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], inference.metrics.render())
}

async fn chat_completions(State(inference): State<Arc<Inference>>, request: Result<Json<ChatRequest>, JsonRejection>) -> Response {
    let response = match answer(&inference, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let status = response.status().as_u16();
    inference.metrics.requests.get_or_create(&crate::metrics::StatusLabel { status }).inc();
    response
}

async fn answer(inference: &Arc<Inference>, request: Result<Json<ChatRequest>, JsonRejection>) -> Result<Response, ApiError> {
    let Json(request) = request.map_err(|rejection| match rejection.status() {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ApiError::InvalidRequest(rejection.body_text()),
        status => ApiError::Rejected(status, rejection.body_text()),
    })?;
    let params = request.params()?;
    let model_name = match inference.state() {
        ModelState::Ready { name, .. } => name,
        _ => String::new(),
    };
    let id = format!("chatcmpl-{}", unix_time_millis());
    if !request.stream {
        let completion = inference.generate(request.messages, params, |_| Flow::Continue).await?;
        return Ok(Json(completion_body(&id, &model_name, &completion)).into_response());
    }

    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let chunk = {
        let (id, model_name) = (id.clone(), model_name.clone());
        move |delta: Value, finish_reason: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": unix_time_millis() / 1000, "model": model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
        }
    };
    let _ = sender.send(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
    let deltas = sender.clone();
    let delta_chunk = chunk.clone();
    {
        let inference = Arc::clone(inference);
        tokio::spawn(async move {
            // A closed channel means the client left: stop generating at the next token.
            let on_delta = move |text: &str| match deltas.send(delta_chunk(json!({"content": text}), Value::Null)) {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::Cancel,
            };
            match inference.generate(request.messages, params, on_delta).await {
                Ok(completion) => {
                    let mut last = chunk(json!({}), json!(finish_reason(completion.finish_reason)));
                    last["usage"] = usage(&completion);
                    let _ = sender.send(last);
                }
                Err(error) => {
                    let _ = sender.send(error.body());
                }
            }
        });
    }
    let events = UnboundedReceiverStream::new(receiver)
        .map(|chunk| Ok::<_, Infallible>(Event::default().data(chunk.to_string())))
        .chain(futures_util::stream::once(async { Ok(Event::default().data("[DONE]")) }));
    Ok(Sse::new(events).into_response())
}

fn completion_body(id: &str, model: &str, completion: &Completion) -> Value {
    json!({
        "id": id, "object": "chat.completion", "created": unix_time_millis() / 1000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text}, "finish_reason": finish_reason(completion.finish_reason)}],
        "usage": usage(completion),
    })
}

fn usage(completion: &Completion) -> Value {
    let usage = completion.usage;
    json!({"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens, "total_tokens": usage.prompt_tokens + usage.completion_tokens})
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
    }
}

fn unix_time_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis())
}
