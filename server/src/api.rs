//! The OpenAI-compatible API: `/v1/chat/completions` (JSON or SSE stream), `/v1/models`, and
//! `/health` for the Space's load balancer and the page.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::{ChatMessage, Completion, Flow, GenerateParams, Role};
use futures_util::StreamExt;
use serde::Serialize;
use space::{ChatDefaults, Limits, ServerBackend};
use tokio::sync::Semaphore;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use wire::feedback::{AnswerClaim, WireMessage};
use wire::health::{Health, LoadProgress};
use wire::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, DONE, Delta, ModelList,
    QueueStatus, StreamTimings,
};

use crate::client::Visitor;
use crate::error::ApiError;
use crate::inference::{Inference, ModelState};
use crate::receipts::Receipts;
use crate::remote::RemoteBackend;
use crate::scheduler::{Priority, Scheduler, Ticket};
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
    /// Requests being parsed or tokenised at once: one per core, however many arrive.
    reading: Semaphore,
    /// Signs every answer, so that feedback can name only answers this Space gave.
    pub receipts: Arc<Receipts>,
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
        receipts: Arc<Receipts>,
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
            reading: Semaphore::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
            receipts,
            chat,
            limits,
        })
    }

    /// The line in front of the model, which remakes of browser answers wait in too.
    pub fn scheduler(&self) -> Arc<Scheduler> {
        Arc::clone(&self.scheduler)
    }

    /// Generates `visitor`'s answer once its turn has come; `place` is held until the work
    /// ends.
    async fn generate(
        &self,
        prompt: Prompt,
        params: GenerateParams,
        mut place: Ticket,
        visitor: IpAddr,
        cancel: CancellationToken,
        on_delta: impl FnMut(&str) -> Flow + Send + 'static,
    ) -> Result<Completion, ApiError> {
        match (prompt, &self.remote) {
            (Prompt::Messages(messages), Some(remote)) => {
                let completion = remote.generate(&messages, &params, &cancel, on_delta).await;
                if let Ok(completion) = &completion {
                    place.settle(completion.usage.tokens_spent());
                }
                drop(place);
                let completion = completion?;
                self.inference.record(&completion);
                Ok(completion)
            }
            (Prompt::Ids(ids, inference), _) => {
                inference
                    .generate(ids, params, place, prefix_owner(visitor), cancel, on_delta)
                    .await
            }
            (Prompt::Messages(_), None) => {
                unreachable!("messages are kept only for a remote backend")
            }
        }
    }

    /// The model's name, where it runs and its file's sha256 (empty for a remote backend),
    /// for the answers.
    fn answering_model(&self, prompt: &Prompt) -> AnsweringModel {
        match prompt {
            Prompt::Messages(_) => AnsweringModel {
                name: "remote".into(),
                quantization: String::new(),
                device: wire::device::REMOTE,
                sha256: String::new(),
            },
            Prompt::Ids(_, inference) => match inference.state() {
                ModelState::Ready {
                    name,
                    info,
                    place,
                    file,
                    ..
                } => AnsweringModel {
                    name,
                    quantization: info.quantization,
                    device: place.device(),
                    sha256: file.sha256,
                },
                _ => AnsweringModel {
                    name: String::new(),
                    quantization: String::new(),
                    device: wire::device::CPU,
                    sha256: String::new(),
                },
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
    let inference = Arc::clone(&api.inference);
    crate::error::count_refusals(
        Router::new()
            .route("/health", get(health))
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat_completions))
            .route("/metrics", get(metrics))
            .with_state(api),
        inference,
    )
}

impl crate::client::TrustsProxies for Api {
    fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.limits.trusted_proxies
    }
}

