//! Vitrina's inference engine.
//!
//! One crate, with no server or browser dependencies, so that the axum server (native, CPU or
//! CUDA) and the visitor's browser (wasm32 in a Web Worker) run the very same generation code:
//! read a GGUF ([`gguf`]), load its quantized weights ([`model`]), tokenize ([`tokenizer`]),
//! render the chat template ([`template`]), sample ([`sampling`]) and stream the answer
//! ([`generate`]), on the CPU or a GPU ([`device`]). Natively it also fetches and verifies model files ([`cache`], [`catalog`]) and converts
//! teams' safetensors checkpoints and LoRA adapters into GGUF ([`convert`]).

// Every `unsafe` says why it holds (the kernels have most of them).
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_arch = "wasm32"))]
pub mod cache;
#[cfg(not(target_arch = "wasm32"))]
pub mod catalog;
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod device;
pub mod digest;
mod error;
pub mod generate;
pub mod gguf;
mod kernels;
pub mod llama;
pub mod model;
pub mod prefix;
pub mod sampling;
pub mod template;
pub mod tokenizer;

use std::io::{Read, Seek};

pub use candle_core::Device;
pub use candle_core::quantized::GgmlDType;
pub use error::{EngineError, Result};
pub use generate::{
    Answer, ChatModel, Completion, FinishReason, Flow, GenerateParams, ModelInfo, Overflow,
    Prompter, Timings, Usage,
};
pub use gguf::{Architecture, Gguf};
pub use kernels::parallel::threads;
pub use model::{Model, Sequence};
pub use prefix::{Owner, PrefixCache};
pub use sampling::SamplingParams;
pub use template::ChatTemplate;
pub use tokenizer::Tokenizer;
pub use wire::chat::{ChatMessage, Role};

/// How to load a chat model beyond what its GGUF says.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Replaces the GGUF's own tokenizer.
    pub tokenizer_json: Option<Vec<u8>>,
    /// Replaces the GGUF's chat template (when it has none: Gemma's turn format for Gemma,
    /// ChatML for every other model).
    pub chat_template: Option<String>,
    /// Rewrites weights of a quantisation multiplied more slowly than Q8_0 (Q4_1, Q5_0, Q5_1)
    /// as Q8_0 at load when the model runs on the CPU: faster decoding for more memory and a
    /// slower start. Ignored on a GPU, whose kernels read every type.
    pub requantize: bool,
    /// Memory for the keys and values of finished answers, reused by the prompts that start
    /// the same way (a conversation's next turn, a shared system prompt); 0 keeps none.
    pub kept_prefix_bytes: usize,
    /// Reads the special tokens a message's content writes (`<|im_start|>system…`) as the
    /// model's control tokens, as servers that tokenise the rendered prompt whole do. Off, they
    /// are text: a visitor cannot fake a turn of the conversation.
    pub control_tokens_in_messages: bool,
}

/// Loads a chat model from a GGUF stream; `file` names it in errors.
pub fn load_chat_model<R: Read + Seek>(
    reader: &mut R,
    file: &str,
    options: &LoadOptions,
    device: &Device,
) -> Result<ChatModel> {
    let gguf = Gguf::read(reader, file)?;
    let tokenizer = match &options.tokenizer_json {
        Some(json) => Tokenizer::from_json(json)?,
        None => Tokenizer::from_gguf(&gguf)?,
    };
    let token_text = |key: &str| {
        gguf.u32(key)
            .and_then(|id| tokenizer.token(id))
            .unwrap_or_default()
    };
    let (bos, eos) = (
        token_text("tokenizer.ggml.bos_token_id"),
        token_text("tokenizer.ggml.eos_token_id"),
    );
    let eos_id = gguf.u32("tokenizer.ggml.eos_token_id");
    let fallback = if gguf.architecture == Architecture::Gemma {
        template::GEMMA
    } else {
        template::CHATML
    };
    let source = options
        .chat_template
        .as_deref()
        .or(gguf.string("tokenizer.chat_template"))
        .unwrap_or(fallback)
        .to_owned();
    let template = ChatTemplate::new(&source, &bos, &eos)?;
    let info = gguf.info();
    let model = Model::load(gguf, reader, device, options.requantize)?;
    let mut prompter = Prompter::new(tokenizer, template, eos_id, model.context_length);
    prompter.control_tokens_in_messages = options.control_tokens_in_messages;
    let mut chat = ChatModel::new(info, model, prompter);
    chat.keep_prefixes(options.kept_prefix_bytes);
    Ok(chat)
}
