//! How the next token is chosen: temperature, top-k, top-p, min-p, repetition penalty, seed.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
pub use wire::generation::SamplingParams;

use crate::error::Result;

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
