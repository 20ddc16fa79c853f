//! The model that visitors' browsers run when the server cannot answer: fetched into the model
//! cache like the server's own, described at `GET /models` and served from the cache at
//! `GET /models/<file>` with Range requests, its sha256 as ETag and year-long caching, so that
//! each browser downloads it once. The server keeps a copy of its own to make a browser's
//! answer again before it vouches for it ([`BrowserModel::remake`]), at the lowest priority of
//! the chat's line ([`crate::scheduler::Priority::Remake`]).

use std::sync::{Arc, Mutex, RwLock};

use app::facts::{ModelFacts, ModelRole};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::{ChatModel, LoadOptions};
use space::Limits;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::services::ServeFile;
use wire::health::{BrowserModelFile, Health};
use wire::limits::too_large_for_a_browser;

use crate::error::ApiError;
use crate::inference::{FetchedFile, ResolvedModel};
use crate::scheduler::{Scheduler, Ticket};
use crate::validation::ValidRequest;

pub struct BrowserModel {
    /// The models to try, in order: `[browser] model`, or the server's own and then the small
    /// catalogue model for when a browser cannot hold the server's.
    candidates: Vec<ResolvedModel>,
    /// `[browser] requantize`: how the browsers load it, and so how the server's copy must.
    requantize: bool,
    fetched: RwLock<Fetched>,
    /// The server's own copy, loaded the first time a browser's answer is made again; one
    /// remake at a time uses it.
    remaker: Mutex<Option<ChatModel>>,
}

/// How often a remake that waits (for the chat to be idle, or for the copy another remake
/// uses) looks again: a chat request that arrives waits at most one step of a remake, and a
/// waiting remake costs nothing.
const REMAKE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Prompt tokens a remake reads in one step. Between two steps it looks whether a chat request
/// came, so this bounds how long a visitor waits for it: a 512-token step of SmolLM2 kept a
/// visitor's first token waiting 0.46 s against 0.20 s unloaded (dev build, 2 cores); 64
/// tokens a step cost a remake about a tenth more time.
const REMAKE_PROMPT_CHUNK: usize = 64;

/// A browser's answer to make again: the conversation and settings, checked as a chat request
/// is ([`crate::validation::validate`]), and the text the browser says it wrote.
pub struct Remake {
    pub request: ValidRequest,
    pub answer: String,
}

enum Fetched {
    Pending,
    Ready(Ready),
    Failed(String),
}

/// The file browsers download, on this machine, and what its header says.
struct Ready {
    name: String,
    file_name: String,
    file: FetchedFile,
    info: engine::ModelInfo,
}

impl BrowserModel {
    /// `candidates` are tried in order; the first a browser can hold is served.
    pub fn new(candidates: Vec<ResolvedModel>, requantize: bool) -> Arc<Self> {
        assert!(!candidates.is_empty(), "a browser model to try");
        Arc::new(Self {
            candidates,
            requantize,
            fetched: RwLock::new(Fetched::Pending),
            remaker: Mutex::new(None),
        })
    }

    fn fetched(&self) -> std::sync::RwLockReadGuard<'_, Fetched> {
        self.fetched
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The name of the model browsers run, or will once it is fetched.
    fn name(&self) -> String {
        match &*self.fetched() {
            Fetched::Ready(ready) => ready.name.clone(),
            _ => self.candidates[0].name(),
        }
    }

    /// The sha256 of the file the browsers run, once it is there.
    pub fn sha256(&self) -> Option<String> {
        match &*self.fetched() {
            Fetched::Ready(ready) => Some(ready.file.sha256.clone()),
            _ => None,
        }
    }

