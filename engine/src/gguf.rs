//! Reading a GGUF file's header: which architecture it is and what its metadata says about the
//! tokenizer, the chat template and the context window.

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{EngineError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// Llama and its relatives that llama.cpp files as `llama`: Mistral, SmolLM…
    Llama,
    Qwen2,
    /// Qwen2 with each head's query and key normalised (`attn_q_norm`, `attn_k_norm`).
    Qwen3,
    /// Gemma 1, 2 and 3, run by the llama forward with their switches (`llama::Config`):
    /// candle-transformers' `quantized_gemma3` gates with SiLU where Gemma uses GELU, and reads
    /// no Gemma 1 or 2 file.
    Gemma,
    Phi3,
    Phi2,
}

impl Architecture {
    pub const SUPPORTED: &[&str] = &[
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "phi2",
    ];

    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "llama" | "mistral" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            "gemma" | "gemma2" | "gemma3" => Some(Self::Gemma),
            "phi3" => Some(Self::Phi3),
            "phi2" => Some(Self::Phi2),
            _ => None,
        }
    }
}

/// A parsed GGUF header. `file` names the model in errors.
pub struct Gguf {
    pub file: String,
    pub content: Content,
    pub architecture: Architecture,
    pub architecture_name: String,
}

impl Gguf {
    pub fn read<R: Read + Seek>(reader: &mut R, file: &str) -> Result<Self> {
        let invalid = |reason: String| EngineError::InvalidGguf {
            file: file.to_owned(),
            reason,
        };
        let mut magic = [0u8; 4];
        reader
            .read_exact(&mut magic)
            .map_err(|_| invalid("the file is shorter than a GGUF header".into()))?;
        if &magic != b"GGUF" {
            return Err(invalid(format!(
                "it starts with {magic:02x?}, not the GGUF magic \"GGUF\""
            )));
        }
        reader
            .rewind()
            .map_err(|error| invalid(error.to_string()))?;
        let content = Content::read(reader)
            .map_err(|error| invalid(format!("the header cannot be read ({error})")))?;
        let architecture_name = match content.metadata.get("general.architecture") {
            Some(Value::String(name)) => name.clone(),
            _ => return Err(invalid("it has no `general.architecture` metadata".into())),
        };
        let architecture = Architecture::from_gguf_name(&architecture_name).ok_or_else(|| {
            EngineError::UnsupportedArchitecture {
                file: file.to_owned(),
                found: architecture_name.clone(),
            }
        })?;
        Ok(Self {
            file: file.to_owned(),
            content,
            architecture,
            architecture_name,
        })
    }

    pub fn string(&self, key: &str) -> Option<&str> {
        match self.content.metadata.get(key) {
            Some(Value::String(text)) => Some(text),
            _ => None,
        }
    }

    pub fn u32(&self, key: &str) -> Option<u32> {
        self.content
            .metadata
            .get(key)
            .and_then(|value| value.to_u32().ok())
    }

    /// A metadata value keyed under the architecture, e.g. `qwen2.context_length`.
    pub fn arch_u32(&self, suffix: &str) -> Option<u32> {
        self.u32(&format!("{}.{suffix}", self.architecture_name))
    }

    pub fn context_length(&self) -> usize {
        self.arch_u32("context_length").unwrap_or(2048) as usize
    }

    /// The file's quantisation as llama.cpp names it (`Q4_K_M`, `Q4_1`…), from
    /// `general.file_type`, else the type of most weights.
    pub fn main_quantization(&self) -> String {
        const FILE_TYPES: [(u32, &str); 17] = [
            (0, "F32"),
            (1, "F16"),
            (2, "Q4_0"),
            (3, "Q4_1"),
            (7, "Q8_0"),
            (8, "Q5_0"),
            (9, "Q5_1"),
            (10, "Q2_K"),
            (11, "Q3_K_S"),
            (12, "Q3_K_M"),
            (13, "Q3_K_L"),
            (14, "Q4_K_S"),
            (15, "Q4_K_M"),
            (16, "Q5_K_S"),
            (17, "Q5_K_M"),
            (18, "Q6_K"),
            (32, "BF16"),
        ];
        let named = self
            .u32("general.file_type")
            .and_then(|code| FILE_TYPES.iter().find(|(known, _)| *known == code));
        if let Some((_, name)) = named {
            return (*name).to_owned();
        }
        let mut counts = std::collections::HashMap::new();
        for info in self.content.tensor_infos.values() {
            *counts
                .entry(format!("{:?}", info.ggml_dtype))
                .or_insert(0usize) += info.shape.elem_count();
        }
        counts
            .into_iter()
            .max_by_key(|(_, elements)| *elements)
            .map(|(dtype, _)| dtype)
            .unwrap_or_default()
    }

    /// Whether a file of `bytes` bytes holds every tensor its header lists: a download or copy
    /// cut short still has a readable header.
    pub fn check_length(&self, bytes: u64) -> Result<()> {
        let end = self
            .content
            .tensor_infos
            .values()
            .map(|info| {
                let dtype = info.ggml_dtype;
                let size = info.shape.elem_count() / dtype.block_size() * dtype.type_size();
                self.content.tensor_data_offset + info.offset + size as u64
            })
            .max()
            .unwrap_or(self.content.tensor_data_offset);
        if end > bytes {
            return Err(EngineError::InvalidGguf {
                file: self.file.clone(),
                reason: format!(
                    "it is cut short: its tensors end at byte {end}, but the file has {bytes} bytes"
                ),
            });
        }
        Ok(())
    }

    /// What the header says of the model, without reading any weight.
    pub fn info(&self) -> crate::ModelInfo {
        let mut types = std::collections::HashMap::<String, usize>::new();
        for info in self.content.tensor_infos.values() {
            *types.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
        }
        let mut tensor_types: Vec<(String, usize)> = types.into_iter().collect();
        tensor_types.sort_by(|(a_name, a_count), (b_name, b_count)| {
            b_count.cmp(a_count).then(a_name.cmp(b_name))
        });
        crate::ModelInfo {
            architecture: self.architecture_name.clone(),
            quantization: self.main_quantization(),
            parameters: self
                .content
                .tensor_infos
                .values()
                .map(|info| info.shape.elem_count() as u64)
                .sum(),
            tensor_types,
            context_length: self.context_length(),
        }
    }

    pub fn string_array(&self, key: &str) -> Option<Vec<&str>> {
        let Some(Value::Array(values)) = self.content.metadata.get(key) else {
            return None;
        };
        values
            .iter()
            .map(|value| match value {
                Value::String(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn i32_array(&self, key: &str) -> Option<Vec<i32>> {
        let Some(Value::Array(values)) = self.content.metadata.get(key) else {
            return None;
        };
        values.iter().map(|value| value.to_i32().ok()).collect()
    }

    pub fn f32_array(&self, key: &str) -> Option<Vec<f32>> {
        let Some(Value::Array(values)) = self.content.metadata.get(key) else {
            return None;
        };
        values.iter().map(|value| value.to_f32().ok()).collect()
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.content
            .metadata
            .get(key)
            .and_then(|value| value.to_bool().ok())
    }
}
