//! A team's checkpoint as they publish it — a Hugging Face folder of safetensors, or a LoRA
//! adapter on its base model — converted once into an ordinary GGUF file (native only).
//!
//! The server does it at build time (`vitrina --prefetch`), so a Space's cold start converts
//! nothing; the browser fallback then downloads and runs the very same file, and llama.cpp can
//! read it. Tensors are renamed to llama.cpp's names, transformed as its converter does
//! (Llama's q/k rows reordered for its interleaved rotation, Gemma's norms stored as 1 + w),
//! merged with the adapter (W + scale·B·A, in f32) and quantised ([`recipe`]) one at a time:
//! memory holds one tensor in f32 and its quantised copy, whatever the model's size.

mod architecture;
mod checkpoint;
mod from_hub;
mod lora;
pub mod recipe;
mod vocabulary;
mod writer;

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

pub use architecture::SUPPORTED;
use architecture::{Plan, Source, Transform};
use checkpoint::Checkpoint;
pub use from_hub::HubCheckpoint;
use lora::Adapter;
pub use recipe::Quantization;
use writer::{GgufWriter, PlannedTensor};

use crate::error::{EngineError, Result};

/// What to convert.
pub struct Conversion<'a> {
    /// The folder with config.json, the safetensors and the tokenizer files (for an adapter:
    /// its base model's).
    pub model: &'a Path,
    /// A PEFT adapter's folder (adapter_config.json, adapter_model.safetensors), merged in.
    pub adapter: Option<&'a Path>,
    /// Where tokenizer.json and tokenizer_config.json are, when not beside the weights (an
    /// adapter trained with its own chat template ships them).
    pub tokenizer: Option<&'a Path>,
    pub quantization: Quantization,
    /// Replaces the tokenizer's chat template (space.toml's `[model] chat_template`).
    pub chat_template: Option<&'a str>,
    /// `general.name`.
    pub name: &'a str,
}

/// One tensor done, for a progress line.
pub struct Converted<'a> {
    pub index: usize,
    pub total: usize,
    pub name: &'a str,
    pub dtype: GgmlDType,
}

