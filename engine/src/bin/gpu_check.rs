//! The engine on a GPU, checked and measured in one run: the device check that
//! `cargo xtask gpu-check --prepare DIR` builds and `DIR/run.sh` starts on a GPU machine.
//!
//! It writes its models into `--dir`: the tiny fixed-answer models of each architecture the
//! tests load (see `tiny_model.rs`), and random-weight files with the real shapes of
//! Qwen2.5-0.5B and Qwen2.5-1.5B in a Q4_K_M-like mix and in Q8_0 (speed does not depend on the
//! weights' values). Then it prints one JSON line per result: the GPU; for each tiny model,
//! whether CUDA's greedy answer is the CPU's; for each shape, prefill (512 tokens) and decode
//! (128 tokens) speed through the server's own generation code, the GPU memory it took, and the
//! fraction of the GPU's memory bandwidth decode reaches (weight bytes read per token × tokens
//! per second ÷ peak bandwidth). Exit status 2: no GPU; 1: a check failed.

use std::borrow::Cow;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use engine::{
    ChatMessage, Device, Flow, GenerateParams, LoadOptions, Role, SamplingParams, load_chat_model,
};
use serde_json::json;

// Only its writer: the tests' tiny models, the same files.
#[allow(dead_code)]
#[path = "../../examples/tiny_model.rs"]
mod tiny_model;

const PROMPT_TOKENS: usize = 512;
const DECODE_TOKENS: usize = 128;

/// A real model's shape (from its GGUF metadata), filled with random weights.
struct Shape {
    name: &'static str,
    layers: usize,
    dim: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    vocab: usize,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "qwen2.5-0.5b",
        layers: 24,
        dim: 896,
        heads: 14,
        kv_heads: 2,
        ffn: 4864,
        vocab: 151_936,
    },
    Shape {
        name: "qwen2.5-1.5b",
        layers: 28,
        dim: 1536,
        heads: 12,
        kv_heads: 2,
        ffn: 8960,
        vocab: 151_936,
    },
];

/// How the weights are quantised.
#[derive(Clone, Copy)]
enum Mix {
    /// llama.cpp's Q4_K_M: Q4_K, with Q6_K for attn_v, ffn_down and the (tied) embeddings;
    /// where a row is not a whole number of 256-value blocks, Q5_0 and Q8_0 instead, as
    /// llama.cpp falls back.
    Q4KM,
    Q8_0,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Mix::Q4KM => "Q4_K_M",
            Mix::Q8_0 => "Q8_0",
        }
    }

    fn dtype(self, tensor: &str, columns: usize) -> GgmlDType {
        match self {
            Mix::Q8_0 => GgmlDType::Q8_0,
            Mix::Q4KM => {
                let wide = tensor.contains("attn_v")
                    || tensor.contains("ffn_down")
                    || tensor == "token_embd.weight";
                match (wide, columns % 256 == 0) {
                    (true, true) => GgmlDType::Q6K,
                    (true, false) => GgmlDType::Q8_0,
                    (false, true) => GgmlDType::Q4K,
                    (false, false) => GgmlDType::Q5_0,
                }
            }
        }
    }
}

type Failure = Box<dyn std::error::Error>;

fn main() {
    let mut dir = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--dir" => dir = arguments.next().map(PathBuf::from),
            other => {
                eprintln!("gpu-check: unknown argument {other:?}; usage: gpu_check --dir DIR");
                std::process::exit(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("gpu-check: usage: gpu_check --dir DIR (where its test models are written)");
        std::process::exit(2);
    };
    let gpu = match engine::device::cuda() {
        Ok(Some((device, name))) => (device, name),
        Ok(None) => {
            eprintln!(
                "gpu-check: no CUDA device: this build has no CUDA (build it with --features cuda)"
            );
            std::process::exit(2);
        }
        Err(reason) => {
            println!(
                "{}",
                json!({"check": "device", "cuda": false, "error": reason})
            );
            eprintln!("gpu-check: {reason}");
            std::process::exit(2);
        }
    };
    match run(&dir, &gpu.0, &gpu.1) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("gpu-check: {error}");
            std::process::exit(1);
        }
    }
}

