//! The chat box: the visitor's question goes to the server's OpenAI-compatible API and the
//! answer streams in token by token. Everything shown is text, never markup.

use leptos::prelude::*;

use super::use_strings;
use crate::space::ChatExample;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Speaker {
    Visitor,
    Model,
}

#[derive(Clone, Copy)]
struct Turn {
    /// Position in the conversation, stable while the text streams in.
    number: usize,
    speaker: Speaker,
    text: RwSignal<String>,
}

/// The question sent for an example: its context, when it has one, goes after it.
fn example_prompt(example: &ChatExample) -> String {
    match &example.contexto {
        Some(context) => format!("{}\n\n{}", example.pregunta, context),
        None => example.pregunta.clone(),
    }
}

#[component]
pub fn Chat(examples: Vec<ChatExample>) -> impl IntoView {
    let strings = use_strings();
    let turns = RwSignal::new(Vec::<Turn>::new());
    let draft = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let failure = RwSignal::new(None::<String>);
    // Buttons stay disabled until the page is interactive: a click before hydration would be lost.
    let interactive = RwSignal::new(false);
    Effect::new(move || interactive.set(true));
    // The browser's AbortController cannot leave its thread; the server's stand-in can, and
    // must, since a server render may end on another thread than it began.
    #[cfg(feature = "hydrate")]
    let controller = StoredValue::new_local(None::<browser::Abort>);
    #[cfg(not(feature = "hydrate"))]
    let controller = StoredValue::new(None::<browser::Abort>);

    let send = move |question: String| {
        let question = question.trim().to_owned();
        if question.is_empty() || busy.get_untracked() {
            return;
        }
        failure.set(None);
        draft.set(String::new());
        let answer = RwSignal::new(String::new());
        turns.update(|turns| {
            let number = turns.len();
            turns.push(Turn { number, speaker: Speaker::Visitor, text: RwSignal::new(question) });
            turns.push(Turn { number: number + 1, speaker: Speaker::Model, text: answer });
        });
        let history: Vec<(Speaker, String)> = turns
            .get_untracked()
            .iter()
            .filter(|turn| turn.text != answer)
            .map(|turn| (turn.speaker, turn.text.get_untracked()))
            .collect();
        busy.set(true);
        let abort = browser::Abort::new();
        controller.set_value(Some(abort.clone()));
        leptos::task::spawn_local(async move {
            let result = browser::stream_answer(&history, &abort, move |delta| answer.update(|text| text.push_str(delta))).await;
            if let Err(message) = result {
                failure.set(Some(message));
            }
            busy.set(false);
        });
    };
    let stop = move |_| {
        if let Some(abort) = controller.get_value() {
            abort.abort();
        }
    };
    let clear = move |_| {
        turns.set(Vec::new());
        failure.set(None);
    };

    view! {
        <section class="section chat" id="chat" aria-labelledby="chat-titulo">
            <h2 id="chat-titulo">{move || strings().chat}</h2>
            <ol class="turns" aria-live="polite">
                <For each=move || turns.get() key=|turn| turn.number let:turn>
                    <li class=if turn.speaker == Speaker::Visitor { "turn turn-visitor" } else { "turn turn-model" }>
                        <span class="who">
                            {move || if turn.speaker == Speaker::Visitor { strings().you } else { strings().model }}
                        </span>
                        <p class="bubble">{move || turn.text.get()}</p>
                    </li>
                </For>
            </ol>
            <p class="chat-error" role="alert">
                {move || failure.get().map(|message| format!("{} {message}", strings().chat_failed))}
            </p>
            <div class="example-chips">
                <span class="label">{move || strings().try_example}</span>
                {examples
                    .into_iter()
                    .map(|example| {
                        let prompt = example_prompt(&example);
                        view! {
                            <button
                                type="button"
                                class="chip example-chip"
                                disabled=move || !interactive.get() || busy.get()
                                on:click=move |_| send(prompt.clone())
                            >
                                {example.pregunta}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>
            <form class="composer" on:submit=move |event| {
                event.prevent_default();
                send(draft.get_untracked());
            }>
                <label for="pregunta" class="visually-hidden">{move || strings().chat_label}</label>
                <textarea
                    id="pregunta"
                    rows="2"
                    placeholder=move || strings().chat_placeholder
                    prop:value=move || draft.get()
                    on:input=move |event| draft.set(event_target_value(&event))
                    on:keydown=move |event| {
                        if event.key() == "Enter" && !event.shift_key() {
                            event.prevent_default();
                            send(draft.get_untracked());
                        }
                    }
                ></textarea>
                <div class="composer-buttons">
                    <button type="submit" class="primary" disabled=move || !interactive.get() || busy.get()>
                        {move || strings().send}
                    </button>
                    <button type="button" class="secondary stop" hidden=move || !busy.get() on:click=stop>
                        {move || strings().stop}
                    </button>
                    <button type="button" class="secondary" disabled=move || !interactive.get() || busy.get() on:click=clear>
                        {move || strings().clear}
                    </button>
                </div>
            </form>
            <noscript>
                <p>{move || strings().chat_needs_js}</p>
            </noscript>
        </section>
    }
    // Erased: the page's view type would otherwise nest deeper than the compiler follows.
    .into_any()
}

/// The browser's side of streaming: fetch with an abort signal, read the body as it arrives,
/// split it into server-sent events.
mod browser {
    use super::Speaker;

    /// OpenAI's wire names for the speakers.
    #[cfg(any(feature = "hydrate", test))]
    fn role(speaker: Speaker) -> &'static str {
        match speaker {
            Speaker::Visitor => "user",
            Speaker::Model => "assistant",
        }
    }

    #[cfg(any(feature = "hydrate", test))]
    fn request_body(history: &[(Speaker, String)]) -> String {
        let messages: Vec<serde_json::Value> =
            history.iter().map(|(speaker, text)| serde_json::json!({"role": role(*speaker), "content": text})).collect();
        serde_json::json!({"messages": messages, "stream": true, "max_tokens": 512}).to_string()
    }

    /// The text of one SSE `data:` payload: `Ok(Some(delta))`, `Ok(None)` for chunks without
    /// text, `Err` for an error the server sent mid-stream.
    #[cfg(any(feature = "hydrate", test))]
    pub fn delta_of(data: &str) -> Result<Option<String>, String> {
        let chunk: serde_json::Value = serde_json::from_str(data).map_err(|error| error.to_string())?;
        if let Some(message) = chunk["error"]["message"].as_str() {
            return Err(message.to_owned());
        }
        Ok(chunk["choices"][0]["delta"]["content"].as_str().filter(|text| !text.is_empty()).map(str::to_owned))
    }

    #[cfg(feature = "hydrate")]
    pub use imp::*;

    #[cfg(feature = "hydrate")]
    mod imp {
        use js_sys::{Reflect, Uint8Array};
        use wasm_bindgen::{JsCast, JsValue};
        use wasm_bindgen_futures::JsFuture;
        use web_sys::{AbortController, ReadableStreamDefaultReader, RequestInit, Response, TextDecodeOptions, TextDecoder};

        use super::{Speaker, delta_of, request_body};

        #[derive(Clone)]
        pub struct Abort(AbortController);

        impl Abort {
            pub fn new() -> Self {
                Self(AbortController::new().expect("every browser with wasm has AbortController"))
            }

            pub fn abort(&self) {
                self.0.abort();
            }
        }

        fn text_of(error: JsValue) -> String {
            error.as_string().or_else(|| js_sys::Error::from(error).message().as_string()).unwrap_or_else(|| "error".into())
        }

        pub async fn stream_answer(history: &[(Speaker, String)], abort: &Abort, mut on_delta: impl FnMut(&str)) -> Result<(), String> {
            let init = RequestInit::new();
            init.set_method("POST");
            init.set_body(&JsValue::from_str(&request_body(history)));
            let headers = web_sys::Headers::new().map_err(text_of)?;
            headers.set("Content-Type", "application/json").map_err(text_of)?;
            init.set_headers(&headers);
            init.set_signal(Some(&abort.0.signal()));
            let window = web_sys::window().ok_or("no window")?;
            let response: Response = match JsFuture::from(window.fetch_with_str_and_init("/v1/chat/completions", &init)).await {
                Ok(response) => response.dyn_into().map_err(text_of)?,
                Err(_) if abort.0.signal().aborted() => return Ok(()),
                Err(error) => return Err(text_of(error)),
            };
            if !response.ok() {
                let body = JsFuture::from(response.text().map_err(text_of)?).await.map_err(text_of)?.as_string().unwrap_or_default();
                return Err(delta_of(&body).err().unwrap_or_else(|| format!("HTTP {}", response.status())));
            }
            let body = response.body().ok_or("the answer has no body")?;
            let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
            let decoder = TextDecoder::new().map_err(text_of)?;
            let options = TextDecodeOptions::new();
            options.set_stream(true);
            let mut pending = String::new();
            loop {
                let chunk = match JsFuture::from(reader.read()).await {
                    Ok(chunk) => chunk,
                    Err(_) if abort.0.signal().aborted() => return Ok(()),
                    Err(error) => return Err(text_of(error)),
                };
                if Reflect::get(&chunk, &"done".into()).map_err(text_of)?.as_bool().unwrap_or(true) {
                    return Ok(());
                }
                let bytes: Uint8Array = Reflect::get(&chunk, &"value".into()).map_err(text_of)?.dyn_into().map_err(text_of)?;
                pending.push_str(&decoder.decode_with_js_u8_array_and_options(&bytes, &options).map_err(text_of)?);
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    for data in event.lines().filter_map(|line| line.strip_prefix("data: ")) {
                        if data == "[DONE]" {
                            return Ok(());
                        }
                        if let Some(delta) = delta_of(data)? {
                            on_delta(&delta);
                        }
                    }
                }
            }
        }
    }

    /// On the server the chat never runs: these keep the component's code the same there.
    #[cfg(not(feature = "hydrate"))]
    mod imp {
        use super::Speaker;

        #[derive(Clone)]
        pub struct Abort;

        impl Abort {
            pub fn new() -> Self {
                Self
            }

            pub fn abort(&self) {}
        }

        pub async fn stream_answer(_history: &[(Speaker, String)], _abort: &Abort, _on_delta: impl FnMut(&str)) -> Result<(), String> {
            Ok(())
        }
    }

    #[cfg(not(feature = "hydrate"))]
    pub use imp::*;

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_deltas_and_errors_from_stream_chunks() {
            let chunk = r#"{"choices":[{"index":0,"delta":{"content":"¡Hola"},"finish_reason":null}]}"#;
            assert_eq!(delta_of(chunk), Ok(Some("¡Hola".to_owned())));
            assert_eq!(delta_of(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#), Ok(None));
            assert_eq!(delta_of(r#"{"error":{"message":"the server is busy"}}"#), Err("the server is busy".to_owned()));
            let body = request_body(&[(Speaker::Visitor, "¿Qué tal?".into())]);
            assert!(body.contains(r#""role":"user""#) && body.contains(r#""stream":true"#), "{body}");
        }
    }
}
