//! A Hugging Face tokenizer (`tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`) as GGUF metadata, the way llama.cpp's converter writes it: the
//! vocabulary as `tokenizer.ggml.*` (byte-level BPE as `gpt2`, SentencePiece-style BPE with
//! byte fallback as `llama` with scores), the special tokens' ids, the chat template, and the
//! tokenizer.json itself as `tokenizer.huggingface.json` (a key of the GGUF specification),
//! which this engine reads first: the converted file tokenises exactly as the team's
//! tokenizer does, in the server and in the browser.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;

use crate::error::{EngineError, Result};

/// llama.cpp's token types (`llama_token_type`).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// The tokenizer files of a checkpoint folder, as metadata. `chat_template` replaces the one
/// tokenizer_config.json gives (space.toml's `[model] chat_template`); without either the
/// conversion is refused, since the chat would otherwise guess a format the model never saw.
pub fn metadata(dir: &Path, chat_template: Option<&str>) -> Result<Vec<(String, Value)>> {
    let tokenizer_text = read(dir, "tokenizer.json")?.ok_or_else(|| {
        refused(dir, "has no tokenizer.json; upload the tokenizer the model was trained with (`tokenizer.save_pretrained(...)` writes it)")
    })?;
    let tokenizer: Json = parse(dir, "tokenizer.json", &tokenizer_text)?;
    let config: Json = match read(dir, "tokenizer_config.json")? {
        Some(text) => parse(dir, "tokenizer_config.json", &text)?,
        None => Json::Null,
    };
    let generation: Json = match read(dir, "generation_config.json")? {
        Some(text) => parse(dir, "generation_config.json", &text)?,
        None => Json::Null,
    };
    let model = &tokenizer["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(refused(
            dir,
            &format!(
                "has a {} tokenizer; Vitrina converts BPE tokenizers (byte-level, or SentencePiece-style with byte fallback), which every supported architecture uses",
                model["type"].as_str().unwrap_or("(untyped)")
            ),
        ));
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| refused(dir, "tokenizer.json's model has no vocab"))?;
    let added = tokenizer["added_tokens"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut size = vocab.len();
    for token in &added {
        if let Some(id) = token["id"].as_u64() {
            size = size.max(id as usize + 1);
        }
    }
    let mut tokens: Vec<Option<String>> = vec![None; size];
    for (text, id) in vocab {
        if let Some(slot) = id.as_u64().and_then(|id| tokens.get_mut(id as usize)) {
            *slot = Some(text.clone());
        }
    }
    let mut types = vec![NORMAL; size];
    for token in &added {
        let (Some(id), Some(text)) = (token["id"].as_u64(), token["content"].as_str()) else {
            continue;
        };
        tokens[id as usize] = Some(text.to_owned());
        types[id as usize] = if token["special"].as_bool() == Some(true) {
            CONTROL
        } else {
            USER_DEFINED
        };
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .map(|merges| {
            merges
                .iter()
                .filter_map(|merge| match merge {
                    Json::String(pair) => Some(pair.clone()),
                    Json::Array(pair) => Some(format!(
                        "{} {}",
                        pair.first()?.as_str()?,
                        pair.get(1)?.as_str()?
                    )),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    // Holes in the ids (a vocabulary padded by the trainer) get llama.cpp's filler names.
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, token)| token.unwrap_or_else(|| format!("[PAD{id}]")))
        .collect();
    let ids: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.as_str(), id))
        .collect();
    let id_of = |text: &str| ids.get(text).copied();
    let special = |key: &str| -> Option<String> {
        match &config[key] {
            Json::String(text) => Some(text.clone()),
            Json::Object(token) => token.get("content")?.as_str().map(str::to_owned),
            _ => None,
        }
    };

    let mut metadata: Vec<(String, Value)> = Vec::new();
    let byte_fallback = model["byte_fallback"].as_bool() == Some(true);
    if byte_fallback {
        // SentencePiece scores: a piece made by an earlier merge scores higher, so llama.cpp's
        // SentencePiece tokenizer merges in the order the BPE does.
        let mut scores = vec![0f32; tokens.len()];
        for (rank, merge) in merges.iter().enumerate() {
            if let Some((left, right)) = merge.split_once(' ')
                && let Some(id) = id_of(&format!("{left}{right}"))
                && scores[id] == 0.0
            {
                scores[id] = -(rank as f32) - 1.0;
            }
        }
        for (id, token) in tokens.iter().enumerate() {
            if types[id] == NORMAL
                && token.len() == 6
                && token.starts_with("<0x")
                && token.ends_with('>')
            {
                types[id] = BYTE;
            }
        }
        if let Some(unknown) = model["unk_token"].as_str().and_then(id_of) {
            types[unknown] = UNKNOWN;
            metadata.push((
                "tokenizer.ggml.unknown_token_id".into(),
                Value::U32(unknown as u32),
            ));
        }
        metadata.push(("tokenizer.ggml.model".into(), Value::String("llama".into())));
        metadata.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(scores.into_iter().map(Value::F32).collect()),
        ));
        metadata.push((
            "tokenizer.ggml.add_space_prefix".into(),
            Value::Bool(prepends_space(&tokenizer)),
        ));
    } else {
        if !mentions(&tokenizer["pre_tokenizer"], "ByteLevel") {
            return Err(refused(
                dir,
                "has a BPE tokenizer that is neither byte-level nor SentencePiece-style (byte fallback); Vitrina cannot convert it",
            ));
        }
        metadata.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
        metadata.push((
            "tokenizer.ggml.pre".into(),
            Value::String(pre_tokenizer_name(&tokenizer["pre_tokenizer"]).into()),
        ));
        metadata.push((
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.into_iter().map(Value::String).collect()),
        ));
    }
    metadata.push((
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.iter().cloned().map(Value::String).collect()),
    ));
    metadata.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.into_iter().map(Value::I32).collect()),
    ));

    let bos = special("bos_token").and_then(|text| id_of(&text));
    // generation_config.json's EOS is what `generate` stops at; its first id is the model's.
    let eos = match &generation["eos_token_id"] {
        Json::Number(id) => id.as_u64().map(|id| id as usize),
        Json::Array(ids) => ids.first().and_then(Json::as_u64).map(|id| id as usize),
        _ => None,
    }
    .or_else(|| special("eos_token").and_then(|text| id_of(&text)));
    let pad = special("pad_token").and_then(|text| id_of(&text));
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", bos),
        ("tokenizer.ggml.eos_token_id", eos),
        ("tokenizer.ggml.padding_token_id", pad),
    ] {
        if let Some(id) = id {
            metadata.push((key.into(), Value::U32(id as u32)));
        }
    }
    let add_bos = config["add_bos_token"].as_bool().unwrap_or_else(|| {
        bos.is_some() && adds_bos(&tokenizer, bos.map(|id| tokens[id].as_str()))
    });
    metadata.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)));
    if let Some(add_eos) = config["add_eos_token"].as_bool() {
        metadata.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(add_eos)));
    }

    let template = match chat_template {
        Some(template) => template.to_owned(),
        None => template_of(dir, &config)?.ok_or_else(|| {
            refused(
                dir,
                "has no chat template (tokenizer_config.json's `chat_template`, or chat_template.jinja); set `[model] chat_template` in space.toml to the template the model was trained with",
            )
        })?,
    };
    metadata.push(("tokenizer.chat_template".into(), Value::String(template)));
    metadata.push((
        "tokenizer.huggingface.json".into(),
        Value::String(tokenizer_text),
    ));
    Ok(metadata)
}

