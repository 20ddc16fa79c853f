//! Writes a tiny llama-architecture GGUF (one layer, 64 dimensions) whose every next token is
//! one fixed text, whatever it is asked: a test model that says exactly what a test needs it
//! to say (e.g. hostile HTML, to check that the page shows it as text).
//!
//! `cargo run -p engine --example tiny_model -- OUT.gguf "TEXT"`
//!
//! How it is forced: all layers are zero, so the last hidden state is the (all-ones) token
//! embedding, and only the TEXT token's output row is non-zero: its logit is 64, every other
//! token's is 0, at any temperature the server allows.

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
        return Err("usage: tiny_model OUT.gguf TEXT".into());
    };
    let spelled: String = text.bytes().map(byte_level_char).collect();
    let mut tokens: Vec<String> = vec![spelled, "<|im_start|>".into(), "<|im_end|>".into()];
    tokens.extend((0..=255u8).map(|byte| byte_level_char(byte).to_string()));
    // 1 normal, 3 control (llama.cpp's token types).
    let token_types: Vec<Value> = (0..tokens.len())
        .map(|id| Value::I32(if id == 1 || id == 2 { 3 } else { 1 }))
        .collect();
    let vocab = tokens.len();

    let device = Device::Cpu;
    let tensor = |data: Tensor| QTensor::quantize(&data, GgmlDType::F32);
    let zeros = |rows: usize, cols: usize| {
        tensor(Tensor::zeros(
            (rows, cols),
            candle_core::DType::F32,
            &device,
        )?)
    };
    let ones = |shape: &[usize]| tensor(Tensor::ones(shape, candle_core::DType::F32, &device)?);
    let mut output = vec![0f32; vocab * DIM];
    output[..DIM].fill(1.0);
    let weights = vec![
        ("token_embd.weight", ones(&[vocab, DIM])?),
        ("output_norm.weight", ones(&[DIM])?),
        (
            "output.weight",
            tensor(Tensor::from_vec(output, (vocab, DIM), &device)?)?,
        ),
        ("blk.0.attn_norm.weight", ones(&[DIM])?),
        ("blk.0.ffn_norm.weight", ones(&[DIM])?),
        ("blk.0.attn_q.weight", zeros(DIM, DIM)?),
        ("blk.0.attn_k.weight", zeros(DIM, DIM)?),
        ("blk.0.attn_v.weight", zeros(DIM, DIM)?),
        ("blk.0.attn_output.weight", zeros(DIM, DIM)?),
        ("blk.0.ffn_gate.weight", zeros(HIDDEN, DIM)?),
        ("blk.0.ffn_up.weight", zeros(HIDDEN, DIM)?),
        ("blk.0.ffn_down.weight", zeros(DIM, HIDDEN)?),
    ];

    let string = |text: &str| Value::String(text.to_owned());
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", string("llama")),
        ("general.name", string("tiny test model")),
        ("llama.context_length", Value::U32(2048)),
        ("llama.embedding_length", Value::U32(DIM as u32)),
        ("llama.feed_forward_length", Value::U32(HIDDEN as u32)),
        ("llama.block_count", Value::U32(1)),
        ("llama.attention.head_count", Value::U32(HEADS)),
        ("llama.attention.head_count_kv", Value::U32(HEADS)),
        ("llama.rope.dimension_count", Value::U32(DIM as u32 / HEADS)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", string("gpt2")),
        ("tokenizer.ggml.pre", string("default")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|token| string(token)).collect()),
        ),
        ("tokenizer.ggml.token_type", Value::Array(token_types)),
        ("tokenizer.ggml.merges", Value::Array(Vec::new())),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(key, value)| (*key, value)).collect();
    let weights: Vec<(&str, &QTensor)> = weights
        .iter()
        .map(|(name, weight)| (*name, weight))
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    gguf_file::write(&mut file, &metadata, &weights)?;
    eprintln!("wrote {out}: every answer repeats {text:?}");
    Ok(())
}
