//! The model that visitors' browsers run when the server cannot answer: fetched into the model
//! cache like the server's own, described at `GET /models` and served from the cache at
//! `GET /models/<file>` with Range requests, its sha256 as ETag and year-long caching, so that
//! each browser downloads it once. The server keeps a copy of its own to make a browser's
//! answer again before it vouches for it ([`BrowserModel::remake`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use app::facts::{ModelFacts, ModelRole};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::cache::{CachedFile, ModelCache};
use engine::{ChatMessage, ChatModel, Flow, GenerateParams, LoadOptions};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::services::ServeFile;
use wire::health::{BrowserModelFile, Health};

use crate::error::ApiError;

pub struct BrowserModel {
    name: String,
    file: CachedFile,
    /// `[browser] requantize`: how the browsers load it, and so how the server's copy must.
    requantize: bool,
    fetched: RwLock<Fetched>,
    /// The server's own copy, loaded the first time a browser's answer is made again.
    remaker: Mutex<Option<ChatModel>>,
    /// Answers being made again or waiting for it: each takes a core for up to `max_tokens`
    /// steps, so a few at most; more are told to try again.
    remaking: Arc<Semaphore>,
}

/// How many browser answers may be made again or wait to be at once.
const REMAKES_AT_ONCE: usize = 4;

enum Fetched {
    Pending,
    Ready {
        path: PathBuf,
        bytes: u64,
        info: Option<engine::ModelInfo>,
    },
    Failed(String),
}

impl BrowserModel {
    pub fn new(name: String, file: CachedFile, requantize: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            file,
            requantize,
            fetched: RwLock::new(Fetched::Pending),
            remaker: Mutex::new(None),
            remaking: Arc::new(Semaphore::new(REMAKES_AT_ONCE)),
        })
    }

    /// The sha256 of the file the browsers run.
    pub fn sha256(&self) -> &str {
        &self.file.sha256
    }

    /// Makes again, with the server's copy of this model, the answer a visitor's browser says
    /// it made: the same conversation and settings give the same tokens (the kernels add in one
    /// order everywhere). Holds when the browser's answer is what the copy writes, or the start
    /// of it (the visitor stopped it early).
    pub async fn remake(
        self: &Arc<Self>,
        messages: Vec<ChatMessage>,
        params: GenerateParams,
        answer: String,
    ) -> Result<(), ApiError> {
        let place = Arc::clone(&self.remaking)
            .try_acquire_owned()
            .map_err(|_| ApiError::RemakesBusy)?;
        let model = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _place = place;
            model.remake_now(&messages, &params, &answer)
        })
        .await
        .map_err(|error| ApiError::GenerationFailed(error.to_string()))?
    }

    fn remake_now(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        answer: &str,
    ) -> Result<(), ApiError> {
        let path = match &*self
            .fetched
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            Fetched::Ready { path, .. } => path.clone(),
            Fetched::Pending => return Err(ApiError::Loading(self.name.clone())),
            Fetched::Failed(error) => return Err(ApiError::LoadFailed(error.clone())),
        };
        let mut remaker = self
            .remaker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let model = match &mut *remaker {
            Some(model) => model,
            empty => {
                let file = std::fs::File::open(&path).map_err(|error| {
                    ApiError::LoadFailed(format!("{}: {error}", path.display()))
                })?;
                let options = LoadOptions {
                    requantize: self.requantize,
                    ..LoadOptions::default()
                };
                let loaded = engine::load_chat_model(
                    &mut std::io::BufReader::new(file),
                    &self.file.file_name,
                    &options,
                    &engine::Device::Cpu,
                )
                .map_err(|error| ApiError::LoadFailed(error.to_string()))?;
                empty.insert(loaded)
            }
        };
        let mut made = String::new();
        model.generate(messages, params, &mut |piece| {
            made.push_str(piece);
            if made.len() >= answer.len() || !answer.starts_with(made.as_str()) {
                Flow::Cancel
            } else {
                Flow::Continue
            }
        })?;
        if made.starts_with(answer) {
            Ok(())
        } else {
            Err(ApiError::NotRemade(self.name.clone()))
        }
    }

    /// Brings the file into `cache` (downloading it on the first start).
    pub fn fetch(&self, cache: &ModelCache) {
        let fetched = cache
            .get(&self.file, &mut |_, _| {})
            .map_err(|error| error.to_string())
            .and_then(|path| {
                std::fs::metadata(&path)
                    .map(|metadata| (path, metadata.len()))
                    .map_err(|error| error.to_string())
            });
        let fetched = match fetched {
            Ok((path, bytes)) => {
                // The header only: what the judges' page and permalinks say of it.
                let info = std::fs::File::open(&path)
                    .ok()
                    .and_then(|file| {
                        engine::Gguf::read(&mut std::io::BufReader::new(file), &self.file.file_name)
                            .ok()
                    })
                    .map(|gguf| gguf.info());
                Fetched::Ready { path, bytes, info }
            }
            Err(error) => {
                tracing::error!(model = %self.name, %error, "the browser model could not be fetched: no browser fallback");
                Fetched::Failed(error)
            }
        };
        *self
            .fetched
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fetched;
    }

    pub fn facts(&self) -> ModelFacts {
        let mut facts =
            ModelFacts::named(ModelRole::Browser, self.name.clone(), wire::device::BROWSER);
        facts.sha256 = Some(self.file.sha256.clone());
        match &*self
            .fetched
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            Fetched::Ready { bytes, info, .. } => {
                facts.status = "ready".into();
                facts.ready = true;
                facts.file_bytes = Some(*bytes);
                if let Some(info) = info.clone() {
                    crate::inference::fill_from_info(&mut facts, info);
                }
            }
            Fetched::Pending => facts.status = "loading".into(),
            Fetched::Failed(error) => facts.status = format!("failed: {error}"),
        }
        facts
    }

    fn url(&self) -> String {
        format!("/models/{}", self.file.file_name)
    }

    fn etag(&self) -> String {
        format!("\"{}\"", self.file.sha256)
    }
}

pub fn routes(model: Arc<BrowserModel>) -> Router {
    Router::new()
        .route("/models", get(describe))
        .route("/models/{file}", get(serve))
        .with_state(model)
}

async fn describe(State(model): State<Arc<BrowserModel>>) -> Response {
    match &*model
        .fetched
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
    {
        Fetched::Ready { bytes, .. } => axum::Json(BrowserModelFile {
            name: model.name.clone(),
            url: model.url(),
            sha256: model.file.sha256.clone(),
            bytes: *bytes,
        })
        .into_response(),
        Fetched::Pending => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(Health::Loading { progress: None }),
        )
            .into_response(),
        Fetched::Failed(message) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(Health::Error {
                message: message.clone(),
            }),
        )
            .into_response(),
    }
}

async fn serve(
    State(model): State<Arc<BrowserModel>>,
    Path(file): Path<String>,
    request: Request,
) -> Response {
    let path = match &*model
        .fetched
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
    {
        Fetched::Ready { path, .. } if file == model.file.file_name => path.clone(),
        _ => return (StatusCode::NOT_FOUND, "no such model file").into_response(),
    };
    let etag = model.etag();
    let already_there = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if already_there {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match ServeFile::new(path).oneshot(request).await {
            Ok(response) => response.map(Body::new),
            Err(error) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex digits"),
    );
    // The name is pinned to its sha256: the same URL never holds other bytes.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
