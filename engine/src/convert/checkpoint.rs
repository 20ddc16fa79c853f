//! A Hugging Face checkpoint folder: `config.json` and the weights in one or many
//! `*.safetensors` shards, read one tensor at a time.
//!
//! Each shard's header is read through the `safetensors` crate (a map of the file, never
//! touched beyond the header); each tensor's bytes are then read with a positioned read, so
//! that the process holds one tensor at a time, not the pages of the mapped file: a 7B model in
//! bf16 is 14.5 GB of shards on a Space of 16 GB.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use safetensors::Dtype;

use crate::error::{EngineError, Result};

/// Where one tensor's bytes are.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub shard: usize,
    pub dtype: Dtype,
    /// Rows first.
    pub shape: Vec<usize>,
    start: u64,
    end: u64,
}

/// A merged checkpoint's weights (or the stem of its shards' index).
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// A PEFT adapter's.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The shard files an index (`model.safetensors.index.json`) maps the tensors to, each once.
pub fn listed_shards(index: &Path) -> Result<Vec<String>> {
    let parsed = super::read_json(index)?;
    let map = parsed["weight_map"].as_object().ok_or_else(|| {
        EngineError::Conversion(format!("{} has no `weight_map`", index.display()))
    })?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|file| file.as_str().map(str::to_owned))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

pub struct Checkpoint {
    pub dir: PathBuf,
    shards: Vec<(PathBuf, File)>,
    pub tensors: BTreeMap<String, TensorEntry>,
}

impl Checkpoint {
    /// The weights of the folder: the shards `model.safetensors.index.json` lists, else
    /// `model.safetensors`. `weights_file` names another single file (an adapter's).
    pub fn open(dir: &Path, weights_file: &str) -> Result<Self> {
        let index = dir.join(format!("{weights_file}.index.json"));
        let names: Vec<String> = if index.is_file() {
            listed_shards(&index)?
        } else if dir.join(weights_file).is_file() {
            vec![weights_file.to_owned()]
        } else {
            let pytorch = dir.join("pytorch_model.bin").is_file();
            return Err(EngineError::Conversion(format!(
                "{} holds no {weights_file} (nor its shards' {weights_file}.index.json){}",
                dir.display(),
                if pytorch {
                    "; it has pytorch_model.bin: save the model with `save_pretrained(..., safe_serialization=True)` and upload the .safetensors files"
                } else {
                    ""
                }
            )));
        };
        let mut checkpoint = Self {
            dir: dir.to_owned(),
            shards: Vec::new(),
            tensors: BTreeMap::new(),
        };
        for name in names {
            let path = dir.join(&name);
            let file = File::open(&path).map_err(|error| {
                EngineError::Conversion(format!(
                    "the shard {} cannot be opened ({error}); every file the index lists must be downloaded",
                    path.display()
                ))
            })?;
            // SAFETY: the map is only read, by `read_metadata`, while this function holds the
            // file; a checkpoint being rewritten meanwhile fails the header's checks.
            let map = unsafe { memmap2::Mmap::map(&file) }?;
            let (header, metadata) =
                safetensors::SafeTensors::read_metadata(&map).map_err(|error| {
                    EngineError::Conversion(format!(
                        "{} is not a complete safetensors file ({error}); download it again",
                        path.display()
                    ))
                })?;
            let data_start = 8 + header as u64;
            for (tensor, info) in metadata.tensors() {
                let entry = TensorEntry {
                    shard: checkpoint.shards.len(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + info.data_offsets.0 as u64,
                    end: data_start + info.data_offsets.1 as u64,
                };
                if checkpoint.tensors.insert(tensor.clone(), entry).is_some() {
                    return Err(EngineError::Conversion(format!(
                        "{tensor} is in more than one shard of {}",
                        dir.display()
                    )));
                }
            }
            checkpoint.shards.push((path, file));
        }
        Ok(checkpoint)
    }

    pub fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors.get(name).ok_or_else(|| {
            EngineError::Conversion(format!(
                "{} has no tensor {name}; is a shard missing, or is this another architecture than config.json says?",
                self.dir.display()
            ))
        })
    }

    /// A tensor's values as f32 (from f32, f16 or bf16).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let entry = self.entry(name)?;
        let (path, file) = &self.shards[entry.shard];
        let mut bytes = vec![0u8; (entry.end - entry.start) as usize];
        file.read_exact_at(&mut bytes, entry.start)
            .map_err(|error| {
                EngineError::Conversion(format!("reading {name} from {}: {error}", path.display()))
            })?;
        let elements: usize = entry.shape.iter().product();
        let values = match entry.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect::<Vec<f32>>(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(EngineError::Conversion(format!(
                    "{name} in {} is {other:?}; Vitrina converts f32, f16 and bf16 weights (a model quantised with bitsandbytes or GPTQ must be saved unquantised first)",
                    path.display()
                )));
            }
        };
        if values.len() != elements {
            return Err(EngineError::Conversion(format!(
                "{name} in {} holds {} values for its shape {:?}",
                path.display(),
                values.len(),
                entry.shape
            )));
        }
        Ok(values)
    }
}
