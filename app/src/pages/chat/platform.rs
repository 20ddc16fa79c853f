//! What the chat asks of the browser: a streamed `fetch` that can be aborted, `localStorage`
//! and the clipboard. On the server the chat never runs; stand-ins keep the component the same.

use crate::conversation::{ChatError, Saved, StreamEvent};

/// What `/health` says when the server cannot answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerProblem {
    /// `loading`, `error`, `disabled`, or `unreachable`.
    pub status: String,
    pub message: String,
}

/// How far the browser model's download (or load from the browser's cache) has come.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub from_cache: bool,
}

#[cfg(feature = "hydrate")]
pub use imp::*;

#[cfg(feature = "hydrate")]
mod imp {
    use js_sys::{Reflect, Uint8Array};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{AbortController, ReadableStreamDefaultReader, RequestInit, Response};
    use wire::health::{BrowserModelFile, Health};
    use wire::js::text_of;
    use wire::limits;
    use wire::openai::{ChatCompletionRequest, DONE};
    use wire::sse::SseDecoder;
    use wire::worker::{ThreadLimit, WorkerEvent, WorkerRequest};

    use std::cell::RefCell;
    use std::rc::Rc;

    use futures::StreamExt;
    use futures::channel::mpsc::{UnboundedReceiver, unbounded};
    use wasm_bindgen::closure::Closure;
    use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

    use super::{ChatError, Progress, Saved, ServerProblem, StreamEvent};
    use crate::conversation::{
        STORAGE_KEY, WorkerMessage, model_label, parse_event, parse_worker_message,
    };

    #[derive(Clone)]
    pub struct Abort(AbortController);

    impl Abort {
        pub fn new() -> Self {
            Self(AbortController::new().expect("every browser with wasm has AbortController"))
        }

        pub fn abort(&self) {
            self.0.abort();
        }

        pub fn aborted(&self) -> bool {
            self.0.signal().aborted()
        }
    }

    /// Milliseconds since the epoch, for download speeds.
    pub fn now_ms() -> f64 {
        js_sys::Date::now()
    }

    async fn get(url: &str) -> Result<Response, JsValue> {
        let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
        JsFuture::from(window.fetch_with_str(url)).await?.dyn_into()
    }

