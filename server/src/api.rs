//! The OpenAI-compatible API: `/v1/chat/completions` (JSON or SSE stream), `/v1/models`, and
//! `/health` for the Space's load balancer and the page.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use app::space::{Backend, ChatDefaults, Limits};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::{ChatMessage, Completion, FinishReason, Flow, GenerateParams, Role, SamplingParams};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::error::ApiError;
use crate::inference::{Inference, ModelState};
use crate::remote::RemoteBackend;
use crate::scheduler::Scheduler;

const MAX_MESSAGES: usize = 256;
const MAX_TOKENS_LIMIT: usize = 4096;
/// The `model` that asks for `[compare]`'s base model.
pub const COMPARE_MODEL: &str = "compare";

/// Everything the API needs: the model (here, or remote), the line in front of it, and the
/// team's settings.
pub struct Api {
    /// This server's model, and the metrics (kept for a remote backend too).
    pub inference: Arc<Inference>,
    remote: Option<RemoteBackend>,
    /// `[compare]`'s base model, asked for with `"model": "compare"`.
    compare: Option<Arc<Inference>>,
    scheduler: Arc<Scheduler>,
    chat: ChatDefaults,
    limits: Limits,
}

/// A request checked and ready to generate.
enum Prompt {
    /// Tokenised here, for one of this server's models.
    Ids(Vec<u32>, Arc<Inference>),
    /// For a remote backend, which tokenises it itself.
    Messages(Vec<ChatMessage>),
}

impl Api {
    pub fn new(
        inference: Arc<Inference>,
        compare: Option<Arc<Inference>>,
        chat: ChatDefaults,
        limits: Limits,
        backend: &Backend,
    ) -> Arc<Self> {
        let metrics = &inference.metrics;
        let scheduler = Scheduler::new(
            limits.clone(),
            metrics.queued.clone(),
            metrics.running.clone(),
        );
        let remote = match backend {
            Backend::Local => None,
            Backend::Remote(upstream) => Some(RemoteBackend::new(upstream)),
        };
        Arc::new(Self {
            inference,
            remote,
            compare,
            scheduler,
            chat,
            limits,
        })
    }

    async fn generate(
        &self,
        prompt: Prompt,
        params: GenerateParams,
        on_delta: impl FnMut(&str) -> Flow + Send + 'static,
    ) -> Result<Completion, ApiError> {
        match (prompt, &self.remote) {
            (Prompt::Messages(messages), Some(remote)) => {
                let completion = remote.generate(&messages, &params, on_delta).await?;
                self.inference.record(&completion);
                Ok(completion)
            }
            (Prompt::Ids(ids, inference), _) => inference.generate(ids, params, on_delta).await,
            (Prompt::Messages(_), None) => {
                unreachable!("messages are kept only for a remote backend")
            }
        }
    }

    /// The model's name and where it runs, for the answers.
    fn model_and_device(&self, prompt: &Prompt) -> (String, &'static str) {
        match prompt {
            Prompt::Messages(_) => ("remote".into(), "remote"),
            Prompt::Ids(_, inference) => match inference.state() {
                ModelState::Ready { name, device, .. } => (name, device),
                _ => (String::new(), "cpu"),
            },
        }
    }

    /// `[compare]`'s model when the request names it, else `None` (the Space's own model).
    fn compare_model(&self, asked: Option<&str>) -> Result<Option<Arc<Inference>>, ApiError> {
        let Some(asked) = asked.filter(|asked| *asked == COMPARE_MODEL) else {
            return Ok(None);
        };
        match &self.compare {
            Some(compare) => Ok(Some(Arc::clone(compare))),
            None => Err(ApiError::InvalidRequest(format!(
                "`model` is {asked:?}, but space.toml has no [compare] model; leave `model` out to use the Space's model"
            ))),
        }
    }
}

pub fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/metrics", get(metrics))
        .with_state(api)
}

/// The address the per-client limits count against (see [`crate::client`]).
struct ClientAddress(IpAddr);

