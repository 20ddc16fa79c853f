//! The worker's side of the messages: fetches (or finds in the Cache API) the model, loads it
//! with `engine`, and decodes token by token (continuing from the keys and values kept of the
//! conversation's earlier turns), giving the event loop a turn between tokens so that a stop
//! is heard.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use engine::digest::{self, Digest, Sha256};
use engine::{ChatModel, Device, LoadOptions};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent, ReadableStreamDefaultReader, Response};

use wire::js::text_of;
use wire::worker::{ThreadLimit, WorkerEvent, WorkerRequest};

use wire::limits::too_large_for_a_browser;

/// The Cache API bucket that keeps model files between visits.
const CACHE_NAME: &str = "vitrina-models-v1";
/// Keys and values kept for the conversation's next turn, beside the model in the tab's
/// memory: a few thousand tokens of the small models a browser runs (Qwen2.5-0.5B: 24 KiB
/// a token), so the fifth question is not read with the four before it.
const KEPT_CONVERSATION_BYTES: usize = 128 << 20;

thread_local! {
    static MODEL: Rc<RefCell<Option<ChatModel>>> = Rc::new(RefCell::new(None));
    static STOP: Cell<bool> = const { Cell::new(false) };
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(event: &WorkerEvent) {
    // Fails only if the page has gone, and then nobody is listening.
    let _ = scope().post_message(&JsValue::from_str(&event.to_json()));
}

/// Starts listening. Called by `public/worker.js` once the threads it could start are running:
/// `wanted` is the visitor's setting, `isolated` the worker's `crossOriginIsolated`, `failure`
/// why the threads did not start where the page was isolated.
#[wasm_bindgen]
pub fn start(wanted: u32, isolated: bool, failure: Option<String>) {
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let request = event
            .data()
            .as_string()
            .ok_or_else(|| "messages are JSON text".to_owned())
            .and_then(|json| {
                serde_json::from_str::<WorkerRequest>(&json)
                    .map_err(|error| format!("unreadable request: {error}"))
            });
        match request {
            Ok(WorkerRequest::Stop) => STOP.set(true),
            Ok(WorkerRequest::Load {
                url,
                sha256,
                bytes,
                requantize,
            }) => wasm_bindgen_futures::spawn_local(async move {
                if let Err(message) = load(&url, &sha256, bytes, requantize).await {
                    post(&WorkerEvent::Failed { message });
                }
            }),
            Ok(WorkerRequest::Generate { messages, params }) => {
                wasm_bindgen_futures::spawn_local(async move {
                    match generate(&messages, &params).await {
                        Ok(completion) => post(&WorkerEvent::Done { completion }),
                        Err(message) => post(&WorkerEvent::Failed { message }),
                    }
                })
            }
            Err(message) => post(&WorkerEvent::Failed { message }),
        }
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The worker lives as long as its page: so does its handler.
    on_message.forget();
    let threads = engine::threads() as u32;
    let limit = (threads < wanted).then(|| match failure {
        Some(message) => ThreadLimit::StartFailed { message },
        None if !isolated => ThreadLimit::NotIsolated,
        None => ThreadLimit::StartFailed {
            message: "the threads' bundle was not loaded".into(),
        },
    });
    post(&WorkerEvent::Started { threads, limit });
}

async fn load(url: &str, sha256: &str, bytes: u64, requantize: bool) -> Result<(), String> {
    if let Some(refusal) = too_large_for_a_browser(bytes) {
        return Err(refusal);
    }
    let started = web_time::Instant::now();
    let caches = scope().caches().map_err(text_of)?;
    let cache: web_sys::Cache = JsFuture::from(caches.open(CACHE_NAME))
        .await
        .map_err(text_of)?
        .unchecked_into();
    let cached = JsFuture::from(cache.match_with_str(url))
        .await
        .map_err(text_of)?;
    let (file, from_cache) = match cached.dyn_into::<Response>() {
        Ok(response) => match read_verified(response, bytes, sha256, true).await {
            Ok(file) => (file, true),
            // A damaged or stale copy: forget it and download again.
            Err(_) => {
                let _ = JsFuture::from(cache.delete_with_str(url)).await;
                (download(&cache, url, bytes, sha256).await?, false)
            }
        },
        Err(_) => (download(&cache, url, bytes, sha256).await?, false),
    };
    let mut reader = std::io::Cursor::new(file);
    let model = engine::load_chat_model(
        &mut reader,
        url,
        &LoadOptions {
            requantize,
            kept_prefix_bytes: KEPT_CONVERSATION_BYTES,
            ..LoadOptions::default()
        },
        &Device::Cpu,
    )
    .map_err(|error| error.to_string())?;
    let info = model.info.clone();
    // An answer holds the slot across its awaits; a load that came meanwhile says so instead
    // of panicking (a panic aborts the worker, and every later answer with it).
    MODEL.with(|slot| {
        slot.try_borrow_mut()
            .map(|mut slot| *slot = Some(model))
            .map_err(|_| "the browser model is answering; stop the answer, then load".to_owned())
    })?;
    post(&WorkerEvent::Ready {
        info,
        from_cache,
        load_seconds: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

async fn download(
    cache: &web_sys::Cache,
    url: &str,
    bytes: u64,
    sha256: &str,
) -> Result<Vec<u8>, String> {
    let response: Response = JsFuture::from(scope().fetch_with_str(url))
        .await
        .map_err(text_of)?
        .unchecked_into();
    if !response.ok() {
        return Err(format!(
            "the server did not send the model ({url}: HTTP {})",
            response.status()
        ));
    }
    // The cache reads its own copy of the stream while this one reports progress.
    let copy = response.clone().map_err(text_of)?;
    let file = read_verified(response, bytes, sha256, false).await?;
    // A browser short of storage (or in a private window) keeps nothing: the model still
    // answers this visit and is downloaded again on the next.
    if let Err(error) = JsFuture::from(cache.put_with_str(url, &copy)).await {
        web_sys::console::warn_1(&JsValue::from_str(&format!(
            "the browser would not keep the model for the next visit: {}",
            text_of(error)
        )));
    }
    Ok(file)
}

/// Reads a model file, reporting progress, and checks its length and sha256.
async fn read_verified(
    response: Response,
    bytes: u64,
    sha256: &str,
    from_cache: bool,
) -> Result<Vec<u8>, String> {
    let body = response.body().ok_or("the model arrived without a body")?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut file = Vec::with_capacity(bytes as usize);
    let mut hasher = Sha256::new();
    let mut reported = 0u64;
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(text_of)?;
        if Reflect::get(&chunk, &"done".into())
            .map_err(text_of)?
            .as_bool()
            .unwrap_or(true)
        {
            break;
        }
        let part: Uint8Array = Reflect::get(&chunk, &"value".into())
            .map_err(text_of)?
            .unchecked_into();
        let start = file.len();
        file.resize(start + part.length() as usize, 0);
        part.copy_to(&mut file[start..]);
        hasher.update(&file[start..]);
        let done = file.len() as u64;
        // About a hundred updates for the whole file are plenty for a progress bar.
        if done - reported >= (bytes / 100).max(1 << 20) || done == bytes {
            reported = done;
            post(&WorkerEvent::Progress {
                done,
                total: bytes,
                from_cache,
            });
        }
    }
    let found = digest::hex(hasher);
    if file.len() as u64 != bytes || found != sha256 {
        return Err(format!(
            "the model file arrived damaged ({} of {bytes} bytes, sha256 {found}, expected {sha256}); reload the page to download it again",
            file.len()
        ));
    }
    Ok(file)
}

// The borrow held across the awaits is the answer's lock: a second request finds it taken
// (`try_borrow_mut`) and is told so; nothing borrows the slot without `try_`.
#[expect(clippy::await_holding_refcell_ref)]
async fn generate(
    messages: &[engine::ChatMessage],
    params: &engine::GenerateParams,
) -> Result<engine::Completion, String> {
    let slot = MODEL.with(Rc::clone);
    let mut guard = slot
        .try_borrow_mut()
        .map_err(|_| "the browser model is already answering".to_owned())?;
    let model = guard
        .as_mut()
        .ok_or("the browser model is not loaded yet")?;
    let prompt_ids = model
        .prompter
        .prompt_ids(messages, params)
        .map_err(|error| error.to_string())?;
    STOP.set(false);
    let mut answer = model
        .start(&prompt_ids, params)
        .map_err(|error| error.to_string())?;
    let mut looked = web_time::Instant::now();
    loop {
        match model.next(&mut answer) {
            Ok(Some(piece)) if !piece.is_empty() => post(&WorkerEvent::Delta { text: piece }),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(error) => return Err(error.to_string()),
        }
        if looked.elapsed() >= BETWEEN_LOOKS_FOR_A_STOP {
            yield_to_messages().await;
            looked = web_time::Instant::now();
            if STOP.get() {
                break;
            }
        }
    }
    Ok(model.finish(answer))
}

/// How long an answer runs between two looks at the worker's messages (for a stop). A look
/// after every token cost the decode a third of its speed in headless Chromium (SmolLM2, one
/// thread: 25 tok/s against 38 without looks; two threads: 47 against 60).
const BETWEEN_LOOKS_FOR_A_STOP: std::time::Duration = std::time::Duration::from_millis(100);

/// Lets queued messages (a stop) run. A message to itself, not `setTimeout`, which browsers
/// slow to 4 ms once nested.
async fn yield_to_messages() {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let Ok(channel) = web_sys::MessageChannel::new() else {
            let _ = resolve.call0(&JsValue::NULL);
            return;
        };
        channel.port1().set_onmessage(Some(&resolve));
        let _ = channel.port2().post_message(&JsValue::NULL);
    });
    let _ = JsFuture::from(promise).await;
}