    /// Makes again, with the server's copy of this model, the answer a visitor's browser says
    /// it made: the same conversation and settings give the same tokens (the kernels add in one
    /// order everywhere). Holds when the browser's answer is what the copy writes, or the start
    /// of it (the visitor stopped it early).
    ///
    /// It costs what a chat request costs and is bounded as one: `place` is a
    /// [`crate::scheduler::Priority::Remake`] place in the chat's line, the conversation must fit `limits` once
    /// tokenised, its tokens are charged to the visitor's budget, and it yields to the chat
    /// (each step waits until no chat request is running or waiting). Dropping the future (the
    /// visitor left) stops it at its next step.
    pub async fn remake(
        self: &Arc<Self>,
        remake: Remake,
        place: Ticket,
        line: Arc<Scheduler>,
        limits: Limits,
    ) -> Result<(), ApiError> {
        let model = Arc::clone(self);
        let cancel = CancellationToken::new();
        let _cancel_on_drop = cancel.clone().drop_guard();
        tokio::task::spawn_blocking(move || {
            model.remake_now(remake, place, &line, &limits, &cancel)
        })
        .await
        .map_err(|error| ApiError::GenerationFailed(error.to_string()))?
    }

    fn remake_now(
        &self,
        Remake {
            mut request,
            answer,
        }: Remake,
        mut place: Ticket,
        line: &Scheduler,
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<(), ApiError> {
        let (path, file_name) = match &*self.fetched() {
            Fetched::Ready(ready) => (ready.file.path.clone(), ready.file_name.clone()),
            Fetched::Pending => return Err(ApiError::Loading(self.name())),
            Fetched::Failed(error) => return Err(ApiError::LoadFailed(error.clone())),
        };
        let cancelled = || ApiError::GenerationFailed("the visitor left".into());
        // Every piece of work — loading the copy, tokenising, each step — waits until no chat
        // request is running or waiting.
        let yield_to_chat = || -> Result<(), ApiError> {
            loop {
                if cancel.is_cancelled() {
                    return Err(cancelled());
                }
                if line.chat_is_idle() {
                    return Ok(());
                }
                std::thread::sleep(REMAKE_POLL);
            }
        };
        let mut remaker = loop {
            yield_to_chat()?;
            match self.remaker.try_lock() {
                Ok(remaker) => break remaker,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => break poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => std::thread::sleep(REMAKE_POLL),
            }
        };
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
                    &file_name,
                    &options,
                    &engine::Device::Cpu,
                )
                .map_err(|error| ApiError::LoadFailed(error.to_string()))?;
                empty.insert(loaded)
            }
        };
        yield_to_chat()?;
        let prompt_ids = model
            .prompter
            .prompt_ids(&request.messages, &request.params)?;
        crate::validation::fit_length(prompt_ids.len(), &mut request, limits)?;
        place.reserve_tokens(prompt_ids.len() + request.params.max_tokens)?;
        let mut written = model.start(&prompt_ids, &request.params)?;
        let mut made = String::new();
        let mut step = || -> Result<(), ApiError> {
            while !written.ended() {
                yield_to_chat()?;
                let pieces = model.step_reading(&mut [&mut written], REMAKE_PROMPT_CHUNK)?;
                let [piece] =
                    <[Option<String>; 1]>::try_from(pieces).expect("one answer, one piece");
                made.push_str(piece.as_deref().unwrap_or_default());
                if made.len() >= answer.len() || !answer.starts_with(made.as_str()) {
                    break;
                }
            }
            Ok(())
        };
        let stepped = step();
        let completion = model.finish(written);
        place.settle(completion.usage.tokens_spent());
        stepped?;
        if made.starts_with(&answer) {
            Ok(())
        } else {
            Err(ApiError::NotRemade(self.name()))
        }
    }

    /// Brings the first candidate a browser can hold onto this machine (downloading it on the
    /// first start), or says why none.
    pub fn fetch(&self) {
        let fetched = match first_that_fits(&self.candidates, &mut |_| Box::new(|_, _| {})) {
            Ok(fitting) => {
                tracing::info!(model = %fitting.name, bytes = fitting.file.bytes, "browsers run this model");
                Fetched::Ready(Ready::from(fitting))
            }
            Err(error) => {
                tracing::error!(model = %self.name(), %error, "the browser model could not be fetched: no browser fallback");
                Fetched::Failed(error)
            }
        };
        *self
            .fetched
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fetched;
    }

    pub fn facts(&self) -> ModelFacts {
        let mut facts = ModelFacts::named(ModelRole::Browser, self.name(), wire::device::BROWSER);
        match &*self.fetched() {
            Fetched::Ready(ready) => {
                facts.status = "ready".into();
                facts.ready = true;
                facts.sha256 = Some(ready.file.sha256.clone());
                facts.file_bytes = Some(ready.file.bytes);
                crate::inference::fill_from_info(&mut facts, ready.info.clone());
            }
            Fetched::Pending => facts.status = "loading".into(),
            Fetched::Failed(error) => facts.status = format!("failed: {error}"),
        }
        facts
    }
}

