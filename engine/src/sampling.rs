//! How the next token is chosen: temperature, top-k, top-p, min-p, repetition penalty, seed.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

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
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
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

    pub fn validate(&self) -> Result<()> {
        let invalid = |name, problem: &str| {
            Err(EngineError::InvalidParameter {
                name,
                problem: problem.to_owned(),
            })
        };
        if !(0.0..=5.0).contains(&self.temperature) {
            return invalid("temperature", "must be between 0 (greedy) and 5");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return invalid("top_p", "must be greater than 0 and at most 1");
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return invalid("min_p", "must be at least 0 and less than 1");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return invalid(
                "repetition_penalty",
                "must be a positive number (1 means no penalty)",
            );
        }
        Ok(())
    }
}

pub struct Sampler {
    processor: LogitsProcessor,
    params: SamplingParams,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let temperature = params.temperature;
        let sampling = if temperature == 0.0 {
            Sampling::ArgMax
        } else {
            match (params.top_k, params.top_p < 1.0) {
                (0, false) => Sampling::All { temperature },
                (0, true) => Sampling::TopP {
                    p: params.top_p,
                    temperature,
                },
                (k, false) => Sampling::TopK { k, temperature },
                (k, true) => Sampling::TopKThenTopP {
                    k,
                    p: params.top_p,
                    temperature,
                },
            }
        };
        Ok(Self {
            processor: LogitsProcessor::from_sampling(params.seed, sampling),
            params,
        })
    }

    /// Picks the next token from `logits`, given the tokens generated so far.
    pub fn next_token(&mut self, logits: &Tensor, generated: &[u32]) -> Result<u32> {
        let logits = if self.params.repetition_penalty == 1.0 || generated.is_empty() {
            logits.clone()
        } else {
            let start = generated
                .len()
                .saturating_sub(self.params.repetition_window);
            candle_transformers::utils::apply_repeat_penalty(
                logits,
                self.params.repetition_penalty,
                &generated[start..],
            )?
        };
        let min_p = self.params.min_p as f32;
        let token = self.processor.sample_f(&logits, |probabilities| {
            if min_p > 0.0 {
                let most_likely = probabilities.iter().copied().fold(0.0f32, f32::max);
                for probability in probabilities.iter_mut() {
                    if *probability < min_p * most_likely {
                        *probability = 0.0;
                    }
                }
            }
        })?;
        Ok(token)
    }
}
