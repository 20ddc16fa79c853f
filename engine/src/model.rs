//! A quantized model ready to run: our llama-family forward ([`crate::llama`]) and
//! candle-transformers' GGUF implementations of the others behind one type.

use std::io::{Read, Seek};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_phi, quantized_phi3};

use crate::error::{EngineError, Result};
use crate::gguf::{Architecture, Gguf};
use crate::llama::{Config, Llama, LlamaCache, LlamaStep};

enum Weights {
    /// Llama, Mistral, SmolLM, Qwen2, Qwen3 and Gemma 1–3.
    Llama(Llama),
    Phi3(quantized_phi3::ModelWeights),
    Phi2(quantized_phi::ModelWeights),
}

pub struct Model {
    weights: Weights,
    /// Tokens the model can attend to (prompt and answer together).
    pub context_length: usize,
    pub device: Device,
    /// For the models that keep their cache inside: the sequence whose keys and values it
    /// holds, and how many tokens of it.
    held: Option<(u64, usize)>,
    sequences_made: u64,
}

/// What one sequence (an answer being written, or a conversation kept for its next turn) has
/// computed: the tokens run so far and their keys and values.
pub struct Sequence {
    tokens: Vec<u32>,
    memory: Memory,
}

enum Memory {
    /// The llama family keeps each sequence's keys and values apart from the weights.
    Own(LlamaCache),
    /// candle-transformers' models keep one sequence's inside; this is its number.
    InModel(u64),
}

impl Sequence {
    /// The tokens whose keys and values it holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Bytes of keys and values it holds apart from the model.
    pub fn bytes(&self) -> usize {
        match &self.memory {
            Memory::Own(cache) => cache.bytes(),
            Memory::InModel(_) => 0,
        }
    }

    /// A copy of the first `len` tokens' keys and values with room for `ahead` more, or `None`
    /// when the model keeps them inside, where they cannot be copied.
    pub fn copy_prefix(&self, len: usize, ahead: usize) -> Result<Option<Self>> {
        let len = len.min(self.tokens.len());
        match &self.memory {
            Memory::Own(cache) => Ok(Some(Self {
                tokens: self.tokens[..len].to_vec(),
                memory: Memory::Own(cache.copy_prefix(len, ahead)?),
            })),
            Memory::InModel(_) => Ok(None),
        }
    }
}

/// Tokens to run for one sequence in [`Model::forward`].
pub struct Step<'a> {
    pub sequence: &'a mut Sequence,
    pub tokens: &'a [u32],
    /// Whether to return the logits of the token after the last one.
    pub logits: bool,
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
        if requantize
            && !matches!(
                gguf.architecture,
                Architecture::Llama | Architecture::Qwen2 | Architecture::Qwen3
            )
        {
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
            Architecture::Llama
            | Architecture::Qwen2
            | Architecture::Qwen3
            | Architecture::Gemma => {
                let config = Config::from_gguf(&content, &architecture_name).map_err(failed)?;
                Weights::Llama(
                    Llama::new(config, &content, reader, device, requantize).map_err(failed)?,
                )
            }
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
            held: None,
            sequences_made: 0,
        })
    }

    /// A sequence with nothing run yet.
    pub fn new_sequence(&mut self) -> Sequence {
        let memory = match &self.weights {
            Weights::Llama(model) => Memory::Own(model.new_cache()),
            _ => {
                self.sequences_made += 1;
                Memory::InModel(self.sequences_made)
            }
        };
        Sequence {
            tokens: Vec::new(),
            memory,
        }
    }

    /// How many sequences one [`Model::forward`] can run: any number for the llama family;
    /// one for candle-transformers' models, which also cannot switch sequences midway (each
    /// must be run to its end, or started again from its first token).
    pub fn max_batch(&self) -> usize {
        match &self.weights {
            Weights::Llama(_) => usize::MAX,
            _ => 1,
        }
    }

    /// Runs each step's tokens after what its sequence holds, and returns the logits of the
    /// next token for the steps that ask.
    pub fn forward(&mut self, steps: &mut [Step<'_>]) -> Result<Vec<Option<Tensor>>> {
        let logits = match &mut self.weights {
            Weights::Llama(model) => {
                let mut llama_steps = Vec::with_capacity(steps.len());
                for step in steps.iter_mut() {
                    let Memory::Own(cache) = &mut step.sequence.memory else {
                        return Err(not_this_models("sequence"));
                    };
                    llama_steps.push(LlamaStep {
                        tokens: step.tokens,
                        position: step.sequence.tokens.len(),
                        cache,
                        logits: step.logits,
                    });
                }
                model.forward(&mut llama_steps)?
            }
            weights => {
                let [step] = steps else {
                    return Err(EngineError::InvalidParameter {
                        name: "steps",
                        problem: format!(
                            "this architecture runs one sequence at a time, not {}",
                            steps.len()
                        ),
                    });
                };
                let Memory::InModel(id) = step.sequence.memory else {
                    return Err(not_this_models("sequence"));
                };
                let position = step.sequence.tokens.len();
                if position > 0 && self.held != Some((id, position)) {
                    return Err(EngineError::InvalidParameter {
                        name: "sequence",
                        problem: "another sequence ran in this model since; it must start again from its first token".into(),
                    });
                }
                let input = Tensor::new(step.tokens, &self.device)?.unsqueeze(0)?;
                let logits = match weights {
                    Weights::Phi3(model) => model.forward(&input, position)?,
                    Weights::Phi2(model) => model.forward(&input, position)?,
                    Weights::Llama(_) => unreachable!("matched above"),
                };
                self.held = Some((id, position + step.tokens.len()));
                vec![step.logits.then(|| logits.squeeze(0)).transpose()?]
            }
        };
        for step in steps.iter_mut() {
            step.sequence.tokens.extend_from_slice(step.tokens);
        }
        Ok(logits)
    }

    /// Runs `tokens` after what `sequence` holds and returns the next token's logits.
    pub fn forward_one(&mut self, sequence: &mut Sequence, tokens: &[u32]) -> Result<Tensor> {
        let mut steps = [Step {
            sequence,
            tokens,
            logits: true,
        }];
        Ok(self
            .forward(&mut steps)?
            .pop()
            .flatten()
            .expect("a step that asks for logits gets them"))
    }
}

/// A sequence made by another kind of model given to this one.
fn not_this_models(name: &'static str) -> EngineError {
    EngineError::InvalidParameter {
        name,
        problem: "it was not made by this model".into(),
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
