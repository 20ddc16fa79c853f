//! Teams' checkpoints converted to GGUF and checked against an independent implementation:
//! tiny random Hugging Face checkpoints in each supported architecture's real layout
//! (`examples/checkpoints`), converted by the engine, then run by the engine and by
//! candle-transformers' float models loading the very same safetensors.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{gemma, gemma2, gemma3, llama, qwen2, qwen3};
use engine::convert::{Conversion, Quantization, convert};

#[allow(dead_code)]
#[path = "../examples/checkpoints/mod.rs"]
mod checkpoints;
use checkpoints::Spec;

const PROMPT: [u32; 7] = [256, 72, 111, 108, 97, 33, 257];

fn shards(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "safetensors"))
        .collect();
    files.sort();
    files
}

/// The next token's logits after PROMPT, from candle-transformers' float model.
fn reference_logits(dir: &Path, model_type: &str) -> Vec<f32> {
    let device = Device::Cpu;
    // SAFETY: the test's own files, not changed while mapped.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&shards(dir), DType::F32, &device) }.unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let input = Tensor::new(&PROMPT, &device).unwrap().unsqueeze(0).unwrap();
    let logits = match model_type {
        "llama" | "mistral" => {
            let config: llama::LlamaConfig = serde_json::from_str(&config).unwrap();
            let config = config.into_config(false);
            let model = llama::Llama::load(vb, &config).unwrap();
            let mut cache = llama::Cache::new(true, DType::F32, &config, &device).unwrap();
            model.forward(&input, 0, &mut cache).unwrap()
        }
        "qwen2" => {
            let config: qwen2::Config = serde_json::from_str(&config).unwrap();
            qwen2::ModelForCausalLM::new(&config, vb)
                .unwrap()
                .forward(&input, 0)
                .unwrap()
        }
        "qwen3" => {
            let config: qwen3::Config = serde_json::from_str(&config).unwrap();
            qwen3::ModelForCausalLM::new(&config, vb)
                .unwrap()
                .forward(&input, 0)
                .unwrap()
        }
        "gemma" => {
            let config: gemma::Config = serde_json::from_str(&config).unwrap();
            gemma::Model::new(false, &config, vb)
                .unwrap()
                .forward(&input, 0)
                .unwrap()
        }
        "gemma2" => {
            let config: gemma2::Config = serde_json::from_str(&config).unwrap();
            gemma2::Model::new(false, &config, vb)
                .unwrap()
                .forward(&input, 0)
                .unwrap()
        }
        _ => {
            let config: gemma3::Config = serde_json::from_str(&config).unwrap();
            let mut model = gemma3::Model::new(false, &config, vb).unwrap();
            // Token by token: its rotating cache refuses a prompt longer than the window (which
            // the checkpoint's window of 4 makes, so the local layers' window shows).
            let mut logits = None;
            for (position, token) in PROMPT.iter().enumerate() {
                let input = Tensor::new(&[*token], &device)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                logits = Some(model.forward(&input, position).unwrap());
            }
            logits.unwrap()
        }
    };
    logits.flatten_all().unwrap().to_vec1().unwrap()
}

