//! An OpenAI-compatible server elsewhere as the model (`[server] backend = "remote"`): TGI,
//! vLLM, llama-server, an Inference Endpoint or another Vitrina. The queue, limits, metrics and
//! page in front of it stay this server's; the answer streams through, and a visitor who leaves
//! closes the upstream stream too, which stops generation there.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::{ChatMessage, Completion, FinishReason, Flow, GenerateParams, Timings, Usage};
use space::Upstream;
use tokio_util::sync::CancellationToken;
use wire::openai::{
    self, ChatCompletionChunk, ChatCompletionRequest, DONE, ErrorBody, ModelList, Stop, StreamData,
    StreamOptions,
};
use wire::sse::SseDecoder;

use crate::error::ApiError;

pub struct RemoteBackend {
    url: String,
    model: Option<String>,
    token: Option<String>,
    client: reqwest::Client,
    /// The last `/models` answer: the page and load balancers poll `/health`, which must not
    /// cost the upstream a request each time.
    health: Mutex<Option<(Instant, Result<String, String>)>>,
}

/// How long one look at the upstream's health serves `/health`.
const HEALTH_KEPT: Duration = Duration::from_secs(5);

impl RemoteBackend {
    /// The upstream `[server]` describes; its token is read from the environment variable named
    /// there.
    pub fn new(upstream: &Upstream) -> Self {
        let token = upstream
            .token_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok());
        let timeouts = upstream.timeouts;
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .timeout(timeouts.whole)
            .build()
            .unwrap_or_else(|error| {
                tracing::error!(%error, "the remote backend's client could not be built with its timeouts");
                reqwest::Client::new()
            });
        Self {
            url: upstream.url.clone(),
            model: upstream.model.clone(),
            token,
            client,
            health: Mutex::new(None),
        }
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// The upstream's name for its model, or that it cannot be reached (for `/health`; the
    /// reason goes to the log, not to visitors).
    pub async fn health(&self) -> Result<String, String> {
        let kept = self
            .health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some((at, health)) = kept
            && at.elapsed() < HEALTH_KEPT
        {
            return health;
        }
        let health = self.look_at_health().await.map_err(|detail| {
            tracing::warn!(url = %self.url, %detail, "the remote backend is not healthy");
            "the model server behind this Space cannot be reached; the Space's log has the detail"
                .to_owned()
        });
        *self
            .health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((Instant::now(), health.clone()));
        health
    }

