//! Random-weight Hugging Face checkpoints in the real formats teams publish — config.json,
//! safetensors shards with their index, tokenizer.json, tokenizer_config.json,
//! generation_config.json, and PEFT LoRA adapters — for the converter's tests (checked against
//! candle-transformers' float models loading the same files) and for the bench's conversion
//! of 1B and 7B shapes. Shards are written tensor by tensor: a 7B bf16 shape never sits in
//! memory.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

pub type Failure = Box<dyn std::error::Error>;

/// The shape and kind of a checkpoint.
#[derive(Clone, Debug)]
pub struct Spec {
    /// config.json's `model_type`.
    pub model_type: &'static str,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    /// At least the tiny tokenizer's 259 tokens.
    pub vocab: usize,
    pub tied: bool,
    /// Llama 3's `rope_scaling`.
    pub llama3_rope: bool,
    pub bf16: bool,
    /// The standard deviation of the random weights: large enough that a tiny model's
    /// logits are far apart, so a wrong layout shows.
    pub scale: f32,
    /// How many safetensors files the weights are split into (1: `model.safetensors`).
    pub shards: usize,
    pub seed: u64,
}

impl Spec {
    pub fn tiny(model_type: &'static str) -> Self {
        let gemma = model_type.starts_with("gemma");
        Self {
            model_type,
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            head_dim: if model_type == "qwen3" || gemma {
                32
            } else {
                16
            },
            ffn: 128,
            vocab: 320,
            tied: gemma || model_type == "qwen3",
            llama3_rope: model_type == "llama",
            bf16: true,
            scale: 0.3,
            shards: 2,
            seed: 7,
        }
    }

    fn gemma(&self) -> bool {
        self.model_type.starts_with("gemma")
    }

    pub fn config(&self) -> Value {
        let mut config = json!({
            "architectures": [match self.model_type {
                "llama" => "LlamaForCausalLM",
                "mistral" => "MistralForCausalLM",
                "qwen2" => "Qwen2ForCausalLM",
                "qwen3" => "Qwen3ForCausalLM",
                "gemma" => "GemmaForCausalLM",
                "gemma2" => "Gemma2ForCausalLM",
                _ => "Gemma3ForCausalLM",
            }],
            "model_type": self.model_type,
            "hidden_size": self.hidden,
            "intermediate_size": self.ffn,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_theta": if self.gemma() { 1_000_000.0 } else { 10_000.0 },
            "tie_word_embeddings": self.tied,
            "torch_dtype": if self.bf16 { "bfloat16" } else { "float32" },
            "hidden_act": "silu",
            "attention_bias": false,
            "sliding_window": 4096,
            "max_window_layers": self.layers,
            "use_sliding_window": false,
            "bos_token_id": 256,
            "eos_token_id": 258,
        });
        if self.gemma() {
            config.as_object_mut().unwrap().remove("hidden_act");
            let extra = json!({
                "hidden_activation": "gelu_pytorch_tanh",
                "query_pre_attn_scalar": self.head_dim,
                // Narrower than the tests' prompts, so that the local layers' window shows.
                "sliding_window": if self.model_type == "gemma2" { 4096 } else { 4 },
                "sliding_window_pattern": 2,
                "rope_local_base_freq": 10_000.0,
                "final_logit_softcapping": if self.model_type == "gemma2" { json!(30.0) } else { Value::Null },
                "attn_logit_softcapping": if self.model_type == "gemma2" { json!(50.0) } else { Value::Null },
            });
            for (key, value) in extra.as_object().unwrap() {
                config[key] = value.clone();
            }
        }
        if self.llama3_rope {
            config["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 128});
        }
        config
    }

    /// Every tensor's Hugging Face name and shape, in a fixed order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (q, kv) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let mut tensors = vec![(
            "model.embed_tokens.weight".to_owned(),
            vec![self.vocab, self.hidden],
        )];
        for layer in 0..self.layers {
            let name = |part: &str| format!("model.layers.{layer}.{part}");
            tensors.push((name("input_layernorm.weight"), vec![self.hidden]));
            tensors.push((name("self_attn.q_proj.weight"), vec![q, self.hidden]));
            tensors.push((name("self_attn.k_proj.weight"), vec![kv, self.hidden]));
            tensors.push((name("self_attn.v_proj.weight"), vec![kv, self.hidden]));
            if self.model_type == "qwen2" {
                tensors.push((name("self_attn.q_proj.bias"), vec![q]));
                tensors.push((name("self_attn.k_proj.bias"), vec![kv]));
                tensors.push((name("self_attn.v_proj.bias"), vec![kv]));
            }
            if self.model_type == "qwen3" || self.model_type.starts_with("gemma3") {
                tensors.push((name("self_attn.q_norm.weight"), vec![self.head_dim]));
                tensors.push((name("self_attn.k_norm.weight"), vec![self.head_dim]));
            }
            tensors.push((name("self_attn.o_proj.weight"), vec![self.hidden, q]));
            tensors.push((name("post_attention_layernorm.weight"), vec![self.hidden]));
            if self.model_type == "gemma2" || self.model_type.starts_with("gemma3") {
                tensors.push((name("pre_feedforward_layernorm.weight"), vec![self.hidden]));
                tensors.push((name("post_feedforward_layernorm.weight"), vec![self.hidden]));
            }
            tensors.push((name("mlp.gate_proj.weight"), vec![self.ffn, self.hidden]));
            tensors.push((name("mlp.up_proj.weight"), vec![self.ffn, self.hidden]));
            tensors.push((name("mlp.down_proj.weight"), vec![self.hidden, self.ffn]));
        }
        tensors.push(("model.norm.weight".to_owned(), vec![self.hidden]));
        if !self.tied {
            tensors.push(("lm_head.weight".to_owned(), vec![self.vocab, self.hidden]));
        }
        tensors
    }
}

