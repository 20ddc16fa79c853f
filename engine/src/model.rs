//! A quantized model ready to run: candle-transformers' GGUF implementations behind one type.

use std::io::{Read, Seek};

use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_phi, quantized_phi3, quantized_qwen2};

use crate::error::{EngineError, Result};
use crate::gguf::{Architecture, Gguf};

enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Gemma(quantized_gemma3::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
    Phi2(quantized_phi::ModelWeights),
}

pub struct Model {
    weights: Weights,
    pub architecture: Architecture,
    pub context_length: usize,
    pub device: Device,
}

impl Model {
    /// Loads the weights described by `gguf` (whose header was read from `reader`).
    pub fn load<R: Read + Seek>(gguf: Gguf, reader: &mut R, device: &Device) -> Result<Self> {
        let context_length = gguf.context_length();
        let Gguf { file, content, architecture, .. } = gguf;
        let failed = |error: candle_core::Error| EngineError::InvalidGguf {
            file: file.clone(),
            reason: format!("its weights cannot be loaded ({error})"),
        };
        let weights = match architecture {
            Architecture::Llama => Weights::Llama(quantized_llama::ModelWeights::from_gguf(content, reader, device).map_err(failed)?),
            Architecture::Qwen2 => Weights::Qwen2(quantized_qwen2::ModelWeights::from_gguf(content, reader, device).map_err(failed)?),
            Architecture::Gemma => Weights::Gemma(quantized_gemma3::ModelWeights::from_gguf(content, reader, device).map_err(failed)?),
            Architecture::Phi3 => {
                Weights::Phi3(quantized_phi3::ModelWeights::from_gguf(false, content, reader, device).map_err(failed)?)
            }
            Architecture::Phi2 => Weights::Phi2(quantized_phi::ModelWeights::from_gguf(content, reader, device).map_err(failed)?),
        };
        Ok(Self { weights, architecture, context_length, device: device.clone() })
    }

    /// Runs `tokens` placed at `position` in the sequence and returns the next-token logits.
    /// Position 0 starts a new sequence (every model here then drops its KV cache).
    pub fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Tensor> {
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = match &mut self.weights {
            Weights::Llama(model) => model.forward(&input, position)?,
            Weights::Qwen2(model) => model.forward(&input, position)?,
            Weights::Gemma(model) => model.forward(&input, position)?,
            Weights::Phi3(model) => model.forward(&input, position)?,
            Weights::Phi2(model) => model.forward(&input, position)?,
        };
        Ok(logits.squeeze(0)?)
    }
}
