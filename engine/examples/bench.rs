//! Prefill and decode speed of the engine on the catalog's real models, or with `--shape` on
//! random-weight files with the shapes and tensor types of the models teams publish (see
//! `shapes/`), one JSON line each; with `--batch N`, also N answers decoded together (the
//! server's continuous batching), whose line gives their aggregate decode speed. Run through
//! `cargo xtask bench`, which builds it for this CPU's SIMD.

use std::fs::File;
use std::io::BufReader;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use engine::cache::ModelCache;
use engine::{
    ChatModel, Device, Flow, GenerateParams, LoadOptions, SamplingParams, catalog, load_chat_model,
};

// Shared with the GPU check, which also writes Q8_0 files and made-up vocabularies.
#[allow(dead_code)]
#[path = "shapes/mod.rs"]
mod shapes;

const DECODE_TOKENS: usize = 128;

fn main() {
    let mut models: Vec<String> = Vec::new();
    let mut shape_names: Vec<String> = Vec::new();
    let mut requantize = false;
    let mut prompt_tokens = 512;
    let mut batch = 1;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--model" => models.extend(arguments.next()),
            "--shape" => shape_names.extend(
                arguments
                    .next()
                    .iter()
                    .flat_map(|names| names.split(','))
                    .map(str::to_owned),
            ),
            "--requantize" => requantize = true,
            "--prompt-tokens" => prompt_tokens = positive(&mut arguments, "--prompt-tokens"),
            "--batch" => batch = positive(&mut arguments, "--batch"),
            other => {
                eprintln!(
                    "bench: unknown argument {other:?}; usage: bench [--model {}] [--shape {}[,…]] [--requantize] [--prompt-tokens N] [--batch N]",
                    catalog::NAMES.join("|"),
                    shapes::names().join("|")
                );
                std::process::exit(2);
            }
        }
    }
    if models.is_empty() && shape_names.is_empty() {
        models = catalog::NAMES
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
    }
    let sources = models
        .iter()
        .map(|name| (name, Source::catalogue(name)))
        .chain(shape_names.iter().map(|name| (name, Source::shape(name))));
    for (name, source) in sources {
        if let Err(error) =
            source.and_then(|source| bench(&source, requantize, prompt_tokens, batch))
        {
            eprintln!("bench: {name}: {error}");
            std::process::exit(1);
        }
    }
}

/// A model file to measure, and what its JSON lines call it.
struct Source {
    name: String,
    path: std::path::PathBuf,
    /// For a shape: the model it has the shape of.
    shape_of: Option<&'static str>,
    /// A shape's vocabulary size where its tokens are made up: prompts are then token ids.
    made_up_vocabulary: Option<usize>,
}

impl Source {
    fn catalogue(name: &str) -> Result<Self, shapes::Failure> {
        let file = catalog::by_name(name)
            .ok_or_else(|| format!("unknown model; known: {}", catalog::NAMES.join(", ")))?;
        eprintln!("bench: {name} from the model cache (fetched on the first run)");
        Ok(Self {
            name: name.to_owned(),
            path: ModelCache::from_env().get(&file, &mut |_, _| {})?,
            shape_of: None,
            made_up_vocabulary: None,
        })
    }

    /// The shape's file in the model cache's `shapes/`, written on the first run with the
    /// tokenizer and template of its catalogue model.
    fn shape(name: &str) -> Result<Self, shapes::Failure> {
        let shape = shapes::by_name(name)
            .ok_or_else(|| format!("unknown shape; known: {}", shapes::names().join(", ")))?;
        let mix = shapes::Mix::Q4KM;
        let cache = ModelCache::from_env();
        let dir = cache.dir().join("shapes");
        std::fs::create_dir_all(&dir)?;
        // The writer's version in the name: a file from an older recipe is never measured.
        let path = dir.join(format!("{name}-{}-random-v2.gguf", mix.label()));
        // Written once: the catalogue model is only read (and hashed) for its vocabulary then.
        if !path.exists() {
            eprintln!(
                "bench: writing {} (random weights, {} shape)",
                path.display(),
                shape.of
            );
            let content = match shape.tokenizer_of {
                Some(catalogue) => {
                    let file = catalog::by_name(catalogue).ok_or("no such catalogue model")?;
                    let file = cache.get(&file, &mut |_, _| {})?;
                    Some(gguf_file::Content::read(&mut BufReader::new(File::open(
                        file,
                    )?))?)
                }
                None => None,
            };
            let vocabulary = match &content {
                Some(content) => shapes::Vocabulary::Of(content),
                None => shapes::Vocabulary::MadeUp,
            };
            shapes::write_random(&path, shape, mix, &vocabulary)?;
        }
        Ok(Self {
            name: name.to_owned(),
            path,
            shape_of: Some(shape.of),
            made_up_vocabulary: shape.tokenizer_of.is_none().then_some(shape.vocab),
        })
    }
}

