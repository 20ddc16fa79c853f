//! What the API's test files share: a real SmolLM2 behind the API, served on loopback.

#![allow(dead_code)] // each test file uses its own part of this

use std::sync::Arc;
use std::time::{Duration, Instant};

use server::api::Api;
use server::inference::{Inference, ModelState};
use space::{ChatDefaults, Limits};

/// The defaults, with room for every request these tests send from one address.
pub fn roomy_limits() -> Limits {
    Limits {
        max_concurrent_per_client: 64,
        requests_per_minute_per_client: 10_000,
        tokens_per_minute_per_client: 10_000_000,
        ..Limits::default()
    }
}

pub fn api(inference: Arc<Inference>, limits: Limits) -> Arc<Api> {
    Api::new(
        inference,
        None,
        ChatDefaults::default(),
        limits,
        &space::ServerBackend::Local,
        Arc::new(server::receipts::Receipts::ephemeral()),
    )
}

/// A server-side SmolLM2 of its own, ready to answer.
pub fn load_smollm2() -> Arc<Inference> {
    let inference = Inference::new();
    inference.start_loading(
        server::inference::ResolvedModel::Cached {
            name: "smollm2-135m".into(),
            cache: model_cache(),
            file: engine::catalog::smollm2_135m(),
        },
        engine::LoadOptions::default(),
        Vec::new(),
    );
    wait_until_ready(inference)
}

pub fn model_cache() -> engine::cache::ModelCache {
    match std::env::var_os("VITRINA_MODEL_CACHE") {
        Some(dir) => engine::cache::ModelCache::new(dir),
        None => {
            engine::cache::ModelCache::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../model-cache"))
        }
    }
}

pub fn wait_until_ready(inference: Arc<Inference>) -> Arc<Inference> {
    let started = Instant::now();
    loop {
        match inference.state() {
            ModelState::Ready { .. } => return inference,
            ModelState::Failed(error) => panic!("model failed to load: {error}"),
            ModelState::Disabled => unreachable!("nothing disables this server"),
            ModelState::Loading { .. } | ModelState::Restarting(_)
                if started.elapsed() > Duration::from_secs(600) =>
            {
                panic!("model still loading after 10 minutes")
            }
            ModelState::Loading { .. } | ModelState::Restarting(_) => {
                std::thread::sleep(Duration::from_millis(100))
            }
        }
    }
}

/// Serves `api` on a loopback port, as `main` does; returns its address.
pub async fn serve(api: Arc<Api>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = server::api::routes(api);
    tokio::spawn(server::listen::serve(
        listener,
        app,
        server::listen::Connections::default(),
        std::future::pending(),
    ));
    address
}

/// SmolLM2 as the model visitors' browsers run, as `[browser]`'s defaults give it; not fetched.
pub fn browser_smollm2() -> Arc<server::browser_model::BrowserModel> {
    let smollm2 = server::inference::ResolvedModel::resolve(
        &space::ModelSource::Catalog("smollm2-135m".into()),
        &model_cache(),
    )
    .unwrap();
    server::browser_model::BrowserModel::new(
        vec![smollm2],
        space::BrowserSettings::default().requantize,
    )
}

/// A Space's facts: `inference` answers, `browser_model` is the browsers' and `store` keeps
/// the feedback, signed with `receipts`.
pub fn facts(
    inference: Arc<Inference>,
    browser_model: Arc<server::browser_model::BrowserModel>,
    store: Result<Arc<server::feedback::FeedbackStore>, String>,
    receipts: Arc<server::receipts::Receipts>,
) -> Arc<server::facts::Facts> {
    Arc::new(server::facts::Facts {
        inference,
        compare: None,
        browser_model,
        remote_model: None,
        store,
        receipts,
        storage: app::facts::StorageFacts {
            dir: "(the test's own)".into(),
            persistent: true,
        },
        cards: Default::default(),
    })
}

/// What the browser worker writes for `messages` with the chat's settings: the same engine
/// on the same SmolLM2 file, loaded as the worker loads it (the end-to-end suite checks the
/// browser's tokens are these).
pub fn made_in_browser(
    messages: &[engine::ChatMessage],
    params: &engine::GenerateParams,
) -> String {
    let path = model_cache()
        .get(&engine::catalog::smollm2_135m(), &mut |_, _| {})
        .unwrap();
    let mut model = engine::load_chat_model(
        &mut std::io::BufReader::new(std::fs::File::open(path).unwrap()),
        "smollm2",
        &engine::LoadOptions {
            requantize: space::BrowserSettings::default().requantize,
            ..engine::LoadOptions::default()
        },
        &engine::Device::Cpu,
    )
    .unwrap();
    model
        .generate(messages, params, &mut |_| engine::Flow::Continue)
        .unwrap()
        .text
}
