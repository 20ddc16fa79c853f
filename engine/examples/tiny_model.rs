//! Writes a tiny GGUF (one layer, 64 dimensions) whose every next token is one fixed text,
//! whatever it is asked: a test model that says exactly what a test needs it to say (e.g.
//! hostile HTML, to check that the page shows it as text), in the llama, phi3 or phi2 layout
//! (the engine's tests load each architecture it cannot fetch a real model of).
//!
//! `cargo run -p engine --example tiny_model -- OUT.gguf "TEXT" [llama|phi3|phi2]`
//!
//! How it is forced: all layers are zero, so the residual stream is the (all-ones) token
//! embedding, and only the TEXT token's output row is non-zero: its logit is 64, every other
//! token's is 0, at any temperature the server allows. Phi-2's layer norm turns equal values
//! into zeros, so there the output bias does it.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

const DIM: usize = 64;
const HIDDEN: usize = 128;
const HEADS: u32 = 4;

/// GPT-2's byte-to-character table: every byte as the printable character byte-level BPE
/// vocabularies spell it with.
fn byte_level_char(byte: u8) -> char {
    let printable = |b: u8| {
        (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    if printable(byte) {
        return char::from(byte);
    }
    let shifted = (0..=byte).filter(|b| !printable(*b)).count() - 1;
    char::from_u32(256 + shifted as u32).expect("within the Latin Extended range")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(out), Some(text)) = (args.next(), args.next()) else {
        return Err("usage: tiny_model OUT.gguf TEXT [llama|phi3|phi2]".into());
    };
    let architecture = args.next().unwrap_or_else(|| "llama".into());
    write(Path::new(&out), &text, &architecture)?;
    eprintln!("wrote {out}: every answer repeats {text:?}");
    Ok(())
}

/// Writes the model to `out`; `architecture` is `llama`, `phi3` or `phi2`.
pub fn write(out: &Path, text: &str, architecture: &str) -> Result<(), Box<dyn std::error::Error>> {
    let spelled: String = text.bytes().map(byte_level_char).collect();
    let mut tokens: Vec<String> = vec!["<|im_start|>".into(), "<|im_end|>".into()];
    tokens.extend((0..=255u8).map(|byte| byte_level_char(byte).to_string()));
    // Last, so that a model whose logits all tie (argmax picks the first) does not say it.
    tokens.push(spelled);
    // 1 normal, 3 control (llama.cpp's token types).
    let token_types: Vec<Value> = (0..tokens.len())
        .map(|id| Value::I32(if id < 2 { 3 } else { 1 }))
        .collect();
    let vocab = tokens.len();

    let device = Device::Cpu;
    let tensor = |data: Tensor| QTensor::quantize(&data, GgmlDType::F32);
    let zeros = |shape: &[usize]| tensor(Tensor::zeros(shape, candle_core::DType::F32, &device)?);
    let ones = |shape: &[usize]| tensor(Tensor::ones(shape, candle_core::DType::F32, &device)?);
    // The text's token (the last) scores 64, every other 0.
    let text_last = |length: usize, run: usize, value: f32| {
        let mut values = vec![0f32; length];
        values[length - run..].fill(value);
        values
    };
    let output_rows = tensor(Tensor::from_vec(
        text_last(vocab * DIM, DIM, 1.0),
        (vocab, DIM),
        &device,
    )?)?;
    let mut weights = vec![
        ("token_embd.weight", ones(&[vocab, DIM])?),
        ("output_norm.weight", ones(&[DIM])?),
        ("blk.0.attn_norm.weight", ones(&[DIM])?),
        ("blk.0.attn_output.weight", zeros(&[DIM, DIM])?),
        ("blk.0.ffn_down.weight", zeros(&[DIM, HIDDEN])?),
    ];
    let string = |text: &str| Value::String(text.to_owned());
    let key = |name: &str| format!("{architecture}.{name}");
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), string(architecture)),
        (key("context_length"), Value::U32(2048)),
        (key("embedding_length"), Value::U32(DIM as u32)),
        (key("feed_forward_length"), Value::U32(HIDDEN as u32)),
        (key("block_count"), Value::U32(1)),
        (key("attention.head_count"), Value::U32(HEADS)),
        (key("attention.head_count_kv"), Value::U32(HEADS)),
        (key("rope.dimension_count"), Value::U32(DIM as u32 / HEADS)),
    ];
    match architecture {
        "llama" => {
            weights.extend([
                ("output.weight", output_rows),
                ("blk.0.ffn_norm.weight", ones(&[DIM])?),
                ("blk.0.attn_q.weight", zeros(&[DIM, DIM])?),
                ("blk.0.attn_k.weight", zeros(&[DIM, DIM])?),
                ("blk.0.attn_v.weight", zeros(&[DIM, DIM])?),
                ("blk.0.ffn_gate.weight", zeros(&[HIDDEN, DIM])?),
                ("blk.0.ffn_up.weight", zeros(&[HIDDEN, DIM])?),
            ]);
            metadata.push((key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)));
        }
        "phi3" => {
            weights.extend([
                ("output.weight", output_rows),
                ("blk.0.ffn_norm.weight", ones(&[DIM])?),
                ("blk.0.attn_qkv.weight", zeros(&[3 * DIM, DIM])?),
                // Gate and up in one matrix.
                ("blk.0.ffn_up.weight", zeros(&[2 * HIDDEN, DIM])?),
            ]);
            metadata.push((key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)));
        }
        "phi2" => {
            weights.extend([
                ("output.weight", zeros(&[vocab, DIM])?),
                (
                    "output.bias",
                    tensor(Tensor::from_vec(text_last(vocab, 1, 64.0), vocab, &device)?)?,
                ),
                ("output_norm.bias", zeros(&[DIM])?),
                ("blk.0.attn_norm.bias", zeros(&[DIM])?),
                ("blk.0.attn_qkv.weight", zeros(&[3 * DIM, DIM])?),
                ("blk.0.attn_qkv.bias", zeros(&[3 * DIM])?),
                ("blk.0.attn_output.bias", zeros(&[DIM])?),
                ("blk.0.ffn_up.weight", zeros(&[HIDDEN, DIM])?),
                ("blk.0.ffn_up.bias", zeros(&[HIDDEN])?),
                ("blk.0.ffn_down.bias", zeros(&[DIM])?),
            ]);
            metadata.push((key("attention.layer_norm_epsilon"), Value::F32(1e-5)));
        }
        other => return Err(format!("unknown architecture {other:?}: llama, phi3 or phi2").into()),
    }
    metadata.extend([
        ("general.name".into(), string("tiny test model")),
        ("tokenizer.ggml.model".into(), string("gpt2")),
        ("tokenizer.ggml.pre".into(), string("default")),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|token| string(token)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(token_types),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(Vec::new())),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(1)),
    ]);
    let metadata: Vec<(&str, &Value)> = metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let weights: Vec<(&str, &QTensor)> = weights
        .iter()
        .map(|(name, weight)| (*name, weight))
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    gguf_file::write(&mut file, &metadata, &weights)?;
    Ok(())
}
