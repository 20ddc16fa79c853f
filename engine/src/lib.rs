//! Vitrina's inference engine.
//!
//! One crate, with no server or browser dependencies, so that the axum server (native, CPU or
//! CUDA) and the visitor's browser (wasm32 in a Web Worker) run the very same generation code:
//! read a GGUF ([`gguf`]), load its quantized weights ([`model`]), tokenize ([`tokenizer`]),
//! render the chat template ([`template`]), sample ([`sampling`]) and stream the answer
//! ([`generate`]). Natively it also fetches and verifies model files ([`cache`], [`catalog`]).

#[cfg(not(target_arch = "wasm32"))]
pub mod cache;
#[cfg(not(target_arch = "wasm32"))]
pub mod catalog;
pub mod chat;
mod error;
pub mod generate;
pub mod gguf;
pub mod model;
pub mod sampling;
pub mod template;
pub mod tokenizer;

use std::io::{Read, Seek};

pub use candle_core::Device;
pub use chat::{ChatMessage, Role};
pub use error::{EngineError, Result};
pub use generate::{ChatModel, Completion, FinishReason, Flow, GenerateParams, ModelInfo, Overflow, Usage};
pub use gguf::{Architecture, Gguf};
pub use model::Model;
pub use sampling::SamplingParams;
pub use template::ChatTemplate;
pub use tokenizer::Tokenizer;

/// Loads a chat model from a GGUF stream. `tokenizer_json` replaces the GGUF's own tokenizer;
/// `template` replaces the GGUF's chat template (when it has none: Gemma's turns for Gemma,
/// ChatML for the rest).
pub fn load_chat_model<R: Read + Seek>(
    reader: &mut R,
    file: &str,
    tokenizer_json: Option<&[u8]>,
    template: Option<&str>,
    device: &Device,
) -> Result<ChatModel> {
    let gguf = Gguf::read(reader, file)?;
    let tokenizer = match tokenizer_json {
        Some(json) => Tokenizer::from_json(json)?,
        None => Tokenizer::from_gguf(&gguf)?,
    };
    let token_text = |key: &str| gguf.u32(key).and_then(|id| tokenizer.token(id)).unwrap_or_default();
    let (bos, eos) = (token_text("tokenizer.ggml.bos_token_id"), token_text("tokenizer.ggml.eos_token_id"));
    let eos_id = gguf.u32("tokenizer.ggml.eos_token_id");
    let fallback = if gguf.architecture == Architecture::Gemma { template::GEMMA } else { template::CHATML };
    let source = template.or(gguf.string("tokenizer.chat_template")).unwrap_or(fallback).to_owned();
    let template = ChatTemplate::new(&source, &bos, &eos)?;
    let info = ModelInfo {
        architecture: gguf.architecture_name.clone(),
        quantization: gguf.main_quantization(),
        context_length: gguf.context_length(),
    };
    let model = Model::load(gguf, reader, device)?;
    Ok(ChatModel::new(info, model, tokenizer, template, eos_id))
}
