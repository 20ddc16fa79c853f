//! The engine on a GPU, checked and measured in one run: the device check that
//! `cargo xtask gpu-check --prepare DIR` builds and `DIR/run.sh` starts on a GPU machine.
//!
//! It writes its models into `--dir`: the tiny fixed-answer models of each architecture the
//! tests load (see `tiny_model.rs`), and random-weight files with the real shapes of
//! Qwen2.5-0.5B, Llama-3.2-1B and Qwen2.5-1.5B in llama.cpp's Q4_K_M mix and in Q8_0 (see
//! `shapes/`; speed does not depend on the weights' values). Then it prints one JSON line per result: the GPU; for each tiny model,
//! whether CUDA's greedy answer is the CPU's; for each shape, prefill (512 tokens) and decode
//! (128 tokens) speed through the server's own generation code, the GPU memory it took, and the
//! fraction of the GPU's memory bandwidth decode reaches (weight bytes read per token × tokens
//! per second ÷ peak bandwidth). Exit status 2: no GPU; 1: a check failed.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use engine::{
    ChatMessage, Device, Flow, GenerateParams, LoadOptions, Role, SamplingParams, load_chat_model,
};
use serde_json::json;

// Only its writer: the tests' tiny models, the same files.
#[allow(dead_code)]
#[path = "../../examples/tiny_model.rs"]
mod tiny_model;

// Shared with the bench, which also names the shapes and borrows catalogue vocabularies.
#[allow(dead_code)]
#[path = "../../examples/shapes/mod.rs"]
mod shapes;

use shapes::{Failure, Mix, Vocabulary};

const PROMPT_TOKENS: usize = 512;
const DECODE_TOKENS: usize = 128;

/// The shapes measured: the 0.5B and 1.5B sizes most teams publish, and a 1B Llama.
const MEASURED_SHAPES: [&str; 3] = ["qwen-0.5b", "llama-1b", "qwen-1.5b"];

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

    for shape in MEASURED_SHAPES
        .iter()
        .filter_map(|name| shapes::by_name(name))
    {
        for mix in [Mix::Q4KM, Mix::Q8_0] {
            let path = dir.join(format!("{}-random-{}.gguf", shape.name, mix.label()));
            let weight_bytes = shapes::write_random(&path, shape, mix, &Vocabulary::MadeUp)?;
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
    let prompt = shapes::prompt_ids(32, vocab);
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
    let prompt = shapes::prompt_ids(PROMPT_TOKENS, vocab);
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
