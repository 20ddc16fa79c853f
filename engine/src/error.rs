//! Everything that can go wrong in the engine, grouped by cause, each saying what to do.

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "{file} is not a usable GGUF model: {reason}. Use a complete llama.cpp-style .gguf file; if it was downloaded, delete it and download it again"
    )]
    InvalidGguf { file: String, reason: String },

    #[error("{file} is a {found:?} model, which Vitrina cannot run; supported architectures: {}", crate::Architecture::SUPPORTED.join(", "))]
    UnsupportedArchitecture { file: String, found: String },

    #[error("{file}: GGUF metadata key `{key}` {problem}")]
    Metadata {
        file: String,
        key: String,
        problem: String,
    },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}. Set a template that works for this model in space.toml")]
    Template(String),

    #[error(
        "the prompt has {prompt_tokens} tokens and the model's context window is {context_length}; shorten the conversation or lower max_tokens"
    )]
    ContextOverflow {
        prompt_tokens: usize,
        context_length: usize,
    },

    #[error("invalid generation parameter `{name}`: {problem}")]
    InvalidParameter { name: &'static str, problem: String },

    /// A team's checkpoint that cannot become a GGUF file; the message names the file and
    /// what to change.
    #[error("{0}")]
    Conversion(String),

    #[error("{0}")]
    Io(#[from] std::io::Error),

    #[error("inference failed: {0}")]
    Inference(#[from] candle_core::Error),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl From<wire::limits::OutOfRange> for EngineError {
    fn from(error: wire::limits::OutOfRange) -> Self {
        Self::InvalidParameter {
            name: error.name,
            problem: format!("is {}; allowed: {}", error.found, error.allowed),
        }
    }
}
