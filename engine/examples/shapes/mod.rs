//! Random-weight GGUFs with the exact tensor shapes and tensor types of the models teams
//! publish, for the bench (`cargo xtask bench --shape …`) and the GPU device check: speed does
//! not depend on the weights' values, and these are made in seconds instead of downloaded.
//!
//! The tensor types follow llama.cpp's own Q4_K_M recipe, as the converter applies it
//! ([`engine::convert::recipe`]). `tests/shapes_tests.rs` checks it tensor by tensor against the catalogue's
//! Qwen2.5-Coder-0.5B Q4_K_M, whose 896-wide rows give a mix of Q5_0, Q8_0, Q4_K and Q6_K.

use std::borrow::Cow;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};

pub type Failure = Box<dyn std::error::Error>;

/// A published model's shape, as its GGUF metadata gives it.
pub struct Shape {
    pub name: &'static str,
    /// The model it is the shape of.
    pub of: &'static str,
    /// `general.architecture`.
    pub architecture: &'static str,
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    /// The output matrix is the embedding table (no `output.weight`). Qwen's own GGUFs carry
    /// an `output.weight` even where the model ties them.
    pub tied: bool,
    /// Qwen2 has biases on q, k and v.
    pub qkv_bias: bool,
    pub rope_base: f32,
    /// The catalogue model whose tokenizer and chat template the bench gives it: Qwen's own
    /// for the Qwen shapes, SmolLM2's (49k tokens, padded) for Llama's 128k. `None` where no
    /// catalogue vocabulary fits (Mistral's 32,768 tokens): made-up tokens (which llama.cpp
    /// also reads), and the bench's prompts are token ids.
    pub tokenizer_of: Option<&'static str>,
}

pub const SHAPES: [Shape; 4] = [
    Shape {
        name: "qwen-0.5b",
        of: "Qwen2.5-0.5B-Instruct",
        architecture: "qwen2",
        layers: 24,
        dim: 896,
        heads: 14,
        kv_heads: 2,
        ffn: 4864,
        vocab: 151_936,
        tied: false,
        qkv_bias: true,
        rope_base: 1_000_000.0,
        tokenizer_of: Some("qwen2.5-coder-0.5b"),
    },
    Shape {
        name: "llama-1b",
        of: "Llama-3.2-1B-Instruct",
        architecture: "llama",
        layers: 16,
        dim: 2048,
        heads: 32,
        kv_heads: 8,
        ffn: 8192,
        vocab: 128_256,
        tied: true,
        qkv_bias: false,
        rope_base: 500_000.0,
        tokenizer_of: Some("smollm2-135m"),
    },
    Shape {
        name: "qwen-1.5b",
        of: "Qwen2.5-1.5B-Instruct",
        architecture: "qwen2",
        layers: 28,
        dim: 1536,
        heads: 12,
        kv_heads: 2,
        ffn: 8960,
        vocab: 151_936,
        tied: false,
        qkv_bias: true,
        rope_base: 1_000_000.0,
        tokenizer_of: Some("qwen2.5-coder-0.5b"),
    },
    Shape {
        name: "mistral-7b",
        of: "Mistral-7B-Instruct-v0.3",
        architecture: "llama",
        layers: 32,
        dim: 4096,
        heads: 32,
        kv_heads: 8,
        ffn: 14_336,
        vocab: 32_768,
        tied: false,
        qkv_bias: false,
        rope_base: 1_000_000.0,
        tokenizer_of: None,
    },
];

pub fn by_name(name: &str) -> Option<&'static Shape> {
    SHAPES.iter().find(|shape| shape.name == name)
}

pub fn names() -> Vec<&'static str> {
    SHAPES.iter().map(|shape| shape.name).collect()
}

/// How the weights are quantised: the converter's own recipe ([`engine::convert::recipe`]),
/// so that the bench's files are typed as teams' converted models are.
pub use engine::convert::Quantization as Mix;

/// The vocabulary the file carries: a catalogue model's own (tokenizer, merges, template),
/// padded to the shape's size, so prompts tokenise and render as with a real model; or made-up
/// tokens where no catalogue model is at hand (the GPU machine).
pub enum Vocabulary<'a> {
    Of(&'a gguf_file::Content),
    MadeUp,
}

/// One tensor of a shape's file: a matrix (`rows × columns`, random) or an f32 vector (`fill`:
/// ones for norms, zeros for biases).
pub struct Planned {
    pub name: String,
    pub dtype: GgmlDType,
    pub rows: usize,
    pub columns: usize,
    fill: Option<f32>,
}

