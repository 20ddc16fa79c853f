//! Text ↔ token ids, and turning a stream of ids back into text that is always valid UTF-8.

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::{Value, json};

use crate::error::{EngineError, Result};
use crate::gguf::Gguf;

/// Pre-tokenizer regexes of llama.cpp's `tokenizer.ggml.pre` types, as their tokenizer.json
/// files write them.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GGUF token types (llama.cpp's `llama_token_type`).
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Control and user-defined tokens, matched whole before the model splits text. Byte-level
/// vocabularies mark both special; SentencePiece conversions only the control ones.
fn added_tokens(
    tokens: &[String],
    token_types: &[i32],
    user_defined_are_special: bool,
) -> Vec<Value> {
    token_types
        .iter()
        .enumerate()
        .filter(|(_, kind)| matches!(**kind, CONTROL | USER_DEFINED))
        .filter_map(|(id, kind)| tokens.get(id).map(|content| (id, content, *kind == CONTROL || user_defined_are_special)))
        .map(|(id, content, special)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": special})
        })
        .collect()
}

fn byte_level_bpe(tokens: &[&str], merges: &[&str], token_types: &[i32], pre: &str) -> Value {
    let tokens: Vec<String> = tokens.iter().map(|token| (*token).to_owned()).collect();
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), json!(id)))
        .collect();
    let merges: Vec<Value> = merges
        .iter()
        .filter_map(|merge| merge.split_once(' '))
        .map(|(a, b)| json!([a, b]))
        .collect();
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    let (normalizer, pre_tokenizer) = match pre {
        "qwen2" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
        ),
        "llama-bpe" | "llama3" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}),
        ),
        "smollm" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        ),
        _ => (Value::Null, byte_level(true)),
    };
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
        "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
        "vocab": vocab, "merges": merges,
    });
    tokenizer_json(
        added_tokens(&tokens, token_types, true),
        normalizer,
        pre_tokenizer,
        byte_level(false),
        model,
    )
}

/// A SentencePiece vocabulary as the equivalent BPE, the way Hugging Face converts it: every
/// token that splits into two tokens yields a merge, ranked by the merged token's score.
fn sentencepiece_bpe(
    tokens: &[&str],
    scores: &[f32],
    token_types: &[i32],
    unknown: Option<&str>,
    add_space_prefix: bool,
) -> Value {
    // SentencePiece writes spaces as ▁; some GGUF files store whitespace-run tokens with
    // literal spaces, which the normaliser would never produce.
    let tokens: Vec<String> = tokens
        .iter()
        .map(|token| token.replace(' ', "\u{2581}"))
        .collect();
    let ids: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.as_str(), id))
        .collect();
    let mut merges: Vec<(f32, usize, usize)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        // SentencePiece scores user-defined pieces 0 (first to merge); GGUF files store -1000.
        let score = if token_types.get(id) == Some(&USER_DEFINED) {
            0.0
        } else {
            scores.get(id).copied().unwrap_or(0.0)
        };
        let mut local: Vec<(usize, usize)> = token
            .char_indices()
            .skip(1)
            .filter_map(|(split, _)| Some((*ids.get(&token[..split])?, *ids.get(&token[split..])?)))
            .collect();
        local.sort_unstable();
        merges.extend(local.into_iter().map(|(left, right)| (score, left, right)));
    }
    // Stable: equal scores keep vocabulary order, as the reference conversion does.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let merges: Vec<Value> = merges
        .iter()
        .map(|(_, left, right)| json!([tokens[*left], tokens[*right]]))
        .collect();
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), json!(id)))
        .collect();

    let replace_spaces =
        json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    let normalizer = if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace_spaces]})
    } else {
        replace_spaces
    };
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": unknown, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
        "vocab": vocab, "merges": merges,
    });
    let decoder = json!({"type": "Sequence", "decoders": decoders});
    tokenizer_json(
        added_tokens(&tokens, token_types, false),
        normalizer,
        Value::Null,
        decoder,
        model,
    )
}

/// A Hugging Face tokenizer.json document around a model.
fn tokenizer_json(
    added_tokens: Vec<Value>,
    normalizer: Value,
    pre_tokenizer: Value,
    decoder: Value,
    model: Value,
) -> Value {
    json!({
        "version": "1.0", "truncation": null, "padding": null, "post_processor": null,
        "added_tokens": added_tokens, "normalizer": normalizer, "pre_tokenizer": pre_tokenizer,
        "decoder": decoder, "model": model,
    })
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    specials: SpecialTokens,
}

/// The tokens that steer the model (`<|im_start|>`, `<end_of_turn>`…), found in text, and the
/// ids each becomes when read as plain text.
struct SpecialTokens {
    /// Leftmost-longest, as the tokenizer itself splits them out.
    finder: Option<AhoCorasick>,
    as_text: HashMap<u32, Vec<u32>>,
}

