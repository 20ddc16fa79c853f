//! An OpenAI-compatible server elsewhere as the model (`[server] backend = "remote"`): TGI,
//! vLLM, llama-server, an Inference Endpoint or another Vitrina. The queue, limits, metrics and
//! page in front of it stay this server's; the answer streams through, and a visitor who leaves
//! closes the upstream stream too, which stops generation there.

use std::time::Instant;

use engine::{ChatMessage, Completion, FinishReason, Flow, GenerateParams, Timings, Usage};
use space::Upstream;
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
}

impl RemoteBackend {
    /// The upstream `[server]` describes; its token is read from the environment variable named
    /// there.
    pub fn new(upstream: &Upstream) -> Self {
        let token = upstream
            .token_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok());
        Self {
            url: upstream.url.clone(),
            model: upstream.model.clone(),
            token,
            client: reqwest::Client::new(),
        }
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// The upstream's name for its model, or why it cannot be reached (for `/health`).
    pub async fn health(&self) -> Result<String, String> {
        let response = self
            .request(self.client.get(format!("{}/models", self.url)))
            .send()
            .await
            .map_err(|error| format!("{}: {error}", self.url))?;
        if !response.status().is_success() {
            return Err(format!(
                "{}/models answered {}",
                self.url,
                response.status()
            ));
        }
        let models: ModelList = response
            .json()
            .await
            .map_err(|error| format!("{}/models: {error}", self.url))?;
        Ok(self
            .model
            .clone()
            .or_else(|| models.data.into_iter().next().map(|model| model.id))
            .unwrap_or_else(|| "remote".into()))
    }

    /// Streams the upstream's answer to `on_delta`; `Flow::Cancel` drops the connection.
    pub async fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        mut on_delta: impl FnMut(&str) -> Flow,
    ) -> Result<Completion, ApiError> {
        let started = Instant::now();
        let mut response = self.open_stream(messages, params).await?;
        let mut reading = Reading::default();
        let mut decoder = SseDecoder::new();
        'stream: while let Some(bytes) = response
            .chunk()
            .await
            .map_err(|error| self.unreachable(error))?
        {
            for data in decoder.push(&bytes) {
                if data == DONE {
                    break 'stream;
                }
                let chunk = match serde_json::from_str::<StreamData>(&data) {
                    Ok(StreamData::Chunk(chunk)) => chunk,
                    Ok(StreamData::Error(body)) => {
                        return Err(ApiError::Upstream(format!(
                            "{}: {}",
                            self.url, body.error.message
                        )));
                    }
                    Err(error) => {
                        return Err(ApiError::Upstream(format!(
                            "unreadable chunk from {}: {error}",
                            self.url
                        )));
                    }
                };
                if let Some(delta) = reading.read(&chunk)
                    && on_delta(delta) == Flow::Cancel
                {
                    // Dropping the response closes the connection: the upstream stops.
                    reading.finish_reason = FinishReason::Cancelled;
                    break 'stream;
                }
            }
        }
        Ok(reading.completion(started))
    }

    fn unreachable(&self, error: reqwest::Error) -> ApiError {
        ApiError::Upstream(format!("{}: {error}", self.url))
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
        };
        let response = self
            .request(self.client.post(format!("{}/chat/completions", self.url)))
            .json(&body)
            .send()
            .await
            .map_err(|error| self.unreachable(error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = ErrorBody::message_in(&text).unwrap_or(text);
        Err(ApiError::Upstream(format!(
            "{} answered {status}: {message}",
            self.url
        )))
    }
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
