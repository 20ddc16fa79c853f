//! `tiny_checkpoint DIR`: a tiny random Qwen3 checkpoint in Hugging Face's format
//! (`DIR/checkpoint/`: config.json, two safetensors shards with their index, the tokenizer
//! files) and its conversion to GGUF (`DIR/converted.gguf`, Q8_0), for the end-to-end suite:
//! `tests/api/test_converted_gguf.py` reads the file with Python's `gguf` package, an
//! implementation independent of this one.

#[allow(dead_code)]
#[path = "checkpoints/mod.rs"]
mod checkpoints;

fn main() -> Result<(), checkpoints::Failure> {
    let Some(dir) = std::env::args().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: tiny_checkpoint DIR");
        std::process::exit(2);
    };
    let checkpoint = dir.join("checkpoint");
    // Rows of 64 and 128 values: Q8_0 blocks; no Q4_K (256) in a model this small.
    checkpoints::write(&checkpoint, &checkpoints::Spec::tiny("qwen3"))?;
    let out = dir.join("converted.gguf");
    engine::convert::convert(
        &engine::convert::Conversion {
            model: &checkpoint,
            adapter: None,
            tokenizer: None,
            quantization: engine::convert::Quantization::Q8_0,
            chat_template: None,
            name: "tiny-qwen3",
        },
        &out,
        &mut |_| {},
    )?;
    println!("wrote {}", out.display());
    Ok(())
}
