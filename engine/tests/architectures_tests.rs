//! Every architecture the engine accepts loads and generates, including those no real GGUF is
//! available for offline (Phi-3, Phi-2): tiny models written by the `tiny_model` example, whose
//! every next token is one known text, so a wrong tensor name, metadata key or layout shows as
//! an error or as other text.

use std::io::Cursor;

use engine::{
    ChatMessage, Device, Flow, GenerateParams, LoadOptions, Role, SamplingParams, load_chat_model,
};

// The example's `main` is not called here: only its writer.
#[allow(dead_code)]
#[path = "../examples/tiny_model.rs"]
mod tiny_model;

#[test]
fn llama_phi3_and_phi2_layouts_load_and_generate() {
    let text = "¡Hola, Vitrina!";
    let directory = tempfile::tempdir().unwrap();
    for architecture in ["llama", "phi3", "phi2"] {
        let path = directory.path().join(format!("{architecture}.gguf"));
        tiny_model::write(&path, text, architecture).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for requantize in [false, true] {
            let options = LoadOptions {
                requantize,
                ..LoadOptions::default()
            };
            let mut model = load_chat_model(
                &mut Cursor::new(&bytes),
                architecture,
                &options,
                &Device::Cpu,
            )
            .unwrap_or_else(|error| panic!("{architecture}: {error}"));
            let params = GenerateParams {
                sampling: SamplingParams::greedy(),
                max_tokens: 3,
                ..GenerateParams::default()
            };
            let completion = model
                .generate(
                    &[ChatMessage::new(Role::User, "¿Quién eres?")],
                    &params,
                    &mut |_| Flow::Continue,
                )
                .unwrap_or_else(|error| panic!("{architecture}: {error}"));
            assert_eq!(completion.text, text.repeat(3), "{architecture}");
            assert_eq!(model.info.architecture, architecture);
        }
    }
}