impl Planned {
    pub fn bytes(&self) -> u64 {
        (self.rows * self.columns / self.dtype.block_size() * self.dtype.type_size()) as u64
    }
}

/// Every tensor of `shape` in `mix`, in the order llama.cpp writes them.
pub fn layout(shape: &Shape, mix: Mix) -> Vec<Planned> {
    let head_dim = shape.dim / shape.heads;
    let kv_dim = shape.kv_heads * head_dim;
    let matrix = |name: String, rows: usize, columns: usize| Planned {
        dtype: mix.tensor_type(&name, &[rows, columns], shape.layers, shape.tied),
        name,
        rows,
        columns,
        fill: None,
    };
    let vector = |name: String, length: usize, value: f32| Planned {
        name,
        dtype: GgmlDType::F32,
        rows: 1,
        columns: length,
        fill: Some(value),
    };
    let mut tensors = vec![matrix("token_embd.weight".into(), shape.vocab, shape.dim)];
    if !shape.tied {
        tensors.push(matrix("output.weight".into(), shape.vocab, shape.dim));
    }
    tensors.push(vector("output_norm.weight".into(), shape.dim, 1.0));
    for layer in 0..shape.layers {
        let name = |part: &str| format!("blk.{layer}.{part}");
        tensors.push(vector(name("attn_norm.weight"), shape.dim, 1.0));
        tensors.push(vector(name("ffn_norm.weight"), shape.dim, 1.0));
        tensors.push(matrix(name("attn_q.weight"), shape.dim, shape.dim));
        tensors.push(matrix(name("attn_k.weight"), kv_dim, shape.dim));
        tensors.push(matrix(name("attn_v.weight"), kv_dim, shape.dim));
        if shape.qkv_bias {
            tensors.push(vector(name("attn_q.bias"), shape.dim, 0.0));
            tensors.push(vector(name("attn_k.bias"), kv_dim, 0.0));
            tensors.push(vector(name("attn_v.bias"), kv_dim, 0.0));
        }
        tensors.push(matrix(name("attn_output.weight"), shape.dim, shape.dim));
        tensors.push(matrix(name("ffn_gate.weight"), shape.ffn, shape.dim));
        tensors.push(matrix(name("ffn_up.weight"), shape.ffn, shape.dim));
        tensors.push(matrix(name("ffn_down.weight"), shape.dim, shape.ffn));
    }
    tensors
}

/// `count` token ids spread over a made-up vocabulary of `size`: the prompts of a file whose
/// tokens are not text.
pub fn prompt_ids(count: usize, size: usize) -> Vec<u32> {
    (0..count)
        .map(|i| ((i * 7919 + 11) % size) as u32)
        .collect()
}

/// Writes `shape` with random weights in `mix` (unless the file is there from an earlier run)
/// and returns the bytes of weights one decoded token reads: every matrix, and the output
/// matrix whole (the embedding table when tied; an untied one is read a row at a time).
pub fn write_random(
    path: &Path,
    shape: &Shape,
    mix: Mix,
    vocabulary: &Vocabulary,
) -> Result<u64, Failure> {
    let planned = layout(shape, mix);
    let read_per_token: u64 = planned
        .iter()
        .filter(|tensor| tensor.name != "token_embd.weight" || shape.tied)
        .map(Planned::bytes)
        .sum();
    if path.exists() {
        return Ok(read_per_token);
    }
    let tensors = planned
        .iter()
        .zip(1u64..)
        .map(|(tensor, seed)| {
            let made = match tensor.fill {
                Some(value) => QTensor::quantize(
                    &Tensor::full(value, tensor.columns, &Device::Cpu)?,
                    GgmlDType::F32,
                )?,
                None => random_matrix(tensor.rows, tensor.columns, tensor.dtype, seed)?,
            };
            Ok((tensor.name.as_str(), made))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let key = |name: &str| format!("{}.{name}", shape.architecture);
    let string = |text: &str| Value::String(text.to_owned());
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), string(shape.architecture)),
        (
            "general.name".into(),
            string(&format!(
                "{} shape, random weights, {}",
                shape.of,
                mix.label()
            )),
        ),
        (key("context_length"), Value::U32(32_768)),
        (key("embedding_length"), Value::U32(shape.dim as u32)),
        (key("feed_forward_length"), Value::U32(shape.ffn as u32)),
        (key("block_count"), Value::U32(shape.layers as u32)),
        (key("attention.head_count"), Value::U32(shape.heads as u32)),
        (
            key("attention.head_count_kv"),
            Value::U32(shape.kv_heads as u32),
        ),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (key("rope.freq_base"), Value::F32(shape.rope_base)),
    ];
    metadata.extend(vocabulary_metadata(vocabulary, shape.vocab)?);
    let metadata: Vec<(&str, &Value)> = metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(name, tensor)| (*name, tensor))
        .collect();
    let partial = path.with_extension("part");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    gguf_file::write(&mut file, &metadata, &tensors)?;
    drop(file);
    std::fs::rename(&partial, path)?;
    Ok(read_per_token)
}

