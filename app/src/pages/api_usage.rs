//! "Usar vía API": ready-to-paste curl and Python examples for this Space's own address.

use leptos::prelude::*;
use wire::openai::ChatCompletionRequest;
use wire::{ChatMessage, Role};

use super::chat::browser_origin;
use super::use_strings;

/// Shown until the browser says where the page really is.
const PLACEHOLDER_ORIGIN: &str = "https://tu-space.hf.space";

fn curl_example(origin: &str, question: &str) -> String {
    curl_command(
        origin,
        &ChatCompletionRequest {
            messages: vec![ChatMessage::new(Role::User, question)],
            stream: true,
            ..ChatCompletionRequest::default()
        },
    )
}

/// `curl` posting `body` to this Space's chat API.
pub(super) fn curl_command(origin: &str, body: &ChatCompletionRequest) -> String {
    let json = serde_json::to_string(body).expect("a request serialises");
    // The JSON goes inside single quotes: a quote in the text must not end them.
    let quoted = json.replace('\'', r"'\''");
    format!(
        "curl {origin}/v1/chat/completions \\\n  -H 'Content-Type: application/json' \\\n  -d '{quoted}'"
    )
}

fn python_example(origin: &str, question: &str) -> String {
    let question = serde_json::to_string(question).expect("a string serialises");
    format!(
        r#"from openai import OpenAI

client = OpenAI(base_url="{origin}/v1", api_key="no-hace-falta")
stream = client.chat.completions.create(
    model="vitrina",
    messages=[{{"role": "user", "content": {question}}}],
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)"#
    )
}

/// Where the page is served from: a placeholder on the server, the real origin once hydrated.
pub(super) fn use_origin() -> RwSignal<String> {
    let origin = RwSignal::new(PLACEHOLDER_ORIGIN.to_owned());
    Effect::new(move || {
        if let Some(real) = browser_origin() {
            origin.set(real);
        }
    });
    origin
}

#[island]
pub fn ApiUsage(question: String) -> impl IntoView {
    super::island_start();
    let strings = use_strings();
    let origin = use_origin();
    let curl_question = question.clone();
    view! {
        <section class="section api-usage" id="api" aria-labelledby="api-titulo">
            <h2 id="api-titulo">{move || strings().use_api}</h2>
            <p>{move || strings().use_api_intro}</p>
            <h3>{move || strings().with_curl}</h3>
            // Focusable: a keyboard scrolls the wide lines sideways.
            <pre class="snippet" tabindex="0" aria-label=move || strings().with_curl><code class="curl">{move || curl_example(&origin.get(), &curl_question)}</code></pre>
            <h3>{move || strings().with_python}</h3>
            <pre class="snippet" tabindex="0" aria-label=move || strings().with_python><code class="python">{move || python_example(&origin.get(), &question)}</code></pre>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_quote_the_question_for_their_language() {
        let curl = curl_example("http://127.0.0.1:7860", "¿Qué es 'un corpus'?");
        assert!(
            curl.starts_with("curl http://127.0.0.1:7860/v1/chat/completions"),
            "{curl}"
        );
        assert!(curl.contains(r#"¿Qué es '\''un corpus'\''?"#), "{curl}");
        let python = python_example("http://127.0.0.1:7860", "Di \"hola\"");
        assert!(
            python.contains(r#"base_url="http://127.0.0.1:7860/v1""#)
                && python.contains(r#""content": "Di \"hola\"""#),
            "{python}"
        );
    }
}