/// Every check and measurement; `false` when a check failed.
fn run(dir: &Path, device: &Device, name: &str) -> Result<bool, Failure> {
    std::fs::create_dir_all(dir)?;
    let gpu = device.as_cuda_device()?.cuda_stream().context().clone();
    let (major, minor) = gpu.compute_capability()?;
    let bandwidth = peak_bandwidth(&gpu);
    println!(
        "{}",
        json!({
            "check": "device",
            "cuda": true,
            "gpu": name,
            "compute_capability": format!("{major}.{minor}"),
            "memory_mb": gpu.total_mem()? >> 20,
            "driver_cuda_version": driver_version(),
            "peak_bandwidth_gb_s": bandwidth.map(|b| round(b / 1e9)),
        })
    );
    let mut all_passed = true;

    let text = "¡Hola, Vitrina!";
    for architecture in ["llama", "phi3", "phi2"] {
        let path = dir.join(format!("tiny-{architecture}.gguf"));
        tiny_model::write(&path, text, architecture)?;
        let answer = |device: &Device| -> Result<String, Failure> {
            let mut model = load(&path, device)?;
            let params = GenerateParams {
                sampling: SamplingParams::greedy(),
                max_tokens: 4,
                ..GenerateParams::default()
            };
            let messages = [ChatMessage::new(Role::User, "¿Quién eres?")];
            Ok(model
                .generate(&messages, &params, &mut |_| Flow::Continue)?
                .text)
        };
        let (on_cpu, on_gpu) = (answer(&Device::Cpu)?, answer(device));
        let equal = on_gpu.as_ref().is_ok_and(|gpu| *gpu == on_cpu);
        all_passed &= equal;
        println!(
            "{}",
            json!({
                "check": "tiny_model_tokens",
                "arch": architecture,
                "cuda_equals_cpu": equal,
                "cpu": on_cpu,
                "cuda": on_gpu.as_ref().ok(),
                "cuda_error": on_gpu.as_ref().err().map(|error| error.to_string()),
            })
        );
    }

    for shape in &SHAPES {
        for mix in [Mix::Q4KM, Mix::Q8_0] {
            let path = dir.join(format!("{}-random-{}.gguf", shape.name, mix.label()));
            let weight_bytes = write_random(&path, shape, mix)?;
            if matches!(mix, Mix::Q8_0) {
                // Informative, not a pass or fail: random weights leave near-ties that
                // another order of summation may break the other way.
                let agreed = same_greedy_tokens(&path, shape.vocab, device);
                println!(
                    "{}",
                    json!({
                        "check": "random_weights_tokens",
                        "shape": shape.name,
                        "quant": mix.label(),
                        "tokens": AGREEMENT_TOKENS,
                        "cuda_equals_cpu_for_first": agreed.as_ref().ok(),
                        "error": agreed.as_ref().err().map(|error| error.to_string()),
                    })
                );
            }
            match measure(&path, shape.vocab, device, &gpu) {
                Ok(measured) => {
                    let read_per_second = weight_bytes as f64 * measured.decode_tok_s;
                    println!(
                        "{}",
                        json!({
                            "check": "shape_speed",
                            "shape": shape.name,
                            "quant": mix.label(),
                            "gpu": name,
                            "weights_mb": weight_bytes >> 20,
                            "prompt_tokens": PROMPT_TOKENS,
                            "prefill_tok_s": round(measured.prefill_tok_s),
                            "decode_tokens": DECODE_TOKENS,
                            "decode_tok_s": round(measured.decode_tok_s),
                            "gpu_memory_mb": measured.gpu_memory_bytes >> 20,
                            "decode_bandwidth_fraction": bandwidth.map(|peak| round(read_per_second / peak)),
                        })
                    );
                }
                Err(error) => {
                    all_passed = false;
                    println!(
                        "{}",
                        json!({"check": "shape_speed", "shape": shape.name, "quant": mix.label(), "error": error.to_string()})
                    );
                }
            }
        }
    }
    Ok(all_passed)
}

