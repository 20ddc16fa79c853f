//! Which type each tensor of a converted model gets.
//!
//! `q4_k_m` follows llama.cpp's own recipe (`llama_tensor_get_type` in its `llama-quant.cpp`):
//! Q4_K everywhere, Q6_K for the output matrix (the embedding table when the model ties them)
//! and for `attn_v` and `ffn_down` in the layers [`use_more_bits`] picks, and where a row is not
//! a whole number of 256-value blocks the types llama.cpp falls back to (Q5_0 for Q4_K, Q8_0
//! for Q6_K). The bench's random files (`examples/shapes`) use the same recipe, and
//! `tests/shapes_tests.rs` checks it tensor by tensor against Qwen's own Q4_K_M file.

use candle_core::quantized::GgmlDType;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Quantization {
    /// llama.cpp's Q4_K_M: about 4.9 bits a weight, what teams' GGUFs mostly are.
    #[default]
    Q4KM,
    Q8_0,
    F16,
}

impl Quantization {
    /// As space.toml's `[model] quantization` writes them.
    pub const NAMES: [&str; 3] = wire::limits::QUANTIZATIONS;

    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "q4_k_m" => Some(Self::Q4KM),
            "q8_0" => Some(Self::Q8_0),
            "f16" => Some(Self::F16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Q4KM => "q4_k_m",
            Self::Q8_0 => "q8_0",
            Self::F16 => "f16",
        }
    }

    /// As llama.cpp names files of it (`Q4_K_M`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Q4KM => "Q4_K_M",
            Self::Q8_0 => "Q8_0",
            Self::F16 => "F16",
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            Self::Q4KM => 15,
            Self::Q8_0 => 7,
            Self::F16 => 1,
        }
    }

    /// The type of a matrix whose rows hold `columns` values; `more_bits` where the recipe
    /// gives it the wider type.
    pub fn matrix_type(self, more_bits: bool, columns: usize) -> GgmlDType {
        match self {
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 if columns.is_multiple_of(32) => GgmlDType::Q8_0,
            Self::Q8_0 => GgmlDType::F16,
            Self::Q4KM => match (
                more_bits,
                columns.is_multiple_of(256),
                columns.is_multiple_of(32),
            ) {
                (_, _, false) => GgmlDType::F16,
                (true, true, _) => GgmlDType::Q6K,
                (true, false, _) => GgmlDType::Q8_0,
                (false, true, _) => GgmlDType::Q4K,
                (false, false, _) => GgmlDType::Q5_0,
            },
        }
    }

    /// The type of the tensor `name` (a GGUF name) of `shape` (rows first) in a model of
    /// `layers` layers whose output matrix is its embedding table when `tied`. Vectors (norms,
    /// biases) stay f32, as llama.cpp keeps them.
    pub fn tensor_type(self, name: &str, shape: &[usize], layers: usize, tied: bool) -> GgmlDType {
        if shape.len() < 2 {
            return GgmlDType::F32;
        }
        let columns = shape.last().copied().unwrap_or(0);
        let more_bits = match layer_of(name) {
            None => name == "output.weight" || (tied && name == "token_embd.weight"),
            Some(layer) => {
                (name.ends_with("attn_v.weight") || name.ends_with("ffn_down.weight"))
                    && use_more_bits(layer, layers)
            }
        };
        self.matrix_type(more_bits, columns)
    }
}

/// The layer of a `blk.N.…` tensor.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third one
/// between — counted in the order the layers' tensors reach it, which is their names' order
/// as text (`blk.10` before `blk.2`), as the safetensors it converts list them.
pub fn use_more_bits(layer: usize, layers: usize) -> bool {
    let mut as_text: Vec<usize> = (0..layers).collect();
    as_text.sort_by_key(|layer| layer.to_string());
    let Some(i) = as_text.iter().position(|&other| other == layer) else {
        return false;
    };
    i < layers / 8 || i >= 7 * layers / 8 || (i - layers / 8) % 3 == 2
}