impl FromRequestParts<Arc<Api>> for ClientAddress {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, Infallible> {
        Ok(Self(crate::client::client_address(
            parts,
            &api.limits.trusted_proxies,
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    /// Any name means the Space's model, except [`COMPARE_MODEL`].
    #[serde(default)]
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
    fn params(&self, defaults: &ChatDefaults) -> Result<GenerateParams, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::InvalidRequest(
                "`messages` is empty; send at least one message".into(),
            ));
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(ApiError::InvalidRequest(format!(
                "`messages` has {} entries; the limit is {MAX_MESSAGES}",
                self.messages.len()
            )));
        }
        let max_tokens = self.max_tokens.unwrap_or(defaults.max_tokens as usize);
        if !(1..=MAX_TOKENS_LIMIT).contains(&max_tokens) {
            return Err(ApiError::InvalidRequest(format!(
                "`max_tokens` is {max_tokens}; allowed: 1 to {MAX_TOKENS_LIMIT}"
            )));
        }
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            seed: self.seed.unwrap_or(SamplingParams::default().seed),
            ..SamplingParams::default()
        };
        sampling.validate()?;
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(stop)) => vec![stop.clone()],
            Some(Stop::Many(stops)) => stops.clone(),
        };
        Ok(GenerateParams {
            sampling,
            max_tokens,
            stop,
            ..GenerateParams::default()
        })
    }
}

impl Api {
    /// Checks a request against the model and `[limits]`, before it takes a place in the line:
    /// its prompt ids and generation settings.
    async fn prepare(
        &self,
        mut request: ChatRequest,
    ) -> Result<(Prompt, GenerateParams), ApiError> {
        let mut params = request.params(&self.chat)?;
        if let Some(system_prompt) = &self.chat.system_prompt
            && !request
                .messages
                .iter()
                .any(|message| message.role == Role::System)
        {
            request
                .messages
                .insert(0, ChatMessage::new(Role::System, system_prompt));
        }
        let compare = self.compare_model(request.model.as_deref())?;
        // A remote backend counts tokens itself: its own limits apply.
        if self.remote.is_some() && compare.is_none() {
            return Ok((Prompt::Messages(request.messages), params));
        }
        let inference = compare.unwrap_or_else(|| Arc::clone(&self.inference));
        let prompter = inference.prompter()?;
        let messages = request.messages;
        let prompt_ids = {
            let params = params.clone();
            // A long conversation takes milliseconds to tokenise: not on the async threads.
            tokio::task::spawn_blocking(move || prompter.prompt_ids(&messages, &params))
                .await
                .map_err(|error| ApiError::LoadFailed(format!("tokenising crashed: {error}")))??
        };
        let Limits {
            max_input_tokens,
            max_total_tokens,
            ..
        } = self.limits;
        let prompt_tokens = prompt_ids.len();
        if prompt_tokens > max_input_tokens {
            return Err(ApiError::TooManyTokens(format!(
                "the conversation is {prompt_tokens} tokens long; limits.max_input_tokens is {max_input_tokens} (space.toml). Send fewer or shorter messages"
            )));
        }
        let room = max_total_tokens - prompt_tokens;
        match request.max_tokens {
            Some(asked) if asked > room => {
                return Err(ApiError::TooManyTokens(format!(
                    "the conversation ({prompt_tokens} tokens) plus max_tokens ({asked}) is {} tokens; limits.max_total_tokens is {max_total_tokens} (space.toml). Ask for at most {room} tokens",
                    prompt_tokens + asked
                )));
            }
            Some(_) => {}
            None => params.max_tokens = params.max_tokens.min(room),
        }
        Ok((Prompt::Ids(prompt_ids, inference), params))
    }
}

async fn health(State(api): State<Arc<Api>>) -> Response {
    if let Some(remote) = &api.remote {
        return match remote.health().await {
            Ok(model) => Json(
                json!({"status": "ok", "model": model, "backend": "remote", "device": "remote"}),
            )
            .into_response(),
            Err(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "error", "message": message})),
            )
                .into_response(),
        };
    }
    match api.inference.state() {
        ModelState::Loading { done, total } => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading", "progress": {"done": done, "total": total}}))).into_response()
        }
        ModelState::Ready { name, info, device, .. } => {
            Json(json!({"status": "ok", "model": name, "architecture": info.architecture, "quantization": info.quantization, "backend": "candle", "device": device}))
                .into_response()
        }
        ModelState::Failed(message) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "error", "message": message}))).into_response(),
        ModelState::Disabled => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "disabled", "message": ApiError::NoServerModel.to_string()}))).into_response()
        }
    }
}

