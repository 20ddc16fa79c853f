//! What converting a team's checkpoint costs: a random bf16 checkpoint with a published
//! model's shape (`shapes/`: Llama-3.2-1B, Mistral-7B…) written as safetensors shards, then
//! converted to Q4_K_M as `vitrina --prefetch` does; one JSON line with the conversion's time
//! and peak memory (the process's VmHWM), then the converted file's prefill and decode speed.
//! `convert_bench --shape llama-1b [--dir DIR]` (the checkpoint and the GGUF go to DIR, a
//! temporary folder by default: a 7B shape needs 20 GB of disk).

use std::time::Instant;

use engine::convert::{Conversion, Quantization, convert};
use engine::{Device, Flow, GenerateParams, LoadOptions, SamplingParams, load_chat_model};

#[allow(dead_code)]
#[path = "shapes/mod.rs"]
mod shapes;

#[allow(dead_code)]
#[path = "checkpoints/mod.rs"]
mod checkpoints;

/// Peak resident memory so far, in MB (Linux's VmHWM).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), checkpoints::Failure> {
    let mut shape_name = "llama-1b".to_owned();
    let mut dir = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--shape" => shape_name = arguments.next().unwrap_or_default(),
            "--dir" => dir = arguments.next().map(std::path::PathBuf::from),
            other => {
                eprintln!(
                    "convert_bench: unknown argument {other:?}; usage: convert_bench [--shape {}] [--dir DIR]",
                    shapes::names().join("|")
                );
                std::process::exit(2);
            }
        }
    }
    let Some(shape) = shapes::by_name(&shape_name) else {
        eprintln!(
            "convert_bench: no shape {shape_name:?}; shapes: {}",
            shapes::names().join(", ")
        );
        std::process::exit(2);
    };
    let temporary = tempfile::tempdir()?;
    let root = dir.unwrap_or_else(|| temporary.path().to_owned());
    let checkpoint = root.join(format!("{shape_name}-bf16"));
    let spec = checkpoints::Spec {
        model_type: if shape.architecture == "qwen2" {
            "qwen2"
        } else {
            "llama"
        },
        layers: shape.layers,
        hidden: shape.dim,
        heads: shape.heads,
        kv_heads: shape.kv_heads,
        head_dim: shape.dim / shape.heads,
        ffn: shape.ffn,
        vocab: shape.vocab,
        tied: shape.tied,
        llama3_rope: false,
        bf16: true,
        scale: 0.02,
        shards: (shape.layers / 8).max(1),
        seed: 1,
    };
    let written = Instant::now();
    checkpoints::write(&checkpoint, &spec)?;
    let write_seconds = written.elapsed().as_secs_f64();
    let shard_bytes: u64 = std::fs::read_dir(&checkpoint)?
        .flatten()
        .filter(|entry| {
            entry
                .path()
                .extension()
                .is_some_and(|ext| ext == "safetensors")
        })
        .map(|entry| entry.metadata().map_or(0, |meta| meta.len()))
        .sum();
    let before = peak_rss_mb();
    let out = root.join(format!("{shape_name}-q4_k_m.gguf"));
    let report = convert(
        &Conversion {
            model: &checkpoint,
            adapter: None,
            tokenizer: None,
            quantization: Quantization::Q4KM,
            chat_template: None,
            name: shape.of,
        },
        &out,
        &mut |_| {},
    )?;
    println!(
        "{{\"case\":\"convert\",\"shape\":\"{shape_name}\",\"of\":\"{}\",\"safetensors_gb\":{:.2},\"gguf_gb\":{:.2},\"tensors\":{},\"convert_s\":{:.1},\"peak_rss_mb\":{:.0},\"rss_before_mb\":{before:.0},\"write_checkpoint_s\":{write_seconds:.1},\"threads\":{}}}",
        shape.of,
        shard_bytes as f64 / 1e9,
        report.bytes as f64 / 1e9,
        report.tensors,
        report.seconds,
        peak_rss_mb(),
        engine::threads(),
    );
    std::fs::remove_dir_all(&checkpoint)?;

    // The converted file as the server runs it.
    let loaded = Instant::now();
    let mut model = load_chat_model(
        &mut std::io::BufReader::new(std::fs::File::open(&out)?),
        &shape_name,
        &LoadOptions::default(),
        &Device::Cpu,
    )?;
    let load_seconds = loaded.elapsed().as_secs_f64();
    let prompt = shapes::prompt_ids(512, 259);
    let params = GenerateParams {
        sampling: SamplingParams::greedy(),
        max_tokens: 32,
        ignore_eos: true,
        ..GenerateParams::default()
    };
    let completion = model.generate_from_ids(&prompt, &params, &mut |_| Flow::Continue)?;
    println!(
        "{{\"case\":\"converted\",\"shape\":\"{shape_name}\",\"load_s\":{load_seconds:.1},\"prefill_tokens_per_second\":{:.1},\"decode_tokens_per_second\":{:.2}}}",
        completion.timings.prefill_tokens_per_second, completion.timings.decode_tokens_per_second,
    );
    Ok(())
}
