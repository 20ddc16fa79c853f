//! From a Hugging Face `config.json` to llama.cpp's architecture: its metadata keys and each
//! tensor's GGUF name, expected shape and transform.

use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;

use super::checkpoint::Checkpoint;
use crate::error::{EngineError, Result};

/// config.json's `model_type`s that convert, and the GGUF architecture each becomes.
const ARCHITECTURES: [(&str, &str); 8] = [
    ("llama", "llama"),
    ("mistral", "llama"),
    ("qwen2", "qwen2"),
    ("qwen3", "qwen3"),
    ("gemma", "gemma"),
    ("gemma2", "gemma2"),
    ("gemma3_text", "gemma3"),
    ("gemma3", "gemma3"),
];

/// The `model_type`s a team's checkpoint may have, for errors and README.
pub const SUPPORTED: [&str; 7] = [
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3",
];

/// Where a tensor's values come from.
pub enum Source {
    /// Read from the checkpoint (by its Hugging Face name), then transformed.
    Read { hf: String, transform: Transform },
    /// Computed from config.json (Llama 3's rotation frequency factors).
    Made(Vec<f32>),
}

#[derive(Clone, Copy)]
pub enum Transform {
    None,
    /// Gemma's RMSNorm multiplies by 1 + w; llama.cpp stores the 1 + w.
    PlusOne,
    /// Llama's q/k rows, for the interleaved rotation, over this many heads.
    InterleaveHeads(usize),
}

pub struct PlannedSource {
    pub gguf: String,
    pub shape: Vec<usize>,
    pub source: Source,
}

pub struct Plan {
    pub architecture: &'static str,
    pub layers: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    ffn: usize,
    vocab: usize,
    context: usize,
    eps: f64,
    rope_base: f64,
    /// Gemma 3's layers that see only the last `sliding_window` tokens.
    sliding_window: Option<usize>,
    /// Llama 3's divisors of the rotation frequencies (`rope_freqs.weight`).
    rope_factors: Option<Vec<f32>>,
    /// Gemma 2's caps of attention scores and of logits.
    softcaps: Option<(f64, f64)>,
    /// Gemma 3: every how many layers one is global, the local layers' rotation base, and
    /// the global layers' linear position scaling (4B and up).
    gemma3_rotation: Option<(usize, f64, Option<f64>)>,
    tie_word_embeddings: bool,
    /// Where the language model's tensors are (`model.`; Gemma 3's multimodal checkpoints
    /// nest it as `language_model.model.`).
    prefix: &'static str,
    /// Weights beside the language model that the chat does not use (Gemma 3's vision tower).
    ignored: &'static [&'static str],
}

fn parse(config_json: &str, file: &str) -> Result<Json> {
    serde_json::from_str(config_json)
        .map_err(|error| EngineError::Conversion(format!("{file} is not valid JSON: {error}")))
}

fn architecture(config: &Json, file: &str) -> Result<&'static str> {
    let model_type = config["model_type"].as_str().unwrap_or("(none)");
    ARCHITECTURES
        .iter()
        .find(|(name, _)| *name == model_type)
        .map(|(_, gguf)| *gguf)
        .ok_or_else(|| {
            EngineError::Conversion(format!(
                "{file}: the model is a {model_type:?} ({}), which Vitrina cannot convert; supported: {}",
                config["architectures"][0].as_str().unwrap_or("no `architectures`"),
                SUPPORTED.join(", ")
            ))
        })
}