async fn models(State(api): State<Arc<Api>>) -> Json<Value> {
    let name = match (&api.remote, api.inference.state()) {
        (Some(remote), _) => remote.health().await.ok(),
        (None, ModelState::Ready { name, .. }) => Some(name),
        (None, _) => None,
    };
    let data: Vec<Value> = name
        .into_iter()
        .map(|name| json!({"id": name, "object": "model", "owned_by": "vitrina"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn metrics(State(api): State<Arc<Api>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.inference.metrics.render(),
    )
}

async fn chat_completions(
    State(api): State<Arc<Api>>,
    ClientAddress(client): ClientAddress,
    request: Result<Json<ChatRequest>, JsonRejection>,
) -> Response {
    let response = match answer(&api, client, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let status = response.status().as_u16();
    api.inference
        .metrics
        .requests
        .get_or_create(&crate::metrics::StatusLabel { status })
        .inc();
    response
}

/// Set when the handler's future is dropped: the client went away.
struct GoneOnDrop(Arc<AtomicBool>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn answer(
    api: &Arc<Api>,
    client: IpAddr,
    request: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = request.map_err(|rejection| match rejection.status() {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            ApiError::InvalidRequest(rejection.body_text())
        }
        status => ApiError::Rejected(status, rejection.body_text()),
    })?;
    let stream = request.stream;
    let (prompt, params) = api.prepare(request).await?;
    let mut ticket = api.scheduler.admit(client)?;
    let (model_name, device) = api.model_and_device(&prompt);
    let id = format!("chatcmpl-{}", unix_time_millis());
    if !stream {
        ticket.wait_for_turn(|_, _| {}).await;
        let gone = Arc::new(AtomicBool::new(false));
        let _gone_on_drop = GoneOnDrop(Arc::clone(&gone));
        let on_delta = move |_: &str| {
            if gone.load(Ordering::Relaxed) {
                Flow::Cancel
            } else {
                Flow::Continue
            }
        };
        let completion = api.generate(prompt, params, on_delta).await?;
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
    let _ = sender.send(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    let api = Arc::clone(api);
    tokio::spawn(async move {
        let on_wait = |position: usize, estimated_wait_seconds: Option<f64>| {
            // A chunk like any other, so OpenAI clients read past it; the page shows it.
            let mut waiting = chunk(json!({}), Value::Null);
            waiting["queue"] = json!({"position": position, "estimated_wait_seconds": estimated_wait_seconds.map(f64::ceil)});
            let _ = sender.send(waiting);
        };
        tokio::select! {
            () = ticket.wait_for_turn(on_wait) => {}
            // Gone while waiting: dropping the ticket gives its place to the next in line.
            () = sender.closed() => return,
        }
        let deltas = sender.clone();
        let delta_chunk = chunk.clone();
        // A closed channel means the client left: stop generating at the next token.
        let on_delta = move |text: &str| match deltas
            .send(delta_chunk(json!({"content": text}), Value::Null))
        {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Cancel,
        };
        match api.generate(prompt, params, on_delta).await {
            Ok(completion) => {
                let mut last = chunk(json!({}), json!(finish_reason(completion.finish_reason)));
                last["usage"] = usage(&completion);
                last["timings"] = json!({
                    "prefill_ms": completion.timings.prefill_ms,
                    "decode_tokens_per_second": completion.timings.decode_tokens_per_second,
                    "device": device,
                });
                let _ = sender.send(last);
            }
            Err(error) => {
                let _ = sender.send(error.body());
            }
        }
        drop(ticket);
    });
    let events = UnboundedReceiverStream::new(receiver)
        .map(|chunk| Ok::<_, Infallible>(Event::default().data(chunk.to_string())))
        .chain(futures_util::stream::once(async {
            Ok(Event::default().data("[DONE]"))
        }));
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
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis())
}
