//! A quantized model ready to run: our llama-family forward ([`crate::llama`]) and
//! candle-transformers' GGUF implementations of the others behind one type.

use std::io::{Read, Seek};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_phi, quantized_phi3};

use crate::error::{EngineError, Result};
use crate::gguf::{Architecture, Gguf};
use crate::llama::{Config, Llama};

enum Weights {
    /// Llama, Mistral, SmolLM and Qwen2.
    Llama(Llama),
    Gemma(quantized_gemma3::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
    Phi2(quantized_phi::ModelWeights),
}

pub struct Model {
    weights: Weights,
    /// Tokens the model can attend to (prompt and answer together).
    pub context_length: usize,
    pub device: Device,
}

impl Model {
    /// Loads the weights described by `gguf` (whose header was read from `reader`).
    /// `requantize`: on the CPU, weights in a type multiplied more slowly than Q8_0
    /// ([`SLOWER_THAN_Q8_0_ON_CPU`]) become Q8_0.
    pub fn load<R: Read + Seek>(
        gguf: Gguf,
        reader: &mut R,
        device: &Device,
        requantize: bool,
    ) -> Result<Self> {
        let requantize = requantize && device.is_cpu();
        if requantize && !matches!(gguf.architecture, Architecture::Llama | Architecture::Qwen2) {
            // candle-transformers reads the weights from a GGUF stream: give it a rewritten one.
            if let Some(rewritten) =
                requantize_file(&gguf, reader, &SLOWER_THAN_Q8_0_ON_CPU, GgmlDType::Q8_0)?
            {
                let mut rewritten = std::io::Cursor::new(rewritten);
                let gguf = Gguf::read(&mut rewritten, &gguf.file)?;
                return Self::load(gguf, &mut rewritten, device, false);
            }
        }
        let context_length = gguf.context_length();
        let Gguf {
            file,
            content,
            architecture,
            architecture_name,
        } = gguf;
        let failed = |error: candle_core::Error| EngineError::InvalidGguf {
            file: file.clone(),
            reason: format!("its weights cannot be loaded ({error})"),
        };
        let weights = match architecture {
            Architecture::Llama | Architecture::Qwen2 => {
                let config = Config::from_gguf(&content, &architecture_name).map_err(failed)?;
                Weights::Llama(
                    Llama::new(config, &content, reader, device, requantize).map_err(failed)?,
                )
            }
            Architecture::Gemma => Weights::Gemma(
                quantized_gemma3::ModelWeights::from_gguf(content, reader, device)
                    .map_err(failed)?,
            ),
            Architecture::Phi3 => Weights::Phi3(
                quantized_phi3::ModelWeights::from_gguf(false, content, reader, device)
                    .map_err(failed)?,
            ),
            Architecture::Phi2 => Weights::Phi2(
                quantized_phi::ModelWeights::from_gguf(content, reader, device).map_err(failed)?,
            ),
        };
        Ok(Self {
            weights,
            context_length,
            device: device.clone(),
        })
    }

    /// Runs `tokens` placed at `position` in the sequence and returns the next-token logits.
    /// Position 0 starts a new sequence (every model here then drops its KV cache).
    pub fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Tensor> {
        let device = &self.device;
        let input = || Tensor::new(tokens, device)?.unsqueeze(0);
        let logits = match &mut self.weights {
            Weights::Llama(model) => return Ok(model.forward(tokens, position)?),
            Weights::Gemma(model) => model.forward(&input()?, position)?,
            Weights::Phi3(model) => model.forward(&input()?, position)?,
            Weights::Phi2(model) => model.forward(&input()?, position)?,
        };
        Ok(logits.squeeze(0)?)
    }
}

/// Quantisations multiplied more slowly than Q8_0 on the CPU: Q5_1 takes candle's scalar
/// loop, and unpacking Q4_1's and Q5_0's 4–5-bit values costs more time than reading fewer bytes
/// saves (measured in the README).
pub const SLOWER_THAN_Q8_0_ON_CPU: [GgmlDType; 3] =
    [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

/// Rewrites `gguf`'s tensors of the types in `from` as `target`, returning a new GGUF file in
/// memory (`None` when there is nothing to rewrite). Q8_0 keeps the original precision (each
/// value gets 8 bits where it had 4–5) at about 1.7× the memory of those tensors.
pub fn requantize_file<R: Read + Seek>(
    gguf: &Gguf,
    reader: &mut R,
    from: &[GgmlDType],
    target: GgmlDType,
) -> Result<Option<Vec<u8>>> {
    let content = &gguf.content;
    let any = content
        .tensor_infos
        .values()
        .any(|info| from.contains(&info.ggml_dtype));
    if !any {
        return Ok(None);
    }
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let tensor = content.tensor(reader, name, &Device::Cpu)?;
        let fits_blocks = tensor
            .shape()
            .dims()
            .last()
            .is_some_and(|&columns| columns % target.block_size() == 0);
        let tensor = if from.contains(&tensor.dtype()) && fits_blocks {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, target)?
        } else {
            tensor
        };
        tensors.push(tensor);
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = names
        .iter()
        .map(|name| name.as_str())
        .zip(tensors.iter())
        .collect();
    let mut file = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut file, &metadata, &tensors)?;
    Ok(Some(file.into_inner()))
}