impl Api {
    /// Checks a request against the model and `[limits]`, before it takes a place in the line:
    /// its prompt ids and generation settings.
    async fn prepare(
        &self,
        request: ChatCompletionRequest,
    ) -> Result<(Prompt, GenerateParams, Vec<WireMessage>), ApiError> {
        let mut request = validation::validate(request, &self.chat, &self.limits)?;
        // What the client sent is what its feedback will quote: the receipt covers that.
        let asked = request.messages.iter().map(WireMessage::from).collect();
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
            return Ok((Prompt::Messages(request.messages), request.params, asked));
        }
        let inference = compare.unwrap_or_else(|| Arc::clone(&self.inference));
        let prompt_ids = self.prompt_ids(&inference, &request).await?;
        validation::fit_length(prompt_ids.len(), &mut request, &self.limits)?;
        Ok((Prompt::Ids(prompt_ids, inference), request.params, asked))
    }

    /// The request in a body: read off the async threads, one per core at most, as a
    /// megabytes-long body takes milliseconds.
    async fn parse(&self, body: Bytes) -> Result<ChatCompletionRequest, ApiError> {
        let _core = self.reading.acquire().await.map_err(|_| closed_pool())?;
        let parsed =
            tokio::task::spawn_blocking(move || Json::<ChatCompletionRequest>::from_bytes(&body))
                .await
                .map_err(|error| {
                    ApiError::GenerationFailed(format!("reading the request crashed: {error}"))
                })?;
        let Json(request) = parsed.map_err(|rejection| match rejection.status() {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                ApiError::InvalidRequest(rejection.body_text())
            }
            status => ApiError::Rejected(status, rejection.body_text()),
        })?;
        Ok(request)
    }

    async fn prompt_ids(
        &self,
        inference: &Inference,
        request: &ValidRequest,
    ) -> Result<Vec<u32>, ApiError> {
        let prompter = inference.prompter()?;
        let (messages, params) = (request.messages.clone(), request.params.clone());
        // A long conversation takes milliseconds to tokenise: not on the async threads, and
        // never on more threads than there are cores, whatever the crowd.
        let _core = self.reading.acquire().await.map_err(|_| closed_pool())?;
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
                gpu: None,
            },
            Err(message) => Health::Error { message },
        },
        None => match api.inference.state() {
            ModelState::Loading { done, total } => Health::Loading {
                progress: Some(LoadProgress { done, total }),
            },
            ModelState::Ready {
                name, info, place, ..
            } => Health::Ok {
                model: name,
                architecture: Some(info.architecture),
                quantization: Some(info.quantization),
                backend: "candle".into(),
                device: place.device().into(),
                gpu: place.gpu,
            },
            ModelState::Failed(message) => Health::Error { message },
            ModelState::Restarting(reason) => Health::Restarting {
                message: format!(
                    "the model's thread stopped ({reason}); the model is being loaded again"
                ),
            },
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
    Visitor(client): Visitor,
    headers: HeaderMap,
    request: Result<Bytes, BytesRejection>,
) -> Response {
    let answered = match validation::require_json(&headers) {
        Ok(()) => answer(&api, client, request).await,
        Err(refusal) => Err(refusal),
    };
    let response = match answered {
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

/// The model that writes an answer, as the answer names it.
struct AnsweringModel {
    name: String,
    /// The file's (`Q4_K_M`…); empty for a remote backend.
    quantization: String,
    device: &'static str,
    sha256: String,
}

/// What every chunk of one answer shares.
#[derive(Clone)]
struct Answer {
    id: String,
    model: String,
    quantization: String,
    device: &'static str,
    claim: Arc<Claim>,
}

/// What an answer's receipt vouches for, but the answer's text (see [`AnswerClaim`]).
struct Claim {
    messages: Vec<WireMessage>,
    sha256: String,
    params: GenerateParams,
}

impl Claim {
    fn receipt(&self, receipts: &Receipts, answer: &str) -> String {
        receipts.sign(&AnswerClaim::of_answer(
            &self.messages,
            answer,
            &self.sha256,
            &self.params,
        ))
    }
}

impl Answer {
    fn chunk(&self, delta: Delta) -> ChatCompletionChunk {
        ChatCompletionChunk::new(&self.id, unix_time_seconds(), &self.model, delta)
    }

    /// A piece of the answer as a chunk: thinking as `reasoning_content`, the end of it as an
    /// empty `content` (so that the page puts the answer back together as it was generated).
    fn piece(&self, piece: wire::reasoning::Piece) -> String {
        let delta = match piece {
            wire::reasoning::Piece::Reasoning(text) => Delta {
                reasoning_content: Some(text),
                ..Delta::default()
            },
            wire::reasoning::Piece::Closed => Delta {
                content: Some(String::new()),
                ..Delta::default()
            },
            wire::reasoning::Piece::Content(text) => Delta {
                content: Some(text),
                ..Delta::default()
            },
        };
        event_data(&self.chunk(delta))
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

    fn last(&self, completion: &Completion, receipts: &Receipts) -> String {
        let mut chunk = self.chunk(Delta::default());
        chunk.receipt = Some(self.claim.receipt(receipts, &completion.text));
        chunk.choices[0].finish_reason = Some(completion.finish_reason.into());
        chunk.usage = Some(completion.usage.into());
        chunk.timings = Some(StreamTimings {
            prefill_ms: completion.timings.prefill_ms,
            decode_tokens_per_second: completion.timings.decode_tokens_per_second,
            device: self.device.into(),
            quantization: self.quantization.clone(),
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
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body =
        body.map_err(|rejection| ApiError::Rejected(rejection.status(), rejection.body_text()))?;
    // The visitor's limits and the line first: a request that may not run costs neither
    // parsing nor tokenising, and one refused for what it holds still counts against its
    // visitor.
    let mut ticket = api.scheduler.admit(client, Priority::Chat)?;
    validation::check_body_size(body.len(), &api.limits)?;
    let request = api.parse(body).await?;
    let stream = request.stream;
    let (prompt, params, asked) = api.prepare(request).await?;
    let prompt_tokens = match &prompt {
        Prompt::Ids(ids, _) => ids.len(),
        // A remote backend counts them itself; its answer's usage is charged when it ends.
        Prompt::Messages(_) => 0,
    };
    ticket.reserve_tokens(prompt_tokens + params.max_tokens)?;
    let model = api.answering_model(&prompt);
    let answer = Answer {
        id: format!("chatcmpl-{}", unix_time_millis()),
        model: model.name,
        quantization: model.quantization,
        device: model.device,
        claim: Arc::new(Claim {
            messages: asked,
            sha256: model.sha256,
            params: params.clone(),
        }),
    };
    let asked = Asked {
        ticket,
        prompt,
        params,
        visitor: client,
    };
    if stream {
        Ok(stream_answer(Arc::clone(api), asked, answer))
    } else {
        whole_answer(api, asked, &answer).await
    }
}

/// A request admitted and checked: its place in the line, what the model reads and how it
/// answers, for whom.
struct Asked {
    ticket: Ticket,
    prompt: Prompt,
    params: GenerateParams,
    visitor: IpAddr,
}

/// The prefix cache's owner for `visitor`'s conversations (IPv4 as IPv6-mapped, so that one
/// number names either).
fn prefix_owner(visitor: IpAddr) -> engine::Owner {
    let address = match visitor {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    engine::Owner::Visitor(u128::from(address))
}

/// Waits for the request's turn and generates its answer, unless `cancel` comes first: a
/// visitor who leaves while waiting gives the place back at once, and one who leaves while
/// answered stops the model at its next step (see [`crate::batches`]).
async fn run_answer(
    api: Arc<Api>,
    asked: Asked,
    cancel: CancellationToken,
    on_wait: impl FnMut(usize, Option<f64>),
    on_delta: impl FnMut(&str) -> Flow + Send + 'static,
) -> Option<Result<Completion, ApiError>> {
    let Asked {
        mut ticket,
        prompt,
        params,
        visitor,
    } = asked;
    tokio::select! {
        () = ticket.wait_for_turn(on_wait) => {}
        () = cancel.cancelled() => return None,
    }
    Some(
        api.generate(prompt, params, ticket, visitor, cancel, on_delta)
            .await,
    )
}

async fn whole_answer(api: &Arc<Api>, asked: Asked, answer: &Answer) -> Result<Response, ApiError> {
    let cancel = CancellationToken::new();
    // The handler is dropped when its client hangs up; the answer runs on a task of its own
    // so that it still ends as a cancelled answer (and is counted as one).
    let _cancel_on_hang_up = cancel.clone().drop_guard();
    let running = tokio::spawn(run_answer(
        Arc::clone(api),
        asked,
        cancel,
        |_, _| {},
        |_: &str| Flow::Continue,
    ));
    let completion = running
        .await
        .map_err(|error| ApiError::GenerationFailed(format!("the answer's task failed: {error}")))?
        .ok_or_else(|| ApiError::GenerationFailed("the answer was cancelled".into()))??;
    let mut body = ChatCompletion::new(&answer.id, unix_time_seconds(), &answer.model, &completion);
    body.receipt = Some(answer.claim.receipt(&api.receipts, &completion.text));
    Ok(Json(body).into_response())
}

fn stream_answer(api: Arc<Api>, asked: Asked, answer: Answer) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    let _ = sender.send(event_data(&answer.chunk(Delta {
        role: Some(Role::Assistant),
        content: Some(String::new()),
        reasoning_content: None,
    })));
    tokio::spawn(async move {
        let cancel = CancellationToken::new();
        let waits = sender.clone();
        let waiting = answer.clone();
        let on_wait = move |position: usize, estimated_wait_seconds: Option<f64>| {
            let _ = waits.send(waiting.waiting(position, estimated_wait_seconds));
        };
        let deltas = sender.clone();
        let texts = answer.clone();
        let splitter = Arc::new(std::sync::Mutex::new(wire::reasoning::Splitter::default()));
        let splitting = Arc::clone(&splitter);
        let on_delta = move |text: &str| {
            let pieces = splitting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(text);
            for piece in pieces {
                if deltas.send(texts.piece(piece)).is_err() {
                    return Flow::Cancel;
                }
            }
            Flow::Continue
        };
        let receipts = Arc::clone(&api.receipts);
        let running = run_answer(api, asked, cancel.clone(), on_wait, on_delta);
        tokio::pin!(running);
        let ended = tokio::select! {
            ended = &mut running => ended,
            // The visitor left: the answer ends at the model's next step, held-back stop text
            // or half-read prompt alike.
            () = sender.closed() => {
                cancel.cancel();
                running.await
            }
        };
        let held = splitter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .finish();
        for piece in held {
            let _ = sender.send(answer.piece(piece));
        }
        let last = match ended {
            Some(Ok(completion)) => answer.last(&completion, &receipts),
            Some(Err(error)) => event_data(&error.body()),
            None => return,
        };
        let _ = sender.send(last);
    });
    let events = UnboundedReceiverStream::new(receiver)
        .map(|data| Ok::<_, Infallible>(Event::default().data(data)))
        .chain(futures_util::stream::once(async {
            Ok(Event::default().data(DONE))
        }));
    Sse::new(events).into_response()
}

fn closed_pool() -> ApiError {
    ApiError::GenerationFailed("the server is shutting down".into())
}

fn unix_time_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis())
}

fn unix_time_seconds() -> u64 {
    (unix_time_millis() / 1000) as u64
}