    /// Why the server cannot answer now, from `GET /health` (its `status` and `message`);
    /// `None` when it can.
    pub async fn server_problem() -> Option<ServerProblem> {
        let response = match get("/health").await {
            Ok(response) if response.ok() => return None,
            Ok(response) => response,
            Err(error) => {
                return Some(ServerProblem {
                    status: "unreachable".into(),
                    message: text_of(error),
                });
            }
        };
        let text = match response.text() {
            Ok(text) => JsFuture::from(text)
                .await
                .ok()
                .and_then(|text| text.as_string())
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let health = serde_json::from_str::<Health>(&text).ok();
        let (status, message) = health
            .as_ref()
            .and_then(Health::problem)
            .unwrap_or(("error", ""));
        Some(ServerProblem {
            status: status.to_owned(),
            message: message.to_owned(),
        })
    }

    /// The browser model's worker, started on first need and kept for the page's life (or
    /// until the visitor changes its number of threads).
    struct BrowserModel {
        worker: Worker,
        messages: RefCell<UnboundedReceiver<String>>,
        loaded: std::cell::Cell<bool>,
        /// The visitor's setting it was started with.
        wanted_threads: u32,
        /// What it got, and why less.
        threads: u32,
        thread_limit: Option<ThreadLimit>,
        /// The model it runs, as its answers name it (see `model_label`), once loaded.
        model: RefCell<String>,
    }

    thread_local! {
        static BROWSER_MODEL: RefCell<Option<Rc<BrowserModel>>> = const { RefCell::new(None) };
    }

    impl BrowserModel {
        fn post(&self, request: &WorkerRequest) -> Result<(), ChatError> {
            self.worker
                .post_message(&JsValue::from_str(&request.to_json()))
                .map_err(|error| ChatError::browser(text_of(error)))
        }

        // The borrow held across the await is the worker's reply channel's lock: one answer
        // at a time (the chat's busy flag), and a second reader is told so instead of
        // panicking (a panic ends the page's wasm).
        #[expect(clippy::await_holding_refcell_ref)]
        async fn next(&self) -> Result<WorkerMessage, ChatError> {
            let mut messages = self
                .messages
                .try_borrow_mut()
                .map_err(|_| ChatError::browser("the browser model is already answering".into()))?;
            match messages.next().await {
                Some(json) => parse_worker_message(&json),
                None => Err(ChatError::browser("the browser model stopped".into())),
            }
        }
    }

    /// The default of «Hilos»: every core but one, which the page keeps for itself; at most
    /// [`limits::BROWSER_THREADS`]' maximum.
    pub fn default_threads() -> u32 {
        let cores = web_sys::window()
            .map(|window| window.navigator().hardware_concurrency())
            .unwrap_or(1.0);
        limits::BROWSER_THREADS.clamp((cores as u32).saturating_sub(1))
    }

    async fn browser_model(wanted_threads: u32) -> Result<Rc<BrowserModel>, ChatError> {
        if let Some(model) = BROWSER_MODEL.with(|slot| slot.borrow().clone()) {
            if model.wanted_threads == wanted_threads {
                return Ok(model);
            }
            // A new setting: a new worker (the model comes back from the browser's cache).
            model.worker.terminate();
            BROWSER_MODEL.with(|slot| *slot.borrow_mut() = None);
        }
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker =
            Worker::new_with_options(&format!("/worker.js?threads={wanted_threads}"), &options)
                .map_err(|error| ChatError::browser(text_of(error)))?;
        let (sender, receiver) = unbounded();
        let on_error = {
            let sender = sender.clone();
            // A worker that cannot start (script or wasm missing, no module workers) says so
            // here, not through its messages.
            Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
                let detail = js_sys::Reflect::get(&event, &"message".into())
                    .ok()
                    .and_then(|message| message.as_string());
                let message =
                    detail.unwrap_or_else(|| "the browser model's worker could not start".into());
                let _ = sender.unbounded_send(WorkerEvent::Failed { message }.to_json());
            })
        };
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(json) = event.data().as_string() {
                let _ = sender.unbounded_send(json);
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        // Both live as long as the worker, which lives as long as the page.
        on_message.forget();
        on_error.forget();
        let mut model = BrowserModel {
            worker,
            messages: RefCell::new(receiver),
            loaded: std::cell::Cell::new(false),
            wanted_threads,
            threads: 1,
            thread_limit: None,
            model: RefCell::new(String::new()),
        };
        loop {
            match model.next().await? {
                WorkerMessage::Started { threads, limit } => {
                    (model.threads, model.thread_limit) = (threads, limit);
                    break;
                }
                WorkerMessage::Failed(message) => return Err(ChatError::browser(message)),
                _ => {}
            }
        }
        let model = Rc::new(model);
        BROWSER_MODEL.with(|slot| *slot.borrow_mut() = Some(Rc::clone(&model)));
        Ok(model)
    }