/// What the conversion wrote.
#[derive(Debug)]
pub struct Report {
    pub architecture: String,
    pub tensors: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// Converts `conversion` into the GGUF file `out`. The file is written beside `out` under a
/// temporary name and renamed only when complete: a failure (a missing shard, a shape that
/// does not match config.json, a full disk) leaves no half-written file.
pub fn convert(
    conversion: &Conversion<'_>,
    out: &Path,
    progress: &mut dyn FnMut(Converted<'_>),
) -> Result<Report> {
    let started = web_time::Instant::now();
    let config_path = conversion.model.join("config.json");
    let config = std::fs::read_to_string(&config_path).map_err(|error| {
        EngineError::Conversion(format!(
            "{}: {error}; a Hugging Face checkpoint has its config.json beside its weights",
            config_path.display()
        ))
    })?;
    let plan = Plan::new(&config, &config_path.display().to_string())?;
    let checkpoint = Checkpoint::open(conversion.model, checkpoint::MODEL_WEIGHTS)?;
    let adapter = conversion
        .adapter
        .map(|dir| Adapter::open(dir, &checkpoint))
        .transpose()?;
    let tensors = plan.tensors(&checkpoint)?;
    if let Some(adapter) = &adapter {
        let read = tensors
            .iter()
            .filter_map(|tensor| match &tensor.source {
                Source::Read { hf, .. } => Some(hf.as_str()),
                Source::Made(_) => None,
            })
            .collect();
        adapter.check_targets(&read)?;
    }
    let tied = !tensors.iter().any(|tensor| tensor.gguf == "output.weight");
    let planned: Vec<PlannedTensor> = tensors
        .iter()
        .map(|tensor| PlannedTensor {
            name: tensor.gguf.clone(),
            shape: tensor.shape.clone(),
            dtype: conversion.quantization.tensor_type(
                &tensor.gguf,
                &tensor.shape,
                plan.layers,
                tied,
            ),
        })
        .collect();

    let mut metadata = vec![
        (
            "general.architecture".to_owned(),
            Value::String(plan.architecture.into()),
        ),
        (
            "general.name".to_owned(),
            Value::String(conversion.name.into()),
        ),
        (
            "general.file_type".to_owned(),
            Value::U32(conversion.quantization.file_type()),
        ),
        ("general.quantization_version".to_owned(), Value::U32(2)),
    ];
    metadata.extend(plan.metadata());
    metadata.extend(vocabulary::metadata(
        conversion.model,
        conversion.chat_template,
    )?);

    let directory = out
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)?;
    let partial = tempfile::NamedTempFile::new_in(directory)?;
    let failed_writing = |error: EngineError| match error {
        EngineError::Io(error) => EngineError::Conversion(format!(
            "writing {}: {error}; nothing was kept (free some disk space and run again)",
            out.display()
        )),
        other => other,
    };
    let mut writer = GgufWriter::new(
        std::io::BufWriter::new(partial.as_file()),
        &metadata,
        planned.clone(),
    )
    .map_err(failed_writing)?;
    let mut bytes = 0u64;
    for (index, (tensor, plan_of_it)) in tensors.iter().zip(&planned).enumerate() {
        let values = match &tensor.source {
            Source::Made(values) => values.clone(),
            Source::Read { hf, transform } => {
                let mut values = checkpoint.read_f32(hf)?;
                if let Some(adapter) = &adapter {
                    adapter.merge_into(hf, &tensor.shape, &mut values)?;
                }
                match *transform {
                    Transform::None => values,
                    Transform::PlusOne => values.into_iter().map(|value| value + 1.0).collect(),
                    Transform::InterleaveHeads(heads) => {
                        interleave_heads(&values, &tensor.shape, heads)
                    }
                }
            }
        };
        let data = quantize(&values, &tensor.shape, plan_of_it.dtype)?;
        writer.tensor(&data).map_err(failed_writing)?;
        bytes += data.len() as u64;
        progress(Converted {
            index: index + 1,
            total: tensors.len(),
            name: &tensor.gguf,
            dtype: plan_of_it.dtype,
        });
    }
    let buffered = writer.finish().map_err(failed_writing)?;
    buffered
        .into_inner()
        .map_err(|error| failed_writing(error.into_error().into()))?
        .sync_all()
        .map_err(|error| failed_writing(error.into()))?;
    partial
        .persist(out)
        .map_err(|error| failed_writing(error.error.into()))?;
    Ok(Report {
        architecture: plan.architecture.into(),
        tensors: tensors.len(),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A JSON file of a checkpoint or adapter folder; the error names the file.
fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| EngineError::Conversion(format!("{}: {error}", path.display())))?;
    serde_json::from_str(&text).map_err(|error| {
        EngineError::Conversion(format!("{} is not valid JSON: {error}", path.display()))
    })
}

/// Llama's q and k rows from Hugging Face's half-split rotation order to llama.cpp's
/// interleaved one (its converter's `permute`): within each head, row `j·d/2 + i` becomes row
/// `2i + j`.
fn interleave_heads(values: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let (rows, columns) = (shape[0], shape.get(1).copied().unwrap_or(1));
    let head_rows = rows / heads;
    let half = head_rows / 2;
    let mut out = vec![0f32; values.len()];
    for head in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = head * head_rows + j * half + i;
                let to = head * head_rows + 2 * i + j;
                out[to * columns..(to + 1) * columns]
                    .copy_from_slice(&values[from * columns..(from + 1) * columns]);
            }
        }
    }
    out
}

/// The bytes of `values` (of `shape`) in `dtype`, the rows quantised on every core.
fn quantize(values: &[f32], shape: &[usize], dtype: GgmlDType) -> Result<Vec<u8>> {
    match dtype {
        GgmlDType::F32 => {
            return Ok(values
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect());
        }
        GgmlDType::F16 => {
            return Ok(values
                .iter()
                .flat_map(|value| half::f16::from_f32(*value).to_le_bytes())
                .collect());
        }
        _ => {}
    }
    let columns = shape.last().copied().unwrap_or(1);
    let rows = values.len() / columns;
    let threads = crate::threads();
    let rows_each = rows.div_ceil(threads).max(1);
    let pieces: Vec<Result<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = values
            .chunks(rows_each * columns)
            .map(|chunk| {
                scope.spawn(move || -> Result<Vec<u8>> {
                    let tensor =
                        Tensor::from_slice(chunk, (chunk.len() / columns, columns), &Device::Cpu)?;
                    Ok(QTensor::quantize(&tensor, dtype)?.data()?.into_owned())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Err(EngineError::Conversion("quantising a tensor failed".into()))
                })
            })
            .collect()
    });
    let mut bytes = Vec::new();
    for piece in pieces {
        bytes.extend_from_slice(&piece?);
    }
    Ok(bytes)
}