impl Plan {
    pub fn new(config_json: &str, file: &str) -> Result<Self> {
        let outer = parse(config_json, file)?;
        let architecture = architecture(&outer, file)?;
        let multimodal = outer["model_type"] == "gemma3";
        let config = if multimodal {
            &outer["text_config"]
        } else {
            &outer
        };
        let number = |key: &str| -> Result<usize> {
            config[key].as_u64().map(|value| value as usize).ok_or_else(|| {
                EngineError::Conversion(format!(
                    "{file} has no whole number `{key}`; it is needed to convert a {architecture} model"
                ))
            })
        };
        let heads = number("num_attention_heads")?;
        let hidden = number("hidden_size")?;
        let kv_heads = config["num_key_value_heads"]
            .as_u64()
            .map_or(heads, |value| value as usize);
        let head_dim = config["head_dim"]
            .as_u64()
            .map_or(hidden / heads.max(1), |value| value as usize);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || head_dim % 2 != 0 {
            return Err(EngineError::Conversion(format!(
                "{file}: {heads} attention heads, {kv_heads} key/value heads and a head size of {head_dim} do not make a model"
            )));
        }
        let gemma = architecture.starts_with("gemma");
        let gemma3 = architecture == "gemma3";
        if gemma {
            let scalar = config["query_pre_attn_scalar"]
                .as_u64()
                .map_or(head_dim, |value| value as usize);
            if scalar != head_dim {
                return Err(EngineError::Conversion(format!(
                    "{file}: query_pre_attn_scalar is {scalar}, not the head size {head_dim}: Vitrina runs the Gemma models whose queries are scaled by the head size (2B, 7B, 9B, Gemma 3 up to 12B)"
                )));
            }
        }
        let rope_base =
            config["rope_theta"]
                .as_f64()
                .unwrap_or(if gemma { 1_000_000.0 } else { 10_000.0 });
        let rope_factors = llama3_rope_factors(&config["rope_scaling"], rope_base, head_dim, file)?;
        let gemma_linear = gemma && config["rope_scaling"].to_string().contains("linear");
        if !gemma_linear && rope_factors.is_none() && config["rope_scaling"].is_object() {
            return Err(EngineError::Conversion(format!(
                "{file}: rope_scaling {} is not one Vitrina converts (Llama 3's `llama3`, Gemma 3's `linear`)",
                config["rope_scaling"]
            )));
        }
        Ok(Self {
            architecture,
            layers: number("num_hidden_layers")?,
            hidden,
            heads,
            kv_heads,
            head_dim,
            ffn: number("intermediate_size")?,
            vocab: number("vocab_size").or_else(|_| {
                outer["vocab_size"]
                    .as_u64()
                    .map(|v| v as usize)
                    .ok_or_else(|| EngineError::Conversion(format!("{file} has no `vocab_size`")))
            })?,
            context: config["max_position_embeddings"]
                .as_u64()
                .map_or(4096, |value| value as usize),
            eps: config["rms_norm_eps"].as_f64().unwrap_or(1e-6),
            rope_base,
            sliding_window: match architecture {
                "gemma2" => Some(
                    config["sliding_window"]
                        .as_u64()
                        .map_or(4096, |value| value as usize),
                ),
                "gemma3" => Some(
                    config["sliding_window"]
                        .as_u64()
                        .map_or(512, |value| value as usize),
                ),
                _ => None,
            },
            softcaps: (architecture == "gemma2").then(|| {
                (
                    config["attn_logit_softcapping"].as_f64().unwrap_or(50.0),
                    config["final_logit_softcapping"].as_f64().unwrap_or(30.0),
                )
            }),
            rope_factors,
            gemma3_rotation: gemma3.then(|| {
                let linear = match &config["rope_scaling"] {
                    Json::Object(scaling)
                        if scaling
                            .get("rope_type")
                            .or(scaling.get("type"))
                            .and_then(Json::as_str)
                            == Some("linear") =>
                    {
                        scaling.get("factor").and_then(Json::as_f64)
                    }
                    _ => None,
                };
                (
                    config["sliding_window_pattern"]
                        .as_u64()
                        .map_or(6, |value| value as usize),
                    config["rope_local_base_freq"].as_f64().unwrap_or(10_000.0),
                    linear,
                )
            }),
            tie_word_embeddings: outer["tie_word_embeddings"]
                .as_bool()
                .or(config["tie_word_embeddings"].as_bool())
                .unwrap_or(gemma),
            prefix: if multimodal {
                "language_model.model."
            } else {
                "model."
            },
            ignored: if multimodal {
                &["vision_tower.", "multi_modal_projector."]
            } else {
                &[]
            },
        })
    }