fn positive(arguments: &mut impl Iterator<Item = String>, flag: &str) -> usize {
    match arguments.next().and_then(|n| n.parse().ok()) {
        Some(n) if n > 0 => n,
        _ => {
            eprintln!("bench: {flag} needs a number above 0");
            std::process::exit(2);
        }
    }
}

fn bench(
    source: &Source,
    requantize: bool,
    prompt_tokens: usize,
    batch: usize,
) -> Result<(), shapes::Failure> {
    let name = source.name.as_str();
    let started = Instant::now();
    let mut reader = BufReader::new(File::open(&source.path)?);
    let mut model = load_chat_model(
        &mut reader,
        &source.path.display().to_string(),
        &LoadOptions {
            requantize,
            ..LoadOptions::default()
        },
        &Device::Cpu,
    )?;
    let load_seconds = started.elapsed().as_secs_f64();

    let once = match source.made_up_vocabulary {
        Some(vocabulary) => shapes::prompt_ids(1024, vocabulary),
        None => model
            .prompter
            .tokenizer
            .encode(include_str!("../tests/data/texto_es.txt"))?,
    };
    let prompt_ids: Vec<u32> = once.iter().copied().cycle().take(prompt_tokens).collect();
    if prompt_tokens + DECODE_TOKENS > model.prompter.context_length {
        return Err(format!(
            "{prompt_tokens} prompt tokens and {DECODE_TOKENS} more do not fit the model's context"
        )
        .into());
    }
    let params = GenerateParams {
        sampling: SamplingParams::greedy(),
        max_tokens: DECODE_TOKENS,
        ignore_eos: true,
        ..GenerateParams::default()
    };
    let completion = model.generate_from_ids(&prompt_ids, &params, &mut |_| Flow::Continue)?;

    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(num_cpus);
    println!(
        "{}",
        serde_json::json!({
            "model": name,
            "shape_of": source.shape_of,
            "arch": model.info.architecture,
            "quant": model.info.quantization,
            "requantized_to_q8_0": requantize,
            "backend": "cpu",
            "threads": threads,
            "prompt_tokens": completion.usage.prompt_tokens,
            "generated_tokens": completion.usage.completion_tokens,
            "prefill_tok_s": round(completion.timings.prefill_tokens_per_second),
            "decode_tok_s": round(completion.timings.decode_tokens_per_second),
            "load_s": round(load_seconds),
            "peak_rss_mb": peak_rss_mb(),
        })
    );
    if batch > 1 {
        let decode_tok_s = batched_decode(&mut model, &once, batch, &params)?;
        println!(
            "{}",
            serde_json::json!({
                "model": name,
                "shape_of": source.shape_of,
                "quant": model.info.quantization,
                "requantized_to_q8_0": requantize,
                "backend": "cpu",
                "threads": threads,
                "batch": batch,
                "generated_tokens": batch * DECODE_TOKENS,
                "aggregate_decode_tok_s": round(decode_tok_s),
            })
        );
    }
    Ok(())
}

/// `batch` answers to short prompts (64 tokens, each from another place in the text), decoded
/// together once every prompt is read: tokens per second of all of them.
fn batched_decode(
    model: &mut ChatModel,
    text: &[u32],
    batch: usize,
    params: &GenerateParams,
) -> Result<f64, shapes::Failure> {
    let mut answers = (0..batch)
        .map(|index| {
            let prompt: Vec<u32> = text
                .iter()
                .copied()
                .cycle()
                .skip(index * 97)
                .take(64)
                .collect();
            model.start(&prompt, params)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut decode_started = None;
    loop {
        let mut running: Vec<_> = answers
            .iter_mut()
            .filter(|answer| !answer.ended())
            .collect();
        if running.is_empty() {
            break;
        }
        if decode_started.is_none() && running.iter().all(|answer| answer.generated_tokens() > 0) {
            decode_started = Some((
                Instant::now(),
                running.iter().map(|a| a.generated_tokens()).sum::<usize>(),
            ));
        }
        model.step(&mut running)?;
    }
    let (started, already) = decode_started.ok_or("the answers never started decoding")?;
    let generated: usize = answers.iter().map(|answer| answer.generated_tokens()).sum();
    Ok((generated - already) as f64 / started.elapsed().as_secs_f64())
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The process's peak resident memory (Linux `VmHWM`), in MiB.
fn peak_rss_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
