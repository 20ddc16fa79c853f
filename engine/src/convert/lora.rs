//! A PEFT LoRA adapter (`adapter_config.json`, `adapter_model.safetensors`) merged into its
//! base model's weights as they are converted: W + scale·B·A in f32, with scale = alpha/r, or
//! alpha/√r where the adapter was trained with rsLoRA.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use candle_core::{Device, Tensor};

use super::checkpoint::Checkpoint;
use crate::error::{EngineError, Result};

/// What PEFT prefixes every tensor name with.
const PEFT_PREFIX: &str = "base_model.model.";

pub struct Adapter {
    weights: Checkpoint,
    scale: f64,
    /// Base tensor name → the adapter's (A, B) names, and whether it is an embedding's
    /// (`lora_embedding_A/B`, whose product is transposed).
    low_rank: BTreeMap<String, (String, String, bool)>,
    /// Base tensor name → the adapter's full replacement (`modules_to_save`).
    replaced: BTreeMap<String, String>,
}

impl Adapter {
    /// Reads the adapter in `dir` and checks it fits `base`: every tensor it changes exists
    /// there with the shape its A and B multiply to.
    pub fn open(dir: &Path, base: &Checkpoint) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let config = super::read_json(&config_path)?;
        let refused = |problem: String| {
            EngineError::Conversion(format!("{}: {problem}", config_path.display()))
        };
        if config["peft_type"]
            .as_str()
            .is_some_and(|kind| kind != "LORA")
        {
            return Err(refused(format!(
                "the adapter is {}; Vitrina merges LoRA adapters",
                config["peft_type"]
            )));
        }
        if config["use_dora"].as_bool() == Some(true) {
            return Err(refused("the adapter uses DoRA; merge it with PEFT (`merge_and_unload()`) and publish the merged model".into()));
        }
        if config["fan_in_fan_out"].as_bool() == Some(true) {
            return Err(refused("fan_in_fan_out adapters (GPT-2-style Conv1D layers) are not for the supported architectures".into()));
        }
        let rank = config["r"]
            .as_f64()
            .filter(|r| *r > 0.0)
            .ok_or_else(|| refused("has no positive `r`".into()))?;
        let alpha = config["lora_alpha"].as_f64().unwrap_or(rank);
        let scale = if config["use_rslora"].as_bool() == Some(true) {
            alpha / rank.sqrt()
        } else {
            alpha / rank
        };

        let weights = Checkpoint::open(dir, super::checkpoint::ADAPTER_WEIGHTS)?;
        let mut low_rank = BTreeMap::new();
        let mut replaced = BTreeMap::new();
        for (name, entry) in &weights.tensors {
            let stem = name.strip_prefix(PEFT_PREFIX).unwrap_or(name);
            let pairs = [
                (".lora_A.weight", ".lora_B.weight", false),
                (".lora_embedding_A", ".lora_embedding_B", true),
            ];
            if let Some((module, b_suffix, embedding)) =
                pairs.iter().find_map(|(a, b, embedding)| {
                    stem.strip_suffix(a).map(|module| (module, *b, *embedding))
                })
            {
                let base_name = format!("{module}.weight");
                let b_name = format!(
                    "{}{module}{b_suffix}",
                    if name.starts_with(PEFT_PREFIX) {
                        PEFT_PREFIX
                    } else {
                        ""
                    }
                );
                let b = weights.entry(&b_name)?;
                let target = base.tensors.get(&base_name).ok_or_else(|| {
                    refused(format!("the adapter changes {base_name}, which the base model has not: is `base_model_name_or_path` the model it was trained on?"))
                })?;
                let product = if embedding {
                    vec![entry.shape.get(1).copied().unwrap_or(0), b.shape[0]]
                } else {
                    vec![b.shape[0], entry.shape.get(1).copied().unwrap_or(0)]
                };
                if target.shape != product || b.shape.get(1) != entry.shape.first() {
                    return Err(refused(format!(
                        "its {module} (A {:?}, B {:?}) does not fit the base model's {base_name} {:?}: the adapter was trained on a base of another shape",
                        entry.shape, b.shape, target.shape
                    )));
                }
                low_rank.insert(base_name, (name.clone(), b_name, embedding));
            } else if stem.contains(".lora_B")
                || stem.contains(".lora_embedding_B")
                || stem.contains("lora_magnitude")
            {
                continue;
            } else {
                let base_name = stem.replace(".modules_to_save.default", "");
                let target = base.tensors.get(&base_name).ok_or_else(|| {
                    refused(format!(
                        "the adapter holds {name}, which is no tensor of the base model"
                    ))
                })?;
                if target.shape != entry.shape {
                    return Err(refused(format!(
                        "its {name} has shape {:?}, the base model's {:?}",
                        entry.shape, target.shape
                    )));
                }
                replaced.insert(base_name, name.clone());
            }
        }
        if low_rank.is_empty() && replaced.is_empty() {
            return Err(refused(
                "its adapter_model.safetensors holds no LoRA weights".into(),
            ));
        }
        Ok(Self {
            weights,
            scale,
            low_rank,
            replaced,
        })
    }

    /// `values` (the base tensor `name`, of `shape`) with the adapter's change.
    pub fn merge_into(&self, name: &str, shape: &[usize], values: &mut Vec<f32>) -> Result<()> {
        if let Some(replacement) = self.replaced.get(name) {
            *values = self.weights.read_f32(replacement)?;
        }
        let Some((a_name, b_name, embedding)) = self.low_rank.get(name) else {
            return Ok(());
        };
        let matrix = |name: &str| -> Result<Tensor> {
            let entry = self.weights.entry(name)?;
            Ok(Tensor::from_vec(
                self.weights.read_f32(name)?,
                entry.shape.as_slice(),
                &Device::Cpu,
            )?)
        };
        let (a, b) = (matrix(a_name)?, matrix(b_name)?);
        let delta = if *embedding {
            b.matmul(&a)?.t()?
        } else {
            b.matmul(&a)?
        };
        let delta = (delta * self.scale)?.flatten_all()?.to_vec1::<f32>()?;
        if delta.len() != shape.iter().product::<usize>() {
            return Err(EngineError::Conversion(format!(
                "the adapter's change of {name} has the wrong size"
            )));
        }
        for (value, change) in values.iter_mut().zip(delta) {
            *value += change;
        }
        Ok(())
    }

    /// Every tensor the adapter changes is one the conversion reads (`read`: their Hugging
    /// Face names), checked before anything is written.
    pub fn check_targets(&self, read: &HashSet<&str>) -> Result<()> {
        let missed: Vec<&String> = self
            .low_rank
            .keys()
            .chain(self.replaced.keys())
            .filter(|name| !read.contains(name.as_str()))
            .collect();
        if missed.is_empty() {
            return Ok(());
        }
        Err(EngineError::Conversion(format!(
            "the adapter changes tensors the converted model does not use ({}); it was trained on another architecture",
            missed
                .iter()
                .take(3)
                .map(|name| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}
