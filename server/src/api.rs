//! The OpenAI-compatible API: `/v1/chat/completions` (JSON or SSE stream), `/v1/models`, and
//! `/health` for the Space's load balancer and the page.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::{ChatMessage, Completion, Flow, GenerateParams, Role};
use futures_util::StreamExt;
use serde::Serialize;
use space::{ChatDefaults, Limits, ServerBackend};
use tokio_stream::wrappers::UnboundedReceiverStream;
use wire::health::{Health, LoadProgress};
use wire::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, DONE, Delta, ModelList,
    QueueStatus, StreamTimings,
};

use crate::error::ApiError;
use crate::inference::{Inference, ModelState};
use crate::remote::RemoteBackend;
use crate::scheduler::Scheduler;
use crate::validation::{self, ValidRequest};
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
        backend: &ServerBackend,
    ) -> Arc<Self> {
        let metrics = &inference.metrics;
        let scheduler = Scheduler::new(
            limits.clone(),
            metrics.queued.clone(),
            metrics.running.clone(),
        );
        let remote = match backend {
            ServerBackend::Local => None,
            ServerBackend::Remote(upstream) => Some(RemoteBackend::new(upstream)),
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
            Prompt::Messages(_) => ("remote".into(), wire::device::REMOTE),
            Prompt::Ids(_, inference) => match inference.state() {
                ModelState::Ready { name, device, .. } => (name, device),
                _ => (String::new(), wire::device::CPU),
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

impl Api {
    /// Checks a request against the model and `[limits]`, before it takes a place in the line:
    /// its prompt ids and generation settings.
    async fn prepare(
        &self,
        request: ChatCompletionRequest,
    ) -> Result<(Prompt, GenerateParams), ApiError> {
        let mut request = validation::validate(request, &self.chat)?;
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
            return Ok((Prompt::Messages(request.messages), request.params));
        }
        let inference = compare.unwrap_or_else(|| Arc::clone(&self.inference));
        let prompt_ids = self.prompt_ids(&inference, &request).await?;
        validation::fit_length(prompt_ids.len(), &mut request, &self.limits)?;
        Ok((Prompt::Ids(prompt_ids, inference), request.params))
    }

    async fn prompt_ids(
        &self,
        inference: &Inference,
        request: &ValidRequest,
    ) -> Result<Vec<u32>, ApiError> {
        let prompter = inference.prompter()?;
        let (messages, params) = (request.messages.clone(), request.params.clone());
        // A long conversation takes milliseconds to tokenise: not on the async threads.
        tokio::task::spawn_blocking(move || prompter.prompt_ids(&messages, &params))
            .await
            .map_err(|error| ApiError::LoadFailed(format!("tokenising crashed: {error}")))?
            .map_err(ApiError::from)
    }
}

async fn health(State(api): State<Arc<Api>>) -> Response {
    let health = match &api.remote {
        Some(remote) => match remote.health().await {
            Ok(model) => Health::Ok {
                model,
                architecture: None,
                quantization: None,
                backend: "remote".into(),
                device: wire::device::REMOTE.into(),
            },
            Err(message) => Health::Error { message },
        },
        None => match api.inference.state() {
            ModelState::Loading { done, total } => Health::Loading {
                progress: Some(LoadProgress { done, total }),
            },
            ModelState::Ready {
                name, info, device, ..
            } => Health::Ok {
                model: name,
                architecture: Some(info.architecture),
                quantization: Some(info.quantization),
                backend: "candle".into(),
                device: device.into(),
            },
            ModelState::Failed(message) => Health::Error { message },
            ModelState::Disabled => Health::Disabled {
                message: ApiError::NoServerModel.to_string(),
            },
        },
    };
    let status = match health {
        Health::Ok { .. } => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(health)).into_response()
}

async fn models(State(api): State<Arc<Api>>) -> Json<ModelList> {
    let name = match (&api.remote, api.inference.state()) {
        (Some(remote), _) => remote.health().await.ok(),
        (None, ModelState::Ready { name, .. }) => Some(name),
        (None, _) => None,
    };
    Json(ModelList::new(name))
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
    request: Result<Json<ChatCompletionRequest>, JsonRejection>,
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

/// What every chunk of one answer shares.
#[derive(Clone)]
struct Answer {
    id: String,
    model: String,
    device: &'static str,
}

impl Answer {
    fn chunk(&self, delta: Delta) -> ChatCompletionChunk {
        ChatCompletionChunk::new(&self.id, unix_time_seconds(), &self.model, delta)
    }

    fn text(&self, text: &str) -> String {
        event_data(&self.chunk(Delta {
            content: Some(text.to_owned()),
            ..Delta::default()
        }))
    }

    /// A chunk like any other, so OpenAI clients read past it; the page shows it.
    fn waiting(&self, position: usize, estimated_wait_seconds: Option<f64>) -> String {
        let mut chunk = self.chunk(Delta::default());
        chunk.queue = Some(QueueStatus {
            position: position as u64,
            estimated_wait_seconds: estimated_wait_seconds.map(f64::ceil),
        });
        event_data(&chunk)
    }

    fn last(&self, completion: &Completion) -> String {
        let mut chunk = self.chunk(Delta::default());
        chunk.choices[0].finish_reason = Some(completion.finish_reason.into());
        chunk.usage = Some(completion.usage.into());
        chunk.timings = Some(StreamTimings {
            prefill_ms: completion.timings.prefill_ms,
            decode_tokens_per_second: completion.timings.decode_tokens_per_second,
            device: self.device.into(),
        });
        event_data(&chunk)
    }
}

fn event_data(payload: &impl Serialize) -> String {
    serde_json::to_string(payload).expect("wire types serialise")
}

async fn answer(
    api: &Arc<Api>,
    client: IpAddr,
    request: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = request.map_err(|rejection| match rejection.status() {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            ApiError::InvalidRequest(rejection.body_text())
        }
        status => ApiError::Rejected(status, rejection.body_text()),
    })?;
    let stream = request.stream;
    let (prompt, params) = api.prepare(request).await?;
    let ticket = api.scheduler.admit(client)?;
    let (model, device) = api.model_and_device(&prompt);
    let answer = Answer {
        id: format!("chatcmpl-{}", unix_time_millis()),
        model,
        device,
    };
    if stream {
        Ok(stream_answer(
            Arc::clone(api),
            ticket,
            prompt,
            params,
            answer,
        ))
    } else {
        whole_answer(api, ticket, prompt, params, &answer).await
    }
}

async fn whole_answer(
    api: &Api,
    mut ticket: crate::scheduler::Ticket,
    prompt: Prompt,
    params: GenerateParams,
    answer: &Answer,
) -> Result<Response, ApiError> {
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
    let body = ChatCompletion::new(&answer.id, unix_time_seconds(), &answer.model, &completion);
    Ok(Json(body).into_response())
}

fn stream_answer(
    api: Arc<Api>,
    mut ticket: crate::scheduler::Ticket,
    prompt: Prompt,
    params: GenerateParams,
    answer: Answer,
) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    let _ = sender.send(event_data(&answer.chunk(Delta {
        role: Some(Role::Assistant),
        content: Some(String::new()),
    })));
    tokio::spawn(async move {
        let on_wait = |position: usize, estimated_wait_seconds: Option<f64>| {
            let _ = sender.send(answer.waiting(position, estimated_wait_seconds));
        };
        tokio::select! {
            () = ticket.wait_for_turn(on_wait) => {}
            // Gone while waiting: dropping the ticket gives its place to the next in line.
            () = sender.closed() => return,
        }
        let deltas = sender.clone();
        let texts = answer.clone();
        // A closed channel means the client left: stop generating at the next token.
        let on_delta = move |text: &str| match deltas.send(texts.text(text)) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Cancel,
        };
        let last = match api.generate(prompt, params, on_delta).await {
            Ok(completion) => answer.last(&completion),
            Err(error) => event_data(&error.body()),
        };
        let _ = sender.send(last);
        drop(ticket);
    });
    let events = UnboundedReceiverStream::new(receiver)
        .map(|data| Ok::<_, Infallible>(Event::default().data(data)))
        .chain(futures_util::stream::once(async {
            Ok(Event::default().data(DONE))
        }));
    Sse::new(events).into_response()
}

fn unix_time_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis())
}

fn unix_time_seconds() -> u64 {
    (unix_time_millis() / 1000) as u64
}
