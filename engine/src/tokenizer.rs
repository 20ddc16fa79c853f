//! Text ↔ token ids, and turning a stream of ids back into text that is always valid UTF-8.

use serde_json::{Value, json};

use crate::error::{EngineError, Result};
use crate::gguf::Gguf;

/// Pre-tokenizer regexes of llama.cpp's `tokenizer.ggml.pre` types, as their tokenizer.json
/// files write them.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GGUF token types that are special (matched whole, never split): control and user-defined.
const SPECIAL_TOKEN_TYPES: [i32; 2] = [3, 4];

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// From a Hugging Face `tokenizer.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|error| EngineError::Tokenizer(format!("the tokenizer.json cannot be read: {error}")))?;
        Ok(Self { inner })
    }

    /// From the GGUF's own vocabulary (`tokenizer.ggml.*`). Byte-level BPE (`gpt2`) files are
    /// supported; SentencePiece-style (`llama`) files need a tokenizer.json for now.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let kind = gguf.string("tokenizer.ggml.model").unwrap_or("(none)");
        if kind != "gpt2" {
            return Err(EngineError::Tokenizer(format!(
                "{}: building a tokenizer from GGUF metadata of type {kind:?} is not supported; supported: \"gpt2\" (byte-level BPE). Provide the model's tokenizer.json",
                gguf.file
            )));
        }
        let missing = |key: &str| EngineError::Metadata { file: gguf.file.clone(), key: key.into(), problem: "is missing or not a list of strings".into() };
        let tokens = gguf.string_array("tokenizer.ggml.tokens").ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
        let merges = gguf.string_array("tokenizer.ggml.merges").ok_or_else(|| missing("tokenizer.ggml.merges"))?;
        let token_types = gguf.i32_array("tokenizer.ggml.token_type").unwrap_or_default();

        let vocab: serde_json::Map<String, Value> = tokens.iter().enumerate().map(|(id, token)| ((*token).to_owned(), json!(id))).collect();
        let merges: Vec<Value> = merges.iter().filter_map(|merge| merge.split_once(' ')).map(|(a, b)| json!([a, b])).collect();
        let added_tokens: Vec<Value> = token_types
            .iter()
            .enumerate()
            .filter(|(_, kind)| SPECIAL_TOKEN_TYPES.contains(kind))
            .filter_map(|(id, _)| tokens.get(id).map(|content| (id, content)))
            .map(|(id, content)| {
                json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": use_regex});
        let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
        let (normalizer, pre_tokenizer) = match gguf.string("tokenizer.ggml.pre").unwrap_or("default") {
            "qwen2" => (json!({"type": "NFC"}), json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]})),
            "llama-bpe" | "llama3" => (Value::Null, json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]})),
            "smollm" => (
                Value::Null,
                json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            ),
            _ => (Value::Null, byte_level(true)),
        };
        let definition = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": byte_level(false),
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges,
            },
        });
        Self::from_json(definition.to_string().as_bytes())
    }

    /// Ids of `text`, special tokens (`<|im_start|>`…) included, without adding BOS/EOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(|error| EngineError::Tokenizer(error.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|error| EngineError::Tokenizer(error.to_string()))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// Turns generated ids into text deltas. A character split across tokens (accents, ñ, emoji in
/// byte-level vocabularies) is held back until its last byte arrives.
pub struct TextStream {
    ids: Vec<u32>,
    emitted_len: usize,
}

impl TextStream {
    pub fn new() -> Self {
        Self { ids: Vec::new(), emitted_len: 0 }
    }

    /// Adds one id and returns the text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted_len || !text.is_char_boundary(self.emitted_len) {
            return Ok(String::new());
        }
        let delta = text[self.emitted_len..].to_owned();
        self.emitted_len = text.len();
        Ok(delta)
    }
}

impl Default for TextStream {
    fn default() -> Self {
        Self::new()
    }
}