const AGREEMENT_TOKENS: usize = 16;

/// How many of the first [`AGREEMENT_TOKENS`] greedy tokens after a 32-token prompt CUDA and the
/// CPU agree on.
fn same_greedy_tokens(path: &Path, vocab: usize, device: &Device) -> Result<usize, Failure> {
    let prompt: Vec<u32> = (0..32)
        .map(|i| ((i * 104_729 + 7) % vocab) as u32)
        .collect();
    let params = GenerateParams {
        sampling: SamplingParams::greedy(),
        max_tokens: AGREEMENT_TOKENS,
        ignore_eos: true,
        ..GenerateParams::default()
    };
    let tokens = |device: &Device| -> Result<Vec<String>, Failure> {
        let mut pieces = Vec::new();
        load(path, device)?.generate_from_ids(&prompt, &params, &mut |piece| {
            pieces.push(piece.to_owned());
            Flow::Continue
        })?;
        Ok(pieces)
    };
    let (on_cpu, on_gpu) = (tokens(&Device::Cpu)?, tokens(device)?);
    Ok(on_cpu
        .iter()
        .zip(&on_gpu)
        .take_while(|(cpu, gpu)| cpu == gpu)
        .count())
}

fn load(path: &Path, device: &Device) -> Result<engine::ChatModel, Failure> {
    let mut reader = BufReader::new(std::fs::File::open(path)?);
    Ok(load_chat_model(
        &mut reader,
        &path.display().to_string(),
        &LoadOptions::default(),
        device,
    )?)
}

struct Measured {
    prefill_tok_s: f64,
    decode_tok_s: f64,
    /// What the GPU's free memory fell by while the model was loaded and ran.
    gpu_memory_bytes: usize,
}

fn measure(
    path: &Path,
    vocab: usize,
    device: &Device,
    gpu: &std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaContext>,
) -> Result<Measured, Failure> {
    let (free_before, _) = gpu.mem_get_info()?;
    let mut model = load(path, device)?;
    let prompt: Vec<u32> = (0..PROMPT_TOKENS)
        .map(|i| ((i * 7919 + 11) % vocab) as u32)
        .collect();
    let params = GenerateParams {
        sampling: SamplingParams::greedy(),
        max_tokens: DECODE_TOKENS,
        ignore_eos: true,
        ..GenerateParams::default()
    };
    // The first run compiles the kernels' PTX for this GPU (the driver's JIT) and sizes
    // candle's buffers: not what a visitor waits for after start-up.
    let warm_up = GenerateParams {
        max_tokens: 4,
        ..params.clone()
    };
    model.generate_from_ids(&prompt[..64], &warm_up, &mut |_| Flow::Continue)?;
    let started = Instant::now();
    let completion = model.generate_from_ids(&prompt, &params, &mut |_| Flow::Continue)?;
    let (free_after, _) = gpu.mem_get_info()?;
    if completion.usage.completion_tokens != DECODE_TOKENS {
        return Err(format!(
            "{} tokens decoded instead of {DECODE_TOKENS} in {:?}",
            completion.usage.completion_tokens,
            started.elapsed()
        )
        .into());
    }
    Ok(Measured {
        prefill_tok_s: completion.timings.prefill_tokens_per_second,
        decode_tok_s: completion.timings.decode_tokens_per_second,
        gpu_memory_bytes: free_before.saturating_sub(free_after),
    })
}

