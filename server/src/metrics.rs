//! Prometheus metrics for `/metrics`: what the Space is doing and how fast, for whoever runs it.

use prometheus_client::encoding::EncodeLabelSet;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

/// Why a request was refused, in words `ApiError::reason` gives.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<StatusLabel, Counter>,
    /// Every request refused (chat, feedback, exports…), by reason.
    pub refusals: Family<ReasonLabel, Counter>,
    pub prompt_tokens: Counter,
    pub generated_tokens: Counter,
    /// Generations stopped because their client went away.
    pub cancelled: Counter,
    pub queued: Gauge,
    pub running: Gauge,
    pub time_to_first_token: Histogram,
    pub decode_tokens_per_second: Histogram,
    /// Answers whose prompt began with keys and values kept of an earlier one.
    pub prefix_cache_hits: Counter,
    pub reused_prompt_tokens: Counter,
    /// Times the model's thread stopped and was started again with the model loaded anew.
    pub model_restarts: Counter,
    engine: EngineMetrics,
}

/// What the model's thread records of its forward steps.
#[derive(Clone)]
pub struct EngineMetrics {
    /// Answers in each forward step.
    pub batch_size: Histogram,
    /// Seconds spent in forward steps, and the tokens they chose (every answer together):
    /// their ratio is the throughput of the whole batch.
    pub engine_busy_seconds: Counter<f64, AtomicU64>,
    pub engine_tokens: Counter,
    pub prefix_cache_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vitrina");
        let requests = Family::<StatusLabel, Counter>::default();
        let refusals = Family::<ReasonLabel, Counter>::default();
        let (prompt_tokens, generated_tokens, cancelled) =
            (Counter::default(), Counter::default(), Counter::default());
        let (queued, running) = (Gauge::default(), Gauge::default());
        let time_to_first_token = Histogram::new(exponential_buckets(0.05, 2.0, 10));
        let decode_tokens_per_second = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let (prefix_cache_hits, reused_prompt_tokens) = (Counter::default(), Counter::default());
        let model_restarts = Counter::default();
        let engine = EngineMetrics {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            engine_busy_seconds: Counter::default(),
            engine_tokens: Counter::default(),
            prefix_cache_bytes: Gauge::default(),
        };
        registry.register(
            "chat_requests",
            "Chat completion requests, by HTTP status",
            requests.clone(),
        );
        registry.register(
            "refused_requests",
            "Requests refused, by reason (a limit's name, invalid, unauthorized…)",
            refusals.clone(),
        );
        registry.register(
            "prompt_tokens",
            "Prompt tokens processed",
            prompt_tokens.clone(),
        );
        registry.register(
            "generated_tokens",
            "Tokens generated",
            generated_tokens.clone(),
        );
        registry.register(
            "cancelled_generations",
            "Generations stopped because the client left",
            cancelled.clone(),
        );
        registry.register(
            "queued_requests",
            "Requests waiting for the model",
            queued.clone(),
        );
        registry.register(
            "running_generations",
            "Generations running now",
            running.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Prompt processing time (after the queue)",
            time_to_first_token.clone(),
        );
        registry.register(
            "decode_tokens_per_second",
            "Decoding speed per generation",
            decode_tokens_per_second.clone(),
        );
        registry.register(
            "prefix_cache_hits",
            "Answers whose prompt began with kept keys and values (an earlier turn, a shared system prompt)",
            prefix_cache_hits.clone(),
        );
        registry.register(
            "reused_prompt_tokens",
            "Prompt tokens not read again thanks to the prefix cache",
            reused_prompt_tokens.clone(),
        );
        registry.register(
            "model_restarts",
            "Times the model's thread stopped and the model was loaded again",
            model_restarts.clone(),
        );
        registry.register(
            "prefix_cache_bytes",
            "Memory held by kept keys and values",
            engine.prefix_cache_bytes.clone(),
        );
        registry.register(
            "batch_size",
            "Answers decoded together in each forward step",
            engine.batch_size.clone(),
        );
        registry.register(
            "engine_busy_seconds",
            "Seconds the model spent in forward steps",
            engine.engine_busy_seconds.clone(),
        );
        registry.register(
            "engine_tokens",
            "Tokens chosen by forward steps, every answer together",
            engine.engine_tokens.clone(),
        );
        Self {
            registry,
            prefix_cache_hits,
            reused_prompt_tokens,
            model_restarts,
            engine,
            requests,
            refusals,
            prompt_tokens,
            generated_tokens,
            cancelled,
            queued,
            running,
            time_to_first_token,
            decode_tokens_per_second,
        }
    }
}

impl Metrics {
    /// Handles for the model's thread, which outlives nothing of this struct.
    pub fn engine(&self) -> EngineMetrics {
        self.engine.clone()
    }

    /// Tokens per second of the whole batch while the model was busy, once it has worked.
    pub fn aggregate_tokens_per_second(&self) -> Option<f64> {
        let seconds = self.engine.engine_busy_seconds.get();
        (seconds > 0.0).then(|| self.engine.engine_tokens.get() as f64 / seconds)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