    /// The architecture's keys (`qwen3.block_count`…).
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let key = |suffix: &str| format!("{}.{suffix}", self.architecture);
        let mut metadata = vec![
            (key("context_length"), Value::U32(self.context as u32)),
            (key("embedding_length"), Value::U32(self.hidden as u32)),
            (key("block_count"), Value::U32(self.layers as u32)),
            (key("feed_forward_length"), Value::U32(self.ffn as u32)),
            (key("attention.head_count"), Value::U32(self.heads as u32)),
            (
                key("attention.head_count_kv"),
                Value::U32(self.kv_heads as u32),
            ),
            (
                key("attention.key_length"),
                Value::U32(self.head_dim as u32),
            ),
            (
                key("attention.value_length"),
                Value::U32(self.head_dim as u32),
            ),
            (
                key("attention.layer_norm_rms_epsilon"),
                Value::F32(self.eps as f32),
            ),
            (key("rope.freq_base"), Value::F32(self.rope_base as f32)),
            (
                key("rope.dimension_count"),
                Value::U32(self.head_dim as u32),
            ),
            (key("vocab_size"), Value::U32(self.vocab as u32)),
        ];
        if let Some(window) = self.sliding_window {
            metadata.push((key("attention.sliding_window"), Value::U32(window as u32)));
        }
        if let Some((attention, logits)) = self.softcaps {
            metadata.push((key("attn_logit_softcapping"), Value::F32(attention as f32)));
            metadata.push((key("final_logit_softcapping"), Value::F32(logits as f32)));
        }
        if let Some((pattern, local_base, linear)) = self.gemma3_rotation {
            metadata.push((
                key("attention.sliding_window_type"),
                Value::U32(pattern as u32),
            ));
            metadata.push((key("rope.local_freq_base"), Value::F32(local_base as f32)));
            if let Some(factor) = linear {
                metadata.push((key("rope.scaling.type"), Value::String("linear".into())));
                metadata.push((key("rope.scaling.factor"), Value::F32(factor as f32)));
            }
        }
        metadata
    }

    /// Every tensor of the GGUF file, in llama.cpp's order, each checked against the shape
    /// config.json gives it; a checkpoint tensor no plan uses is an error (another
    /// architecture, or a shard of another model).
    pub fn tensors(&self, checkpoint: &Checkpoint) -> Result<Vec<PlannedSource>> {
        let p = self.prefix;
        let gemma = self.architecture.starts_with("gemma");
        let post_norms = matches!(self.architecture, "gemma2" | "gemma3");
        let norm = if gemma {
            Transform::PlusOne
        } else {
            Transform::None
        };
        let q_rows = self.heads * self.head_dim;
        let kv_rows = self.kv_heads * self.head_dim;
        let mut planned = Vec::new();
        let mut add = |gguf: String,
                       hf: String,
                       shape: Vec<usize>,
                       transform: Transform,
                       required: bool|
         -> Result<()> {
            let Some(entry) = checkpoint.tensors.get(&hf) else {
                if required {
                    checkpoint.entry(&hf)?;
                }
                return Ok(());
            };
            if entry.shape != shape {
                return Err(EngineError::Conversion(format!(
                    "{hf} in {} has shape {:?}, but config.json makes it {shape:?}; are config.json and the weights of the same model?",
                    checkpoint.dir.display(),
                    entry.shape
                )));
            }
            planned.push(PlannedSource {
                gguf,
                shape,
                source: Source::Read { hf, transform },
            });
            Ok(())
        };
        add(
            "token_embd.weight".into(),
            format!("{p}embed_tokens.weight"),
            vec![self.vocab, self.hidden],
            Transform::None,
            true,
        )?;
        let lm_head = if p == "model." {
            "lm_head.weight".to_owned()
        } else {
            "language_model.lm_head.weight".to_owned()
        };
        if !self.tie_word_embeddings {
            add(
                "output.weight".into(),
                lm_head.clone(),
                vec![self.vocab, self.hidden],
                Transform::None,
                true,
            )?;
        }
        add(
            "output_norm.weight".into(),
            format!("{p}norm.weight"),
            vec![self.hidden],
            norm,
            true,
        )?;
        let llama = self.architecture == "llama";
        let qk_norms = matches!(self.architecture, "qwen3" | "gemma3");
        for layer in 0..self.layers {
            let hf = |part: &str| format!("{p}layers.{layer}.{part}");
            let gg = |part: &str| format!("blk.{layer}.{part}");
            add(
                gg("attn_norm.weight"),
                hf("input_layernorm.weight"),
                vec![self.hidden],
                norm,
                true,
            )?;
            let (q_transform, k_transform) = if llama {
                (
                    Transform::InterleaveHeads(self.heads),
                    Transform::InterleaveHeads(self.kv_heads),
                )
            } else {
                (Transform::None, Transform::None)
            };
            add(
                gg("attn_q.weight"),
                hf("self_attn.q_proj.weight"),
                vec![q_rows, self.hidden],
                q_transform,
                true,
            )?;
            add(
                gg("attn_k.weight"),
                hf("self_attn.k_proj.weight"),
                vec![kv_rows, self.hidden],
                k_transform,
                true,
            )?;
            add(
                gg("attn_v.weight"),
                hf("self_attn.v_proj.weight"),
                vec![kv_rows, self.hidden],
                Transform::None,
                true,
            )?;
            let qwen2 = self.architecture == "qwen2";
            add(
                gg("attn_q.bias"),
                hf("self_attn.q_proj.bias"),
                vec![q_rows],
                Transform::None,
                qwen2,
            )?;
            add(
                gg("attn_k.bias"),
                hf("self_attn.k_proj.bias"),
                vec![kv_rows],
                Transform::None,
                qwen2,
            )?;
            add(
                gg("attn_v.bias"),
                hf("self_attn.v_proj.bias"),
                vec![kv_rows],
                Transform::None,
                qwen2,
            )?;
            if qk_norms {
                add(
                    gg("attn_q_norm.weight"),
                    hf("self_attn.q_norm.weight"),
                    vec![self.head_dim],
                    norm,
                    true,
                )?;
                add(
                    gg("attn_k_norm.weight"),
                    hf("self_attn.k_norm.weight"),
                    vec![self.head_dim],
                    norm,
                    true,
                )?;
            }
            add(
                gg("attn_output.weight"),
                hf("self_attn.o_proj.weight"),
                vec![self.hidden, q_rows],
                Transform::None,
                true,
            )?;
            if post_norms {
                add(
                    gg("post_attention_norm.weight"),
                    hf("post_attention_layernorm.weight"),
                    vec![self.hidden],
                    norm,
                    true,
                )?;
                add(
                    gg("ffn_norm.weight"),
                    hf("pre_feedforward_layernorm.weight"),
                    vec![self.hidden],
                    norm,
                    true,
                )?;
                add(
                    gg("post_ffw_norm.weight"),
                    hf("post_feedforward_layernorm.weight"),
                    vec![self.hidden],
                    norm,
                    true,
                )?;
            } else {
                add(
                    gg("ffn_norm.weight"),
                    hf("post_attention_layernorm.weight"),
                    vec![self.hidden],
                    norm,
                    true,
                )?;
            }
            add(
                gg("ffn_gate.weight"),
                hf("mlp.gate_proj.weight"),
                vec![self.ffn, self.hidden],
                Transform::None,
                true,
            )?;
            add(
                gg("ffn_up.weight"),
                hf("mlp.up_proj.weight"),
                vec![self.ffn, self.hidden],
                Transform::None,
                true,
            )?;
            add(
                gg("ffn_down.weight"),
                hf("mlp.down_proj.weight"),
                vec![self.hidden, self.ffn],
                Transform::None,
                true,
            )?;
        }
        if let Some(factors) = &self.rope_factors {
            planned.push(PlannedSource {
                gguf: "rope_freqs.weight".into(),
                shape: vec![factors.len()],
                source: Source::Made(factors.clone()),
            });
        }
        let used: std::collections::HashSet<&str> = planned
            .iter()
            .filter_map(|tensor| match &tensor.source {
                Source::Read { hf, .. } => Some(hf.as_str()),
                Source::Made(_) => None,
            })
            .collect();
        let unused: Vec<&String> = checkpoint
            .tensors
            .keys()
            .filter(|name| !used.contains(name.as_str()))
            .filter(|name| !name.ends_with("rotary_emb.inv_freq"))
            .filter(|name| !self.ignored.iter().any(|prefix| name.starts_with(prefix)))
            // A tied model may still store its output matrix: the embedding table serves.
            .filter(|name| !(self.tie_word_embeddings && **name == lm_head))
            .collect();
        if !unused.is_empty() {
            return Err(EngineError::Conversion(format!(
                "{} has tensors a {} model does not have ({}{}); is config.json's model_type right?",
                checkpoint.dir.display(),
                self.architecture,
                unused
                    .iter()
                    .take(3)
                    .map(|name| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if unused.len() > 3 {
                    format!(" and {} more", unused.len() - 3)
                } else {
                    String::new()
                }
            )));
        }
        Ok(planned)
    }
}

