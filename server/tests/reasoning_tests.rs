//! A reasoning model's thinking reaches API clients as `reasoning_content` (llama-server's
//! field), whole and streamed, and the receipt still signs the answer as generated: a tiny
//! model (engine/examples/tiny_model.rs) whose every token is one text that thinks first.

mod common;

use server::inference::{Inference, ResolvedModel};

#[allow(dead_code)]
#[path = "../../engine/examples/tiny_model.rs"]
mod tiny_model;

const THOUGHT: &str = "<think>Pienso en Madrid.</think>La capital es Madrid. ";

#[test]
fn thinking_is_given_apart_whole_and_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("thinker.gguf");
    tiny_model::write(&path, THOUGHT, "llama").unwrap();
    let inference = Inference::new();
    inference.start_loading(
        ResolvedModel::File(path),
        engine::LoadOptions::default(),
        Vec::new(),
    );
    let api = common::api(common::wait_until_ready(inference), common::roomy_limits());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let address = common::serve(api).await;
        let http = reqwest::Client::new();
        let ask = |stream: bool| {
            http.post(format!("http://{address}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(serde_json::json!({"messages": [{"role": "user", "content": "¿Capital?"}], "max_tokens": 1, "temperature": 0, "stream": stream}).to_string())
                .send()
        };
        let whole: serde_json::Value = ask(false).await.unwrap().json().await.unwrap();
        let message = &whole["choices"][0]["message"];
        assert_eq!(message["reasoning_content"], "Pienso en Madrid.", "{whole}");
        assert_eq!(message["content"], "La capital es Madrid. ", "{whole}");

        let events = ask(true).await.unwrap().text().await.unwrap();
        let (mut reasoning, mut content, mut rebuilt) = (String::new(), String::new(), String::new());
        for data in events.lines().filter_map(|line| line.strip_prefix("data: ")) {
            let Ok(wire::openai::StreamData::Chunk(chunk)) = serde_json::from_str::<wire::openai::StreamData>(data) else {
                continue;
            };
            let event = app::conversation::parse_event(data).unwrap();
            app::conversation::append_answer(&mut rebuilt, &event);
            if let Some(delta) = chunk.choices.first().map(|choice| &choice.delta) {
                reasoning.push_str(delta.reasoning_content.as_deref().unwrap_or_default());
                content.push_str(delta.content.as_deref().unwrap_or_default());
            }
        }
        assert_eq!(reasoning, "Pienso en Madrid.");
        assert_eq!(content, "La capital es Madrid. ");
        // What the page keeps (and sends with its rating) is the answer as generated.
        assert_eq!(rebuilt, THOUGHT);
    });
}