    async fn look_at_health(&self) -> Result<String, String> {
        let response = self
            .request(self.client.get(format!("{}/models", self.url)))
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("/models answered {}", response.status()));
        }
        let models: ModelList = response
            .json()
            .await
            .map_err(|error| format!("/models: {error}"))?;
        Ok(self
            .model
            .clone()
            .or_else(|| models.data.into_iter().next().map(|model| model.id))
            .unwrap_or_else(|| "remote".into()))
    }

    /// Streams the upstream's answer to `on_delta`; `Flow::Cancel` or `cancel` drops the
    /// connection, which stops the upstream, even while it has said nothing yet.
    pub async fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        cancel: &CancellationToken,
        mut on_delta: impl FnMut(&str) -> Flow,
    ) -> Result<Completion, ApiError> {
        let started = Instant::now();
        let mut reading = Reading::default();
        let opened = tokio::select! {
            opened = self.open_stream(messages, params) => opened?,
            () = cancel.cancelled() => return Ok(reading.cancelled(started)),
        };
        let mut response = opened;
        let mut decoder = SseDecoder::new();
        'stream: loop {
            let read = tokio::select! {
                read = response.chunk() => read.map_err(|error| self.failed(error))?,
                () = cancel.cancelled() => return Ok(reading.cancelled(started)),
            };
            let Some(bytes) = read else { break };
            for data in decoder.push(&bytes) {
                if data == DONE {
                    break 'stream;
                }
                let chunk = match serde_json::from_str::<StreamData>(&data) {
                    Ok(StreamData::Chunk(chunk)) => chunk,
                    Ok(StreamData::Error(body)) => {
                        return Err(self.failed(format!("error event: {}", body.error.message)));
                    }
                    Err(error) => {
                        return Err(self.failed(format!("unreadable chunk: {error}")));
                    }
                };
                if let Some(delta) = reading.read(&chunk)
                    && on_delta(delta) == Flow::Cancel
                {
                    // Dropping the response closes the connection: the upstream stops.
                    return Ok(reading.cancelled(started));
                }
            }
        }
        Ok(reading.completion(started))
    }

    /// What the visitor is told of a failed upstream: a request id; the log gets the detail
    /// under the same id.
    fn failed(&self, detail: impl UpstreamFailure) -> ApiError {
        let request_id = request_id();
        let timed_out = detail.timed_out();
        tracing::warn!(%request_id, url = %self.url, detail = %detail.describe(), timed_out, "the remote backend failed");
        if timed_out {
            ApiError::UpstreamTimeout { request_id }
        } else {
            ApiError::Upstream { request_id }
        }
    }

    /// Sends the request and checks that a stream is coming.
    async fn open_stream(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
    ) -> Result<reqwest::Response, ApiError> {
        let sampling = &params.sampling;
        let body = ChatCompletionRequest {
            model: self.model.clone(),
            messages: messages.to_vec(),
            temperature: Some(sampling.temperature),
            top_p: Some(sampling.top_p),
            max_tokens: Some(params.max_tokens as u64),
            stop: (!params.stop.is_empty()).then(|| Stop::Many(params.stop.clone())),
            seed: Some(sampling.seed),
            ignore_eos: params.ignore_eos,
            stream: true,
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
            other: serde_json::Map::new(),
        };
        let response = self
            .request(self.client.post(format!("{}/chat/completions", self.url)))
            .json(&body)
            .send()
            .await
            .map_err(|error| self.failed(error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = ErrorBody::message_in(&text).unwrap_or(text);
        Err(self.failed(format!("answered {status}: {message}")))
    }
}

/// Why an upstream request failed, as the log records it.
trait UpstreamFailure {
    fn describe(&self) -> String;
    fn timed_out(&self) -> bool;
}

impl UpstreamFailure for reqwest::Error {
    fn describe(&self) -> String {
        // The chain: reqwest's own words are often only "error sending request".
        let mut words = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            words.push_str(": ");
            words.push_str(&cause.to_string());
            source = cause.source();
        }
        words
    }

    fn timed_out(&self) -> bool {
        self.is_timeout()
    }
}

impl UpstreamFailure for String {
    fn describe(&self) -> String {
        self.clone()
    }

    fn timed_out(&self) -> bool {
        false
    }
}

/// A short random id that a visitor can quote and the log can be searched for.
fn request_id() -> String {
    let mut bytes = [0u8; 8];
    // An id that is not random is still an id: the time keeps it useful if the OS refuses.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64))
        .to_le_bytes();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What the chunks of an upstream answer have said so far.
#[derive(Default)]
struct Reading {
    text: String,
    first_token_at: Option<Instant>,
    deltas: usize,
    usage: Option<openai::Usage>,
    finish_reason: FinishReason,
}

impl Reading {
    /// Takes in one chunk; its text, if it has any.
    fn read<'chunk>(&mut self, chunk: &'chunk ChatCompletionChunk) -> Option<&'chunk str> {
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        if chunk.finish_reason() == Some(openai::FinishReason::Length) {
            self.finish_reason = FinishReason::Length;
        }
        let delta = chunk.text()?;
        self.first_token_at.get_or_insert_with(Instant::now);
        self.deltas += 1;
        self.text.push_str(delta);
        Some(delta)
    }

    /// The answer so far, of a visitor who left.
    fn cancelled(mut self, started: Instant) -> Completion {
        self.finish_reason = FinishReason::Cancelled;
        self.completion(started)
    }

    fn completion(self, started: Instant) -> Completion {
        let (prompt_tokens, completion_tokens, cached_tokens) =
            self.usage.map_or((0, self.deltas, 0), |usage| {
                (
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.cached_tokens(),
                )
            });
        let prefill_seconds = self
            .first_token_at
            .map_or(0.0, |at| (at - started).as_secs_f64());
        let decode_seconds = self
            .first_token_at
            .map_or(0.0, |at| at.elapsed().as_secs_f64());
        let per_second = |tokens: usize, seconds: f64| {
            if seconds > 0.0 {
                tokens as f64 / seconds
            } else {
                0.0
            }
        };
        Completion {
            text: self.text,
            finish_reason: self.finish_reason,
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            },
            timings: Timings {
                prefill_ms: prefill_seconds * 1000.0,
                prefill_tokens_per_second: per_second(prompt_tokens, prefill_seconds),
                decode_tokens_per_second: per_second(
                    completion_tokens.saturating_sub(1),
                    decode_seconds,
                ),
            },
        }
    }
}