/// A download's progress, for one model.
pub type ProgressFor<'a> = &'a mut dyn FnMut(&str) -> Box<dyn FnMut(u64, Option<u64>)>;

/// The model a browser can run: its name, file and header.
pub struct Fitting {
    pub name: String,
    pub file: FetchedFile,
    pub info: engine::ModelInfo,
}

/// Fetches `candidates` in order until one is small enough for a browser and loads as a whole
/// GGUF. A candidate that fails or is too large is passed over, saying why, unless it is the
/// last.
pub fn first_that_fits(
    candidates: &[ResolvedModel],
    progress_for: ProgressFor,
) -> Result<Fitting, String> {
    let mut last_refusal = String::from("no browser model");
    for (index, candidate) in candidates.iter().enumerate() {
        let name = candidate.name();
        // A file on this machine is measured before its sha256 is read (a 7B file: seconds).
        let size_on_disk = match candidate {
            ResolvedModel::File(path) => std::fs::metadata(path).ok().map(|meta| meta.len()),
            _ => None,
        };
        let fetched = match size_on_disk.and_then(too_large_for_a_browser) {
            Some(refusal) => Err(refusal),
            None => candidate.fetch(&mut progress_for(&name)),
        };
        let refusal = match fetched {
            Ok(file) => match too_large_for_a_browser(file.bytes) {
                None => match header(&file) {
                    Ok(info) => return Ok(Fitting { name, file, info }),
                    Err(problem) => problem,
                },
                Some(refusal) => refusal,
            },
            Err(error) => error,
        };
        if let Some(next) = candidates.get(index + 1) {
            tracing::warn!(model = %name, next = %next.name(), reason = %refusal, "browsers run the next model");
        }
        last_refusal = refusal;
    }
    Err(last_refusal)
}

/// What `file`'s header says (for the judges' page, permalinks and answers), if a browser could
/// load it at all: a GGUF, whole. The server's own model, when broken, must not become the
/// browsers' too.
fn header(file: &FetchedFile) -> Result<engine::ModelInfo, String> {
    let name = file.path.display().to_string();
    let opened = std::fs::File::open(&file.path).map_err(|error| format!("{name}: {error}"))?;
    let gguf = engine::Gguf::read(&mut std::io::BufReader::new(opened), &name)
        .map_err(|error| error.to_string())?;
    gguf.check_length(file.bytes)
        .map_err(|error| error.to_string())?;
    Ok(gguf.info())
}

impl From<Fitting> for Ready {
    fn from(Fitting { name, file, info }: Fitting) -> Self {
        let file_name = file.path.file_name().map_or_else(
            || format!("{name}.gguf"),
            |file_name| file_name.to_string_lossy().into_owned(),
        );
        Self {
            name,
            file_name,
            file,
            info,
        }
    }
}

impl Ready {
    /// The file's address, carrying its sha256: browsers keep it for a year, so one URL must
    /// never name two contents (a `path` model can change between two starts).
    fn url(&self) -> String {
        format!("/models/{}?sha256={}", self.file_name, self.file.sha256)
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
    match &*model.fetched() {
        Fetched::Ready(ready) => axum::Json(BrowserModelFile {
            name: ready.name.clone(),
            url: ready.url(),
            sha256: ready.file.sha256.clone(),
            bytes: ready.file.bytes,
            quantization: ready.info.quantization.clone(),
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
    let (path, etag) = match &*model.fetched() {
        Fetched::Ready(ready) if file == ready.file_name => (ready.file.path.clone(), ready.etag()),
        _ => return (StatusCode::NOT_FOUND, "no such model file").into_response(),
    };
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
