//! An OpenAI-compatible server elsewhere as the model (`[server] backend = "remote"`): TGI,
//! vLLM, llama-server, an Inference Endpoint or another Vitrina. The queue, limits, metrics and
//! page in front of it stay this server's; the answer streams through, and a visitor who leaves
//! closes the upstream stream too, which stops generation there.

use std::time::Instant;

use app::space::Upstream;
use engine::{ChatMessage, Completion, FinishReason, Flow, GenerateParams, Timings, Usage};
use serde_json::{Value, json};

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
        let models: Value = response
            .json()
            .await
            .map_err(|error| format!("{}/models: {error}", self.url))?;
        Ok(self
            .model
            .clone()
            .or_else(|| models["data"][0]["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "remote".into()))
    }

    /// Streams the upstream's answer to `on_delta`; `Flow::Cancel` drops the connection.
    pub async fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        mut on_delta: impl FnMut(&str) -> Flow,
    ) -> Result<Completion, ApiError> {
        let sampling = &params.sampling;
        let mut body = json!({
            "messages": messages, "stream": true, "stream_options": {"include_usage": true},
            "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed, "max_tokens": params.max_tokens,
        });
        if !params.stop.is_empty() {
            body["stop"] = json!(params.stop);
        }
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        let started = Instant::now();
        let unreachable =
            |error: reqwest::Error| ApiError::Upstream(format!("{}: {error}", self.url));
        let mut response = self
            .request(self.client.post(format!("{}/chat/completions", self.url)))
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|error| error["error"]["message"].as_str().map(str::to_owned));
            return Err(ApiError::Upstream(format!(
                "{} answered {status}: {}",
                self.url,
                message.unwrap_or(text)
            )));
        }

        let mut text = String::new();
        let mut pending = String::new();
        let mut first_token_at = None;
        let mut deltas = 0usize;
        let mut usage = None;
        let mut finish_reason = FinishReason::Stop;
        'stream: while let Some(bytes) = response.chunk().await.map_err(unreachable)? {
            pending.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                for data in event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim)
                {
                    if data == "[DONE]" {
                        break 'stream;
                    }
                    let chunk: Value = serde_json::from_str(data).map_err(|error| {
                        ApiError::Upstream(format!("unreadable chunk from {}: {error}", self.url))
                    })?;
                    if let Some(message) = chunk["error"]["message"].as_str() {
                        return Err(ApiError::Upstream(format!("{}: {message}", self.url)));
                    }
                    if let Some(counted) = chunk["usage"]["completion_tokens"].as_u64() {
                        usage = Some((
                            chunk["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                            counted,
                        ));
                    }
                    if chunk["choices"][0]["finish_reason"].as_str() == Some("length") {
                        finish_reason = FinishReason::Length;
                    }
                    let Some(delta) = chunk["choices"][0]["delta"]["content"]
                        .as_str()
                        .filter(|delta| !delta.is_empty())
                    else {
                        continue;
                    };
                    first_token_at.get_or_insert_with(Instant::now);
                    deltas += 1;
                    text.push_str(delta);
                    if on_delta(delta) == Flow::Cancel {
                        // Dropping the response closes the connection: the upstream stops.
                        finish_reason = FinishReason::Cancelled;
                        break 'stream;
                    }
                }
            }
        }
        let (prompt_tokens, completion_tokens) = usage.unwrap_or((0, deltas as u64));
        let prefill_seconds =
            first_token_at.map_or(0.0, |at: Instant| (at - started).as_secs_f64());
        let decode_seconds = first_token_at.map_or(0.0, |at| at.elapsed().as_secs_f64());
        Ok(Completion {
            text,
            finish_reason,
            usage: Usage {
                prompt_tokens: prompt_tokens as usize,
                completion_tokens: completion_tokens as usize,
            },
            timings: Timings {
                prefill_ms: prefill_seconds * 1000.0,
                prefill_tokens_per_second: if prefill_seconds > 0.0 {
                    prompt_tokens as f64 / prefill_seconds
                } else {
                    0.0
                },
                decode_tokens_per_second: if decode_seconds > 0.0 {
                    completion_tokens.saturating_sub(1) as f64 / decode_seconds
                } else {
                    0.0
                },
            },
        })
    }
}