impl SpecialTokens {
    fn of(inner: &tokenizers::Tokenizer) -> Result<Self> {
        let mut specials: Vec<(u32, String)> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special && !token.content.is_empty())
            .map(|(id, token)| (id, token.content))
            .collect();
        specials.sort_unstable();
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);
        let mut as_text = HashMap::with_capacity(specials.len());
        for (id, content) in &specials {
            let encoding = plain
                .encode(content.as_str(), false)
                .map_err(|error| EngineError::Tokenizer(error.to_string()))?;
            as_text.insert(*id, encoding.get_ids().to_vec());
        }
        let finder = (!specials.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(specials.iter().map(|(_, content)| content))
            })
            .transpose()
            .map_err(|error| EngineError::Tokenizer(format!("special tokens: {error}")))?;
        Ok(Self { finder, as_text })
    }
}

impl Tokenizer {
    /// From a Hugging Face `tokenizer.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|error| {
            EngineError::Tokenizer(format!("the tokenizer.json cannot be read: {error}"))
        })?;
        let specials = SpecialTokens::of(&inner)?;
        Ok(Self { inner, specials })
    }

    /// Where `text` writes special tokens, as byte ranges, in order.
    pub fn special_tokens_in(&self, text: &str) -> Vec<Range<usize>> {
        self.specials
            .finder
            .as_ref()
            .map_or_else(Vec::new, |finder| {
                finder.find_iter(text).map(|found| found.range()).collect()
            })
    }

    /// [`Tokenizer::encode`], except that the special tokens written at the byte ranges
    /// `as_text` (from [`Tokenizer::special_tokens_in`], shifted) become the tokens of their
    /// characters: what a visitor types can never be a turn of the conversation.
    pub fn encode_with_text_at(&self, text: &str, as_text: &[Range<usize>]) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|error| EngineError::Tokenizer(error.to_string()))?;
        let mut ids = Vec::with_capacity(encoding.len());
        for (&id, &(start, end)) in encoding.get_ids().iter().zip(encoding.get_offsets()) {
            match self.specials.as_text.get(&id) {
                Some(plain) if as_text.contains(&(start..end)) => ids.extend_from_slice(plain),
                _ => ids.push(id),
            }
        }
        Ok(ids)
    }

    /// From the GGUF's own vocabulary (`tokenizer.ggml.*`): byte-level BPE (`gpt2`: Qwen,
    /// SmolLM, Llama 3…) or SentencePiece (`llama`: Gemma, Llama 2, Mistral…), rebuilt as the
    /// equivalent Hugging Face tokenizer.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        // Files Vitrina converted carry the team's own tokenizer.json: exactly its splits.
        if let Some(json) = gguf.string("tokenizer.huggingface.json") {
            return Self::from_json(json.as_bytes());
        }
        let missing = |key: &str| EngineError::Metadata {
            file: gguf.file.clone(),
            key: key.into(),
            problem: "is missing or has the wrong type".into(),
        };
        let tokens = gguf
            .string_array("tokenizer.ggml.tokens")
            .ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
        let token_types = gguf
            .i32_array("tokenizer.ggml.token_type")
            .unwrap_or_default();
        let definition = match gguf.string("tokenizer.ggml.model").unwrap_or("(none)") {
            "gpt2" => {
                let merges = gguf
                    .string_array("tokenizer.ggml.merges")
                    .ok_or_else(|| missing("tokenizer.ggml.merges"))?;
                byte_level_bpe(
                    &tokens,
                    &merges,
                    &token_types,
                    gguf.string("tokenizer.ggml.pre").unwrap_or("default"),
                )
            }
            "llama" => {
                let scores = gguf
                    .f32_array("tokenizer.ggml.scores")
                    .ok_or_else(|| missing("tokenizer.ggml.scores"))?;
                let unknown = gguf
                    .u32("tokenizer.ggml.unknown_token_id")
                    .and_then(|id| tokens.get(id as usize).copied());
                let add_space_prefix = gguf.bool("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                sentencepiece_bpe(&tokens, &scores, &token_types, unknown, add_space_prefix)
            }
            other => {
                return Err(EngineError::Tokenizer(format!(
                    "{}: GGUF tokenizer type {other:?} is not supported; supported: \"gpt2\" (byte-level BPE) and \"llama\" (SentencePiece). Provide the model's tokenizer.json",
                    gguf.file
                )));
            }
        };
        Self::from_json(definition.to_string().as_bytes())
    }

    /// Ids of `text`, special tokens (`<|im_start|>`…) included, without adding BOS/EOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|error| EngineError::Tokenizer(error.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|error| EngineError::Tokenizer(error.to_string()))
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
        Self {
            ids: Vec::new(),
            emitted_len: 0,
        }
    }

    /// Adds one id and returns the text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}')
            || text.len() < self.emitted_len
            || !text.is_char_boundary(self.emitted_len)
        {
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