    /// Answers in the visitor's browser: loads the model once (reporting progress), then
    /// streams the answer to `request` (see `conversation::worker_request`).
    pub async fn answer_in_browser(
        request: WorkerRequest,
        requantize: bool,
        threads: u32,
        abort: &Abort,
        mut on_progress: impl FnMut(Progress),
        mut on_event: impl FnMut(StreamEvent),
    ) -> Result<(), ChatError> {
        let model = browser_model(threads).await?;
        if !model.loaded.get() {
            let description = get("/models")
                .await
                .map_err(|error| ChatError::connection(text_of(error)))?;
            let text = JsFuture::from(
                description
                    .text()
                    .map_err(|error| ChatError::browser(text_of(error)))?,
            )
            .await
            .map_err(|error| ChatError::connection(text_of(error)))?
            .as_string()
            .unwrap_or_default();
            if !description.ok() {
                return Err(ChatError::from_response(description.status(), &text));
            }
            let file: BrowserModelFile = serde_json::from_str(&text)
                .map_err(|error| ChatError::browser(error.to_string()))?;
            *model.model.borrow_mut() = model_label(&file.name, &file.quantization);
            model.post(&WorkerRequest::Load {
                url: file.url,
                sha256: file.sha256,
                bytes: file.bytes,
                requantize,
            })?;
            loop {
                match model.next().await? {
                    WorkerMessage::Progress {
                        done,
                        total,
                        from_cache,
                    } => on_progress(Progress {
                        done,
                        total,
                        from_cache,
                    }),
                    WorkerMessage::Ready => break,
                    WorkerMessage::Failed(message) => return Err(ChatError::browser(message)),
                    _ => {}
                }
            }
            model.loaded.set(true);
        }
        if abort.aborted() {
            return Ok(());
        }
        model.post(&request)?;
        let stop = {
            let worker = model.worker.clone();
            Closure::<dyn FnMut()>::new(move || {
                let _ = worker.post_message(&JsValue::from_str(&WorkerRequest::Stop.to_json()));
            })
        };
        abort
            .0
            .signal()
            .set_onabort(Some(stop.as_ref().unchecked_ref()));
        let result = loop {
            match model.next().await {
                Ok(WorkerMessage::Event(StreamEvent::Finished(mut stats))) => {
                    stats.model = model.model.borrow().clone();
                    stats.threads = Some(model.threads);
                    stats.thread_limit = model.thread_limit.clone();
                    on_event(StreamEvent::Finished(stats));
                    break Ok(());
                }
                Ok(WorkerMessage::Event(event)) => on_event(event),
                Ok(WorkerMessage::Failed(message)) => break Err(ChatError::browser(message)),
                Ok(_) => {}
                Err(error) => break Err(error),
            }
        };
        abort.0.signal().set_onabort(None);
        result
    }

    fn json_post(body: &str) -> Result<RequestInit, JsValue> {
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_body(&JsValue::from_str(body));
        let headers = web_sys::Headers::new()?;
        headers.set("Content-Type", "application/json")?;
        init.set_headers(&headers);
        Ok(init)
    }

    /// Posts JSON to `url`; the answer's text, or the server's error.
    pub async fn post_json(url: &str, body: &str) -> Result<String, ChatError> {
        let connection = |error: JsValue| ChatError::connection(text_of(error));
        let window = web_sys::window().ok_or_else(|| ChatError::other("no window".into()))?;
        let response: Response = JsFuture::from(
            window.fetch_with_str_and_init(url, &json_post(body).map_err(connection)?),
        )
        .await
        .map_err(connection)?
        .dyn_into()
        .map_err(connection)?;
        let text = JsFuture::from(response.text().map_err(connection)?)
            .await
            .map_err(connection)?
            .as_string()
            .unwrap_or_default();
        if response.ok() {
            Ok(text)
        } else {
            Err(ChatError::from_response(response.status(), &text))
        }
    }

    /// Bytes from the browser's cryptographic generator. Not `Math.random()`: its state can be
    /// worked out from a few of its outputs, and seeds are published beside each stored answer,
    /// so the secret key that edits a rating could be predicted from them.
    fn random_bytes<const N: usize>() -> [u8; N] {
        let mut bytes = [0u8; N];
        let filled = web_sys::window()
            .and_then(|window| window.crypto().ok())
            .and_then(|crypto| crypto.get_random_values_with_u8_array(&mut bytes).ok());
        // Every browser that runs this bundle has it; without it no key is made at all.
        filled.expect("the browser's crypto.getRandomValues");
        bytes
    }

    /// A fresh random seed, small enough for JavaScript's numbers to carry exactly.
    pub fn random_seed() -> u64 {
        u64::from(u32::from_le_bytes(random_bytes()))
    }