/// tokenizer_config.json's `chat_template` (a string, or named templates of which `default`),
/// else the `chat_template.jinja` that newer `transformers` write beside it.
fn template_of(dir: &Path, config: &Json) -> Result<Option<String>> {
    match &config["chat_template"] {
        Json::String(template) => return Ok(Some(template.clone())),
        Json::Array(named) => {
            let default = named
                .iter()
                .find(|entry| entry["name"].as_str() == Some("default"))
                .or(named.first());
            if let Some(template) = default.and_then(|entry| entry["template"].as_str()) {
                return Ok(Some(template.to_owned()));
            }
        }
        _ => {}
    }
    read(dir, "chat_template.jinja")
}

/// Whether a pre-tokenizer (or one in its sequence) is of `kind`.
fn mentions(node: &Json, kind: &str) -> bool {
    match node {
        Json::Object(fields) => {
            fields.get("type").and_then(Json::as_str) == Some(kind)
                || fields.values().any(|value| mentions(value, kind))
        }
        Json::Array(items) => items.iter().any(|item| mentions(item, kind)),
        _ => false,
    }
}

/// llama.cpp's `tokenizer.ggml.pre` for the split rules this pre-tokenizer writes (llama.cpp
/// itself recognises them by the tokens of a test text; the engine reads the tokenizer.json).
fn pre_tokenizer_name(pre_tokenizer: &Json) -> &'static str {
    let text = pre_tokenizer.to_string();
    if text.contains(r"\\p{N}{1,3}") {
        "llama-bpe"
    } else if text.contains(r"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|") {
        "qwen2"
    } else if mentions(pre_tokenizer, "Digits") {
        "smollm"
    } else {
        "default"
    }
}

/// Whether SentencePiece-style text gets a leading ▁ (the normaliser's `Prepend`, or a
/// Metaspace pre-tokenizer that prepends).
fn prepends_space(tokenizer: &Json) -> bool {
    let normalizer = tokenizer["normalizer"].to_string();
    let pre = tokenizer["pre_tokenizer"].to_string();
    normalizer.contains("\"Prepend\"")
        || (pre.contains("Metaspace") && !pre.contains("\"prepend_scheme\":\"never\""))
}

/// Whether the tokenizer's post-processor puts `bos` before a single text.
fn adds_bos(tokenizer: &Json, bos: Option<&str>) -> bool {
    let Some(bos) = bos else { return false };
    tokenizer["post_processor"].to_string().contains(&format!(
        "\"SpecialToken\":{{\"id\":{}",
        Json::String(bos.into())
    ))
}

fn read(dir: &Path, name: &str) -> Result<Option<String>> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(EngineError::Conversion(format!(
            "{}: {error}",
            dir.join(name).display()
        ))),
    }
}

fn parse(dir: &Path, name: &str, text: &str) -> Result<Json> {
    serde_json::from_str(text).map_err(|error| {
        EngineError::Conversion(format!(
            "{} is not valid JSON: {error}",
            dir.join(name).display()
        ))
    })
}

fn refused(dir: &Path, problem: &str) -> EngineError {
    EngineError::Conversion(format!("the checkpoint in {} {problem}", dir.display()))
}