/// Writes `shape` with random weights in `mix` (unless the file is there from an earlier run)
/// and returns the bytes of weights one decoded token reads: every matrix, and the embedding
/// table whole, since it is also the (tied) output matrix.
fn write_random(path: &Path, shape: &Shape, mix: Mix) -> Result<u64, Failure> {
    let head_dim = shape.dim / shape.heads;
    let kv_dim = shape.kv_heads * head_dim;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut seed = 1u64;
    let mut matrix =
        |name: String, rows: usize, columns: usize| -> Result<(String, QTensor), Failure> {
            seed += 1;
            let dtype = mix.dtype(&name, columns);
            Ok((name, random_matrix(rows, columns, dtype, seed)?))
        };
    let vector = |name: String, length: usize, value: f32| -> Result<(String, QTensor), Failure> {
        let values = Tensor::full(value, length, &Device::Cpu)?;
        Ok((name, QTensor::quantize(&values, GgmlDType::F32)?))
    };
    tensors.push(matrix("token_embd.weight".into(), shape.vocab, shape.dim)?);
    tensors.push(vector("output_norm.weight".into(), shape.dim, 1.0)?);
    for layer in 0..shape.layers {
        let name = |part: &str| format!("blk.{layer}.{part}");
        tensors.push(vector(name("attn_norm.weight"), shape.dim, 1.0)?);
        tensors.push(vector(name("ffn_norm.weight"), shape.dim, 1.0)?);
        tensors.push(matrix(name("attn_q.weight"), shape.dim, shape.dim)?);
        tensors.push(matrix(name("attn_k.weight"), kv_dim, shape.dim)?);
        tensors.push(matrix(name("attn_v.weight"), kv_dim, shape.dim)?);
        tensors.push(vector(name("attn_q.bias"), shape.dim, 0.0)?);
        tensors.push(vector(name("attn_k.bias"), kv_dim, 0.0)?);
        tensors.push(vector(name("attn_v.bias"), kv_dim, 0.0)?);
        tensors.push(matrix(name("attn_output.weight"), shape.dim, shape.dim)?);
        tensors.push(matrix(name("ffn_gate.weight"), shape.ffn, shape.dim)?);
        tensors.push(matrix(name("ffn_up.weight"), shape.ffn, shape.dim)?);
        tensors.push(matrix(name("ffn_down.weight"), shape.dim, shape.ffn)?);
    }
    let weight_bytes: u64 = tensors
        .iter()
        .map(|(_, tensor)| tensor.storage_size_in_bytes() as u64)
        .sum();
    if path.exists() {
        return Ok(weight_bytes);
    }
    let mut tokens: Vec<String> = vec!["<|im_start|>".into(), "<|im_end|>".into()];
    tokens.extend((tokens.len()..shape.vocab).map(|id| format!("t{id}")));
    let string = |text: &str| Value::String(text.to_owned());
    let key = |name: &str| format!("qwen2.{name}");
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), string("qwen2")),
        (
            "general.name".into(),
            string(&format!("{} (random weights)", shape.name)),
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
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (key("rope.freq_base"), Value::F32(1_000_000.0)),
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
        ("tokenizer.ggml.merges".into(), Value::Array(Vec::new())),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(1)),
    ];
    let metadata: Vec<(&str, &Value)> = metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(name, tensor)| (name.as_str(), tensor))
        .collect();
    let partial = path.with_extension("part");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    gguf_file::write(&mut file, &metadata, &tensors)?;
    drop(file);
    std::fs::rename(&partial, path)?;
    Ok(weight_bytes)
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

/// Bytes per second the GPU's memory can deliver: twice (double data rate) its memory clock
/// times its bus width, as its driver reports them. `None` where the driver does not say.
fn peak_bandwidth(gpu: &candle_core::cuda_backend::cudarc::driver::CudaContext) -> Option<f64> {
    use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute;
    let clock_khz = gpu
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
        .ok()?;
    let bus_bits = gpu
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)
        .ok()?;
    (clock_khz > 0 && bus_bits > 0).then(|| 2.0 * clock_khz as f64 * 1e3 * bus_bits as f64 / 8.0)
}

/// The CUDA version the driver supports (`13.0`).
fn driver_version() -> Option<String> {
    let mut version = 0;
    // SAFETY: cuDriverGetVersion only writes the int it is given.
    let result =
        unsafe { candle_core::cuda_backend::cudarc::driver::sys::cuDriverGetVersion(&mut version) };
    (result == candle_core::cuda_backend::cudarc::driver::sys::CUresult::CUDA_SUCCESS)
        .then(|| format!("{}.{}", version / 1000, version % 1000 / 10))
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