    /// A random id for conversations, questions and answers (32 hex digits, 128 bits).
    pub fn random_key() -> String {
        random_bytes::<16>()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Posts `body` to the chat API and hands each event of the answer to `on_event`. A stop
    /// asked through `abort` ends it without an error.
    pub async fn stream_answer(
        request: &ChatCompletionRequest,
        abort: &Abort,
        mut on_event: impl FnMut(StreamEvent),
    ) -> Result<(), ChatError> {
        let connection = |error: JsValue| ChatError::connection(text_of(error));
        let body = serde_json::to_string(request).expect("a request serialises");
        let init = json_post(&body).map_err(connection)?;
        init.set_signal(Some(&abort.0.signal()));
        let window = web_sys::window().ok_or_else(|| ChatError::other("no window".into()))?;
        let response: Response =
            match JsFuture::from(window.fetch_with_str_and_init("/v1/chat/completions", &init))
                .await
            {
                Ok(response) => response.dyn_into().map_err(connection)?,
                Err(_) if abort.aborted() => return Ok(()),
                Err(error) => return Err(connection(error)),
            };
        if !response.ok() {
            let text = JsFuture::from(response.text().map_err(connection)?)
                .await
                .map_err(connection)?;
            return Err(ChatError::from_response(
                response.status(),
                &text.as_string().unwrap_or_default(),
            ));
        }
        let body = response
            .body()
            .ok_or_else(|| ChatError::other("the answer has no body".into()))?;
        let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
        let mut decoder = SseDecoder::new();
        loop {
            let chunk = match JsFuture::from(reader.read()).await {
                Ok(chunk) => chunk,
                Err(_) if abort.aborted() => return Ok(()),
                Err(error) => return Err(connection(error)),
            };
            if Reflect::get(&chunk, &"done".into())
                .map_err(connection)?
                .as_bool()
                .unwrap_or(true)
            {
                return Ok(());
            }
            let bytes: Uint8Array = Reflect::get(&chunk, &"value".into())
                .map_err(connection)?
                .dyn_into()
                .map_err(connection)?;
            for data in decoder.push(&bytes.to_vec()) {
                if data == DONE {
                    return Ok(());
                }
                on_event(parse_event(&data)?);
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
        let Some(window) = web_sys::window() else {
            return;
        };
        let clipboard = Reflect::get(&window.navigator(), &"clipboard".into())
            .ok()
            .filter(|value| !value.is_undefined());
        let write = clipboard
            .as_ref()
            .and_then(|clipboard| Reflect::get(clipboard, &"writeText".into()).ok());
        if let (Some(clipboard), Some(write)) = (
            clipboard,
            write.and_then(|write| write.dyn_into::<js_sys::Function>().ok()),
        ) {
            // Refused without permission or focus: nothing to do about it from here.
            let _ = write.call1(&clipboard, &JsValue::from_str(text));
        }
    }

    /// A click inside the conversation: if it hit a code block's copy button, copies the code
    /// and says so on the button.
    pub fn copy_code_clicked(event: &web_sys::MouseEvent, copied_label: &str) {
        let Some(target) = event
            .target()
            .and_then(|target| target.dyn_into::<web_sys::Element>().ok())
        else {
            return;
        };
        let Ok(Some(button)) = target.closest(".copy-code") else {
            return;
        };
        let code = button
            .parent_element()
            .and_then(|block| block.query_selector("code").ok().flatten());
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
    use super::{ChatError, Progress, Saved, ServerProblem, StreamEvent};

    #[derive(Clone)]
    pub struct Abort;

    impl Abort {
        pub fn new() -> Self {
            Self
        }

        pub fn abort(&self) {}

        pub fn aborted(&self) -> bool {
            false
        }
    }

    pub fn now_ms() -> f64 {
        0.0
    }

    pub async fn server_problem() -> Option<ServerProblem> {
        None
    }

    pub fn default_threads() -> u32 {
        1
    }

    pub async fn answer_in_browser(
        _request: wire::worker::WorkerRequest,
        _requantize: bool,
        _threads: u32,
        _abort: &Abort,
        _on_progress: impl FnMut(Progress),
        _on_event: impl FnMut(StreamEvent),
    ) -> Result<(), ChatError> {
        Ok(())
    }

    pub async fn stream_answer(
        _request: &wire::openai::ChatCompletionRequest,
        _abort: &Abort,
        _on_event: impl FnMut(StreamEvent),
    ) -> Result<(), ChatError> {
        Ok(())
    }

    pub async fn post_json(_url: &str, _body: &str) -> Result<String, ChatError> {
        Err(ChatError::other("only the browser posts".into()))
    }

    pub fn random_seed() -> u64 {
        0
    }

    pub fn random_key() -> String {
        String::new()
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
