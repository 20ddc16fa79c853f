//! Prometheus metrics for `/metrics`: what the Space is doing and how fast, for whoever runs it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<StatusLabel, Counter>,
    pub prompt_tokens: Counter,
    pub generated_tokens: Counter,
    /// Generations stopped because their client went away.
    pub cancelled: Counter,
    pub queued: Gauge,
    pub running: Gauge,
    pub time_to_first_token: Histogram,
    pub decode_tokens_per_second: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vitrina");
        let requests = Family::<StatusLabel, Counter>::default();
        let (prompt_tokens, generated_tokens, cancelled) =
            (Counter::default(), Counter::default(), Counter::default());
        let (queued, running) = (Gauge::default(), Gauge::default());
        let time_to_first_token = Histogram::new(exponential_buckets(0.05, 2.0, 10));
        let decode_tokens_per_second = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "chat_requests",
            "Chat completion requests, by HTTP status",
            requests.clone(),
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
        Self {
            registry,
            requests,
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
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