/// The same from the converted file, run by the engine.
fn engine_logits(gguf: &Path) -> Vec<f32> {
    let mut reader = Cursor::new(std::fs::read(gguf).unwrap());
    let file = engine::Gguf::read(&mut reader, "converted").unwrap();
    let mut model = engine::Model::load(file, &mut reader, &Device::Cpu, false).unwrap();
    let mut sequence = model.new_sequence();
    model
        .forward_one(&mut sequence, &PROMPT)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn convert_to(
    model: &Path,
    adapter: Option<&Path>,
    quantization: Quantization,
    out: &Path,
) -> engine::convert::Report {
    convert(
        &Conversion {
            model,
            adapter,
            tokenizer: None,
            quantization,
            chat_template: None,
            name: "prueba",
        },
        out,
        &mut |_| {},
    )
    .unwrap_or_else(|error| panic!("{}: {error}", model.display()))
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

/// The largest difference relative to the largest reference logit.
fn relative_error(found: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(found.len(), expected.len());
    let largest = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    found
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / largest
}

#[test]
fn every_architecture_converts_and_matches_candle_transformers_float_model() {
    let root = tempfile::tempdir().unwrap();
    // f16 holds bf16 weights exactly: what differs is the order of sums (1e-5 measured).
    // q8_0 rounds each weight, and the kernels each activation, to 8 bits per block of 32: a
    // random model this small amplifies it to 3–7% of the largest logit (measured).
    for (model_type, f16_tolerance, q8_tolerance) in [
        ("llama", 0.001, 0.12),
        ("mistral", 0.001, 0.12),
        ("qwen2", 0.001, 0.12),
        ("qwen3", 0.001, 0.12),
        ("gemma", 0.001, 0.12),
        ("gemma2", 0.001, 0.12),
        ("gemma3_text", 0.001, 0.12),
    ] {
        let mut spec = Spec::tiny(model_type);
        if model_type == "mistral" {
            spec.llama3_rope = false;
        }
        let dir = root.path().join(model_type);
        checkpoints::write(&dir, &spec).unwrap();
        let expected = reference_logits(&dir, model_type);
        for (quantization, tolerance) in [
            (Quantization::F16, f16_tolerance),
            (Quantization::Q8_0, q8_tolerance),
        ] {
            let out = root
                .path()
                .join(format!("{model_type}-{}.gguf", quantization.name()));
            convert_to(&dir, None, quantization, &out);
            let found = engine_logits(&out);
            let error = relative_error(&found, &expected);
            println!(
                "{{\"case\":\"convert\",\"architecture\":\"{model_type}\",\"quantization\":\"{}\",\"max_relative_logit_error\":{error:.5}}}",
                quantization.name()
            );
            assert!(
                error < tolerance,
                "{model_type} {}: logits differ by {error} of the largest",
                quantization.name()
            );
            assert_eq!(
                argmax(&found),
                argmax(&expected),
                "{model_type} {}: another top token",
                quantization.name()
            );
        }
    }
}

#[test]
fn a_lora_adapter_merged_equals_base_plus_adapter_computed_apart() {
    let root = tempfile::tempdir().unwrap();
    for rslora in [false, true] {
        let spec = Spec {
            shards: 1,
            ..Spec::tiny("qwen2")
        };
        let base = root.path().join(format!("base-{rslora}"));
        let adapter = root.path().join(format!("adapter-{rslora}"));
        checkpoints::write(&base, &spec).unwrap();
        let rank = 4;
        checkpoints::write_adapter(&adapter, &spec, "org/base", rank, rslora).unwrap();
        // The merge written out by hand: W + scale·B·A, as a plain float checkpoint.
        let merged = root.path().join(format!("merged-{rslora}"));
        std::fs::create_dir_all(&merged).unwrap();
        for name in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            std::fs::copy(base.join(name), merged.join(name)).unwrap();
        }
        let device = Device::Cpu;
        let load = |path: PathBuf| candle_core::safetensors::load(path, &device).unwrap();
        let weights = load(base.join("model.safetensors"));
        let lora = load(adapter.join("adapter_model.safetensors"));
        let scale = if rslora {
            2.0 * rank as f64 / (rank as f64).sqrt()
        } else {
            2.0
        };
        let mut out = std::collections::HashMap::new();
        for (name, tensor) in weights {
            let tensor = tensor.to_dtype(DType::F32).unwrap();
            let a = format!(
                "base_model.model.{}",
                name.replace(".weight", ".lora_A.weight")
            );
            let tensor = match (lora.get(&a), lora.get(&a.replace("lora_A", "lora_B"))) {
                (Some(a), Some(b)) => (tensor + (b.matmul(a).unwrap() * scale).unwrap()).unwrap(),
                _ => tensor,
            };
            out.insert(name, tensor);
        }
        candle_core::safetensors::save(&out, merged.join("model.safetensors")).unwrap();
        let expected = reference_logits(&merged, "qwen2");
        let gguf = root.path().join(format!("adapted-{rslora}.gguf"));
        convert_to(&base, Some(&adapter), Quantization::F16, &gguf);
        let found = engine_logits(&gguf);
        let error = relative_error(&found, &expected);
        println!(
            "{{\"case\":\"lora\",\"rslora\":{rslora},\"max_relative_logit_error\":{error:.5}}}"
        );
        assert!(error < 0.01, "rslora {rslora}: {error}");
        // The adapter changes the model: the base alone answers otherwise.
        let plain = root.path().join(format!("plain-{rslora}.gguf"));
        convert_to(&base, None, Quantization::F16, &plain);
        assert!(relative_error(&engine_logits(&plain), &expected) > 0.05);
    }
}

#[test]
fn the_q4_k_m_recipe_gives_llama_cpp_types_and_the_file_generates() {
    let root = tempfile::tempdir().unwrap();
    let spec = Spec {
        hidden: 256,
        heads: 8,
        kv_heads: 2,
        head_dim: 32,
        ffn: 512,
        layers: 8,
        tied: false,
        ..Spec::tiny("qwen3")
    };
    let dir = root.path().join("qwen3");
    checkpoints::write(&dir, &spec).unwrap();
    let out = root.path().join("qwen3-q4_k_m.gguf");
    let report = convert_to(&dir, None, Quantization::Q4KM, &out);
    assert_eq!(report.architecture, "qwen3");
    let mut reader = Cursor::new(std::fs::read(&out).unwrap());
    let gguf = engine::Gguf::read(&mut reader, "q4").unwrap();
    let dtype = |name: &str| gguf.content.tensor_infos[name].ggml_dtype;
    use engine::GgmlDType::{F32, Q4K, Q6K};
    assert_eq!(dtype("output.weight"), Q6K);
    assert_eq!(dtype("token_embd.weight"), Q4K);
    assert_eq!(
        dtype("blk.0.attn_v.weight"),
        Q6K,
        "the first eighth gets more bits"
    );
    assert_eq!(dtype("blk.2.attn_v.weight"), Q4K);
    assert_eq!(dtype("blk.3.attn_v.weight"), Q6K, "and every third between");
    assert_eq!(dtype("blk.7.attn_v.weight"), Q6K, "and the last eighth");
    assert_eq!(dtype("blk.1.ffn_down.weight"), Q4K);
    assert_eq!(dtype("blk.0.ffn_down.weight"), Q6K);
    assert_eq!(dtype("blk.0.attn_q_norm.weight"), F32);
    assert_eq!(gguf.main_quantization(), "Q4_K_M");
    // The converted file is a chat model: its own tokenizer and template, greedy tokens.
    let mut model = engine::load_chat_model(
        &mut Cursor::new(std::fs::read(&out).unwrap()),
        "q4",
        &engine::LoadOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    let params = engine::GenerateParams {
        sampling: engine::SamplingParams::greedy(),
        max_tokens: 4,
        ignore_eos: true,
        ..Default::default()
    };
    let completion = model
        .generate(
            &[engine::ChatMessage::new(engine::Role::User, "Hola")],
            &params,
            &mut |_| engine::Flow::Continue,
        )
        .unwrap();
    assert_eq!(completion.usage.completion_tokens, 4);
    let prompt = model
        .prompter
        .prompt(&[engine::ChatMessage::new(engine::Role::User, "Hola")])
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>user\nHola<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn bad_checkpoints_are_refused_and_leave_no_file() {
    let root = tempfile::tempdir().unwrap();
    let spec = Spec::tiny("qwen2");
    let fresh = |name: &str| {
        let dir = root.path().join(name);
        checkpoints::write(&dir, &spec).unwrap();
        dir
    };
    let refused = |dir: &Path, adapter: Option<&Path>| {
        let out = root.path().join("out.gguf");
        let error = convert(
            &Conversion {
                model: dir,
                adapter,
                tokenizer: None,
                quantization: Quantization::Q8_0,
                chat_template: None,
                name: "x",
            },
            &out,
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(!out.exists(), "{error}");
        let leftovers = std::fs::read_dir(root.path())
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().path().is_file())
            .count();
        assert_eq!(leftovers, 0, "a partial file was left: {error}");
        error
    };
    let missing_shard = fresh("missing-shard");
    std::fs::remove_file(shards(&missing_shard)[1].clone()).unwrap();
    let error = refused(&missing_shard, None);
    assert!(
        error.contains("shard") && error.contains("model-00002-of-00002.safetensors"),
        "{error}"
    );

    let wrong_shape = fresh("wrong-shape");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(wrong_shape.join("config.json")).unwrap())
            .unwrap();
    config["intermediate_size"] = serde_json::json!(96);
    std::fs::write(wrong_shape.join("config.json"), config.to_string()).unwrap();
    let error = refused(&wrong_shape, None);
    assert!(
        error.contains("mlp.gate_proj.weight")
            && error.contains("[96, 64]")
            && error.contains("[128, 64]"),
        "{error}"
    );

    let unknown = fresh("falcon");
    config = serde_json::from_str(&std::fs::read_to_string(unknown.join("config.json")).unwrap())
        .unwrap();
    config["model_type"] = serde_json::json!("falcon");
    std::fs::write(unknown.join("config.json"), config.to_string()).unwrap();
    let error = refused(&unknown, None);
    assert!(
        error.contains("\"falcon\"") && error.contains("qwen3") && error.contains("gemma3"),
        "{error}"
    );

    let no_template = fresh("no-template");
    std::fs::write(
        no_template.join("tokenizer_config.json"),
        r#"{"eos_token": "<|im_end|>"}"#,
    )
    .unwrap();
    let error = refused(&no_template, None);
    assert!(error.contains("[model] chat_template"), "{error}");

    let base = fresh("base");
    let adapter = root.path().join("other-adapter");
    checkpoints::write_adapter(
        &adapter,
        &Spec {
            hidden: 32,
            ..spec.clone()
        },
        "org/other",
        4,
        false,
    )
    .unwrap();
    let error = refused(&base, Some(&adapter));
    assert!(error.contains("another shape"), "{error}");
    for dir in [
        missing_shard,
        wrong_shape,
        unknown,
        no_template,
        base,
        adapter,
    ] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
