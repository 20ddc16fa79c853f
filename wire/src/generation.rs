//! What the engine is asked and what it answers, wherever it runs: the server's API builds a
//! [`GenerateParams`] from a request, the chat page sends one to the browser worker, and both
//! get a [`Completion`] back.

use serde::{Deserialize, Serialize};

use crate::limits::{self, OutOfRange};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 picks the most likely token every time (greedy).
    pub temperature: f64,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probabilities add up to p; 1 keeps all.
    pub top_p: f64,
    /// Drop tokens less likely than min_p × the most likely one; 0 keeps all.
    pub min_p: f64,
    /// Divides the logits of recently generated tokens; 1 is no penalty.
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repetition_window: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: limits::TEMPERATURE.default,
            top_k: 40,
            top_p: limits::TOP_P.default,
            min_p: 0.05,
            repetition_penalty: 1.1,
            repetition_window: 64,
            seed: 299_792_458,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), OutOfRange> {
        limits::TEMPERATURE.check(self.temperature)?;
        limits::TOP_P.check(self.top_p)?;
        let out_of_range = |name, found: String, allowed: &str| {
            Err(OutOfRange {
                name,
                found,
                allowed: allowed.to_owned(),
            })
        };
        if !(0.0..1.0).contains(&self.min_p) {
            return out_of_range("min_p", self.min_p.to_string(), "at least 0, below 1");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return out_of_range(
                "repetition_penalty",
                self.repetition_penalty.to_string(),
                "a positive number (1 means no penalty)",
            );
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateParams {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// Generation ends before any of these texts; they never reach the caller.
    pub stop: Vec<String>,
    /// Keep going past end-of-turn tokens (benchmarks need a fixed number of tokens).
    pub ignore_eos: bool,
    pub overflow: Overflow,
}

impl GenerateParams {
    /// What the chat page asks for with its settings: the sampling settings it does not show
    /// are the engine's defaults. The browser worker answers with these, and the server makes
    /// a browser answer again with the same to vouch for it.
    pub fn chat(temperature: f64, top_p: f64, max_tokens: u32, seed: u64) -> Self {
        Self {
            sampling: SamplingParams {
                temperature,
                top_p,
                seed,
                ..SamplingParams::default()
            },
            max_tokens: max_tokens as usize,
            ..Self::default()
        }
    }
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            sampling: SamplingParams::default(),
            max_tokens: limits::MAX_TOKENS.default as usize,
            stop: Vec::new(),
            ignore_eos: false,
            overflow: Overflow::Error,
        }
    }
}

/// What to do with a conversation longer than the context window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Refuse (the engine's `ContextOverflow` error).
    #[default]
    Error,
    /// Drop the oldest turns (never the system prompt nor the last message) until the prompt
    /// leaves room for `max_tokens` (at most half the window).
    DropOldestTurns,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string.
    #[default]
    Stop,
    /// `max_tokens` or the end of the context window.
    Length,
    /// The caller asked to stop.
    Cancelled,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens found already computed (an earlier turn of the conversation, or the
    /// system prompt it shares with others) and not read again.
    #[serde(default)]
    pub cached_tokens: usize,
}

impl Usage {
    /// The tokens the model really read and wrote: what a visitor's token budget is charged.
    pub fn tokens_spent(&self) -> usize {
        self.prompt_tokens.saturating_sub(self.cached_tokens) + self.completion_tokens
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub prefill_ms: f64,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
}

/// What a loaded model is, for health checks, logs and benchmarks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `general.architecture` as the GGUF writes it (`qwen2`, `llama`…).
    pub architecture: String,
    /// The file's quantisation (`Q4_K_M`, `Q4_1`…).
    pub quantization: String,
    /// Weights, counted over every tensor in the file.
    pub parameters: u64,
    /// How many tensors of each storage type (`Q4K`, `F32`…), most first.
    pub tensor_types: Vec<(String, usize)>,
    /// The longest conversation, prompt and answer together, in tokens.
    pub context_length: usize,
}