/// A reproducible stream of values of about `scale` spread (xorshift; no dependency).
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self, scale: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale * 1.7
    }
}

/// Writes the checkpoint of `spec` into `dir`: weights, config and the tokenizer files.
pub fn write(dir: &Path, spec: &Spec) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&spec.config())?,
    )?;
    write_tokenizer(dir, spec.gemma(), spec.vocab)?;
    let mut random = Random::new(spec.seed);
    let tensors = spec.tensors();
    let per_shard = tensors.len().div_ceil(spec.shards.max(1));
    let mut weight_map = serde_json::Map::new();
    for (index, chunk) in tensors.chunks(per_shard).enumerate() {
        let file = if spec.shards == 1 {
            "model.safetensors".to_owned()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", index + 1, spec.shards)
        };
        for (name, _) in chunk {
            weight_map.insert(name.clone(), json!(file));
        }
        write_safetensors(&dir.join(&file), chunk, spec.bf16, &mut |name, count| {
            let norm = name.contains("norm");
            let bias = name.ends_with(".bias");
            (0..count)
                .map(|_| {
                    let value = random.next(spec.scale);
                    // Norms near their neutral value: 1 (Gemma stores w of 1 + w: near 0).
                    if norm {
                        value * 0.3 + if spec.gemma() { 0.0 } else { 1.0 }
                    } else if bias {
                        value * 0.3
                    } else {
                        value
                    }
                })
                .collect()
        })?;
    }
    if spec.shards > 1 {
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&json!({"metadata": {}, "weight_map": weight_map}))?,
        )?;
    }
    Ok(())
}