/// Llama 3's `rope_scaling` (`rope_type: "llama3"`) as the per-frequency divisors llama.cpp
/// stores in `rope_freqs.weight` (its converter's `generate_extra_tensors`).
fn llama3_rope_factors(
    scaling: &Json,
    base: f64,
    head_dim: usize,
    file: &str,
) -> Result<Option<Vec<f32>>> {
    let kind = scaling["rope_type"].as_str().or(scaling["type"].as_str());
    if kind != Some("llama3") {
        return Ok(None);
    }
    let number = |key: &str, default: Option<f64>| {
        scaling[key]
            .as_f64()
            .or(default)
            .ok_or_else(|| EngineError::Conversion(format!("{file}: rope_scaling has no `{key}`")))
    };
    let factor = number("factor", None)?;
    let low = number("low_freq_factor", Some(1.0))?;
    let high = number("high_freq_factor", Some(4.0))?;
    let original = number("original_max_position_embeddings", Some(8192.0))?;
    let (low_wavelength, high_wavelength) = (original / low, original / high);
    Ok(Some(
        (0..head_dim / 2)
            .map(|i| {
                let frequency = 1.0 / base.powf((2 * i) as f64 / head_dim as f64);
                let wavelength = 2.0 * std::f64::consts::PI / frequency;
                let divisor = if wavelength < high_wavelength {
                    1.0
                } else if wavelength > low_wavelength {
                    factor
                } else {
                    let smooth = (original / wavelength - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                };
                divisor as f32
            })
            .collect(),
    ))
}
