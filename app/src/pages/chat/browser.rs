//! What the chat asks of the browser: a streamed `fetch` that can be aborted, `localStorage`
//! and the clipboard. On the server the chat never runs; stand-ins keep the component the same.

use crate::conversation::{ChatError, Saved, StreamEvent};

#[cfg(feature = "hydrate")]
pub use imp::*;

#[cfg(feature = "hydrate")]
mod imp {
    use js_sys::{Reflect, Uint8Array};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{AbortController, ReadableStreamDefaultReader, RequestInit, Response, TextDecodeOptions, TextDecoder};

    use super::{ChatError, Saved, StreamEvent};
    use crate::conversation::{STORAGE_KEY, parse_event};

    #[derive(Clone)]
    pub struct Abort(AbortController);

    impl Abort {
        pub fn new() -> Self {
            Self(AbortController::new().expect("every browser with wasm has AbortController"))
        }

        pub fn abort(&self) {
            self.0.abort();
        }

        fn aborted(&self) -> bool {
            self.0.signal().aborted()
        }
    }

    fn text_of(error: JsValue) -> String {
        error.as_string().or_else(|| js_sys::Error::from(error).message().as_string()).unwrap_or_else(|| "error".into())
    }

    /// Posts `body` to the chat API and hands each event of the answer to `on_event`. A stop
    /// asked through `abort` ends it without an error.
    pub async fn stream_answer(body: String, abort: &Abort, mut on_event: impl FnMut(StreamEvent)) -> Result<(), ChatError> {
        let connection = |error: JsValue| ChatError::connection(text_of(error));
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_body(&JsValue::from_str(&body));
        let headers = web_sys::Headers::new().map_err(connection)?;
        headers.set("Content-Type", "application/json").map_err(connection)?;
        init.set_headers(&headers);
        init.set_signal(Some(&abort.0.signal()));
        let window = web_sys::window().ok_or_else(|| ChatError::other("no window".into()))?;
        let response: Response = match JsFuture::from(window.fetch_with_str_and_init("/v1/chat/completions", &init)).await {
            Ok(response) => response.dyn_into().map_err(connection)?,
            Err(_) if abort.aborted() => return Ok(()),
            Err(error) => return Err(connection(error)),
        };
        if !response.ok() {
            let text = JsFuture::from(response.text().map_err(connection)?).await.map_err(connection)?;
            return Err(ChatError::from_response(response.status(), &text.as_string().unwrap_or_default()));
        }
        let body = response.body().ok_or_else(|| ChatError::other("the answer has no body".into()))?;
        let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
        let decoder = TextDecoder::new().map_err(connection)?;
        let options = TextDecodeOptions::new();
        options.set_stream(true);
        let mut pending = String::new();
        loop {
            let chunk = match JsFuture::from(reader.read()).await {
                Ok(chunk) => chunk,
                Err(_) if abort.aborted() => return Ok(()),
                Err(error) => return Err(connection(error)),
            };
            if Reflect::get(&chunk, &"done".into()).map_err(connection)?.as_bool().unwrap_or(true) {
                return Ok(());
            }
            let bytes: Uint8Array = Reflect::get(&chunk, &"value".into()).map_err(connection)?.dyn_into().map_err(connection)?;
            pending.push_str(&decoder.decode_with_js_u8_array_and_options(&bytes, &options).map_err(connection)?);
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                for data in event.lines().filter_map(|line| line.strip_prefix("data: ")) {
                    if data == "[DONE]" {
                        return Ok(());
                    }
                    on_event(parse_event(data)?);
                }
            }
        }
    }

    fn storage() -> Option<web_sys::Storage> {
        web_sys::window()?.local_storage().ok().flatten()
    }

    /// The conversation and settings of the last visit; nothing if absent or unreadable.
    pub fn load_saved() -> Option<Saved> {
        serde_json::from_str(&storage()?.get_item(STORAGE_KEY).ok()??).ok()
    }

    /// Private browsing may refuse storage: the chat still works, it just will not be kept.
    pub fn save(saved: &Saved) {
        if let (Some(storage), Ok(json)) = (storage(), serde_json::to_string(saved)) {
            let _ = storage.set_item(STORAGE_KEY, &json);
        }
    }

    pub fn copy_text(text: &str) {
        let Some(window) = web_sys::window() else { return };
        let clipboard = Reflect::get(&window.navigator(), &"clipboard".into()).ok().filter(|value| !value.is_undefined());
        let write = clipboard.as_ref().and_then(|clipboard| Reflect::get(clipboard, &"writeText".into()).ok());
        if let (Some(clipboard), Some(write)) = (clipboard, write.and_then(|write| write.dyn_into::<js_sys::Function>().ok())) {
            // Refused without permission or focus: nothing to do about it from here.
            let _ = write.call1(&clipboard, &JsValue::from_str(text));
        }
    }

    /// A click inside the conversation: if it hit a code block's copy button, copies the code
    /// and says so on the button.
    pub fn copy_code_clicked(event: &web_sys::MouseEvent, copied_label: &str) {
        let Some(target) = event.target().and_then(|target| target.dyn_into::<web_sys::Element>().ok()) else { return };
        let Ok(Some(button)) = target.closest(".copy-code") else { return };
        let code = button.parent_element().and_then(|block| block.query_selector("code").ok().flatten());
        if let Some(code) = code {
            copy_text(&code.text_content().unwrap_or_default());
            button.set_text_content(Some(copied_label));
        }
    }

    /// Where this page is served from, for the API examples.
    pub fn origin() -> Option<String> {
        web_sys::window()?.location().origin().ok()
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::{ChatError, Saved, StreamEvent};

    #[derive(Clone)]
    pub struct Abort;

    impl Abort {
        pub fn new() -> Self {
            Self
        }

        pub fn abort(&self) {}
    }

    pub async fn stream_answer(_body: String, _abort: &Abort, _on_event: impl FnMut(StreamEvent)) -> Result<(), ChatError> {
        Ok(())
    }

    pub fn load_saved() -> Option<Saved> {
        None
    }

    pub fn save(_saved: &Saved) {}

    pub fn copy_text(_text: &str) {}

    pub fn copy_code_clicked(_event: &leptos::ev::MouseEvent, _copied_label: &str) {}

    pub fn origin() -> Option<String> {
        None
    }
}

#[cfg(not(feature = "hydrate"))]
pub use imp::*;