/// One safetensors file, its tensors' values asked for one at a time.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>)],
    bf16: bool,
    values: &mut dyn FnMut(&str, usize) -> Vec<f32>,
) -> Result<(), Failure> {
    let width = if bf16 { 2 } else { 4 };
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * width;
        header.insert(
            name.clone(),
            json!({"dtype": if bf16 { "BF16" } else { "F32" }, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_string(&header)?.into_bytes();
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    for (name, shape) in tensors {
        let count = shape.iter().product();
        for value in values(name, count) {
            if bf16 {
                out.write_all(&half::bf16::from_f32(value).to_le_bytes())?;
            } else {
                out.write_all(&value.to_le_bytes())?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// GPT-2's map of bytes to printable characters, which byte-level vocabularies are written in.
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for byte in 0..256u32 {
        if !printable.contains(&byte) {
            printable.push(byte);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut by_byte = vec!['\0'; 256];
    for (byte, char) in printable.into_iter().zip(chars) {
        by_byte[byte as usize] = char::from_u32(char).unwrap();
    }
    by_byte
}

/// A tokenizer of 256 byte tokens and three special ones (ids 256–258) with a ChatML
/// template, padded with unused tokens to `vocab`; for Gemma a SentencePiece-style one (byte
/// fallback, `<0xNN>` pieces, ▁ for spaces) with Gemma's turn format.
pub fn write_tokenizer(dir: &Path, sentencepiece: bool, vocab_size: usize) -> Result<(), Failure> {
    let (specials, template) = if sentencepiece {
        (
            ["<bos>", "<start_of_turn>", "<end_of_turn>"],
            "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' + message['content'] + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}",
        )
    } else {
        (
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
        )
    };
    let mut vocab = serde_json::Map::new();
    let chars = byte_chars();
    for (byte, char) in chars.iter().enumerate() {
        let token = if sentencepiece {
            format!("<0x{byte:02X}>")
        } else {
            char.to_string()
        };
        vocab.insert(token, json!(byte));
    }
    let added: Vec<Value> = specials
        .iter()
        .enumerate()
        .map(|(i, content)| json!({"id": 256 + i, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    for (i, content) in specials.iter().enumerate() {
        vocab.insert((*content).to_owned(), json!(256 + i));
    }
    for id in 256 + specials.len()..vocab_size {
        vocab.insert(format!("<unused{id}>"), json!(id));
    }
    let mut tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []},
    });
    if sentencepiece {
        // Every byte through the fallback: the vocabulary has no pieces but bytes.
        tokenizer["normalizer"] =
            json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
        tokenizer["pre_tokenizer"] = Value::Null;
        tokenizer["decoder"] = json!({"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]});
        tokenizer["model"]["byte_fallback"] = json!(true);
        tokenizer["model"]["fuse_unk"] = json!(true);
    }
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string(&tokenizer)?,
    )?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&json!({
            "bos_token": specials[0],
            "eos_token": specials[2],
            "chat_template": template,
            "add_bos_token": sentencepiece,
        }))?,
    )?;
    std::fs::write(
        dir.join("generation_config.json"),
        serde_json::to_string_pretty(&json!({"eos_token_id": [258, 256]}))?,
    )?;
    Ok(())
}

/// A PEFT LoRA adapter of rank `rank` on q/v (and, with `rslora`, the rank-stabilised
/// scale) for the checkpoint of `spec`, naming `base` as its base model.
pub fn write_adapter(
    dir: &Path,
    spec: &Spec,
    base: &str,
    rank: usize,
    rslora: bool,
) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_string_pretty(&json!({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base,
            "r": rank, "lora_alpha": 2 * rank, "use_rslora": rslora, "lora_dropout": 0.0,
            "target_modules": ["q_proj", "v_proj"], "fan_in_fan_out": false, "use_dora": false,
        }))?,
    )?;
    let (q, kv) = (spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim);
    let mut tensors = Vec::new();
    for layer in 0..spec.layers {
        for (module, rows) in [("q_proj", q), ("v_proj", kv)] {
            let stem = format!("base_model.model.model.layers.{layer}.self_attn.{module}");
            tensors.push((format!("{stem}.lora_A.weight"), vec![rank, spec.hidden]));
            tensors.push((format!("{stem}.lora_B.weight"), vec![rows, rank]));
        }
    }
    let mut random = Random::new(spec.seed + 1);
    write_safetensors(
        &dir.join("adapter_model.safetensors"),
        &tensors,
        false,
        &mut |_, count| (0..count).map(|_| random.next(spec.scale)).collect(),
    )
}