fn vocabulary_metadata(
    vocabulary: &Vocabulary,
    size: usize,
) -> Result<Vec<(String, Value)>, Failure> {
    let string = |text: &str| Value::String(text.to_owned());
    match vocabulary {
        Vocabulary::Of(content) => {
            let tokens = match content.metadata.get("tokenizer.ggml.tokens") {
                Some(Value::Array(tokens)) => tokens.clone(),
                _ => return Err("the catalogue model has no tokenizer.ggml.tokens".into()),
            };
            if tokens.len() > size {
                return Err(format!(
                    "the catalogue model's {} tokens do not fit a {size}-token vocabulary",
                    tokens.len()
                )
                .into());
            }
            let mut types = match content.metadata.get("tokenizer.ggml.token_type") {
                Some(Value::Array(types)) => types.clone(),
                _ => vec![Value::I32(1); tokens.len()],
            };
            let mut tokens = tokens;
            for id in tokens.len()..size {
                tokens.push(string(&format!("<|unused_{id}|>")));
                // Plain tokens no merge leads to: prompts encode as with the catalogue model.
                types.push(Value::I32(1));
            }
            let mut metadata = vec![
                ("tokenizer.ggml.tokens".to_owned(), Value::Array(tokens)),
                ("tokenizer.ggml.token_type".to_owned(), Value::Array(types)),
            ];
            metadata.extend(
                content
                    .metadata
                    .iter()
                    .filter(|(key, _)| {
                        (key.starts_with("tokenizer.") && !key.starts_with("tokenizer.ggml.token"))
                            || key.as_str() == "tokenizer.ggml.token_type_count"
                    })
                    .map(|(key, value)| (key.clone(), value.clone())),
            );
            Ok(metadata)
        }
        Vocabulary::MadeUp => {
            // One merge of two tokens into a third: llama.cpp refuses a GPT-2 vocabulary without
            // merges (an empty array has no element type), so llama-bench can read the same file.
            let mut tokens: Vec<String> = ["<|im_start|>", "<|im_end|>", "t", "1", "t1"]
                .map(str::to_owned)
                .into();
            tokens.extend((tokens.len()..size).map(|id| format!("t{id}")));
            Ok(vec![
                ("tokenizer.ggml.model".into(), string("gpt2")),
                ("tokenizer.ggml.pre".into(), string("default")),
                (
                    "tokenizer.ggml.tokens".into(),
                    Value::Array(tokens.iter().map(|token| string(token)).collect()),
                ),
                (
                    "tokenizer.ggml.token_type".into(),
                    Value::Array(
                        (0..tokens.len())
                            .map(|id| Value::I32(if id < 2 { 3 } else { 1 }))
                            .collect(),
                    ),
                ),
                (
                    "tokenizer.ggml.merges".into(),
                    Value::Array(vec![string("t 1")]),
                ),
                ("tokenizer.ggml.eos_token_id".into(), Value::U32(1)),
            ])
        }
    }
}

/// A `rows × columns` matrix of `dtype` whose rows repeat 32 quantised random rows: real
/// blocks (finite scales), made in a moment even for a 150k-row embedding table.
fn random_matrix(
    rows: usize,
    columns: usize,
    dtype: GgmlDType,
    seed: u64,
) -> Result<QTensor, Failure> {
    let tile_rows = rows.min(32);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..tile_rows * columns)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect();
    let tile = QTensor::quantize(
        &Tensor::from_vec(values, (tile_rows, columns), &Device::Cpu)?,
        dtype,
    )?;
    let tile_bytes = tile.data()?;
    let row_bytes = tile_bytes.len() / tile_rows;
    let mut bytes = Vec::with_capacity(rows * row_bytes);
    while bytes.len() < rows * row_bytes {
        let wanted = (rows * row_bytes - bytes.len()).min(tile_bytes.len());
        bytes.extend_from_slice(&tile_bytes[..wanted]);
    }
    let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, dtype)?;
    Ok(QTensor::new(storage, (rows, columns))?)
}
