//! The model the Space chats with: fetched and loaded once in the background, then used for
//! one generation at a time on a blocking thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use engine::cache::{CachedFile, ModelCache};
use engine::{ChatModel, Completion, Device, Flow, GenerateParams, LoadOptions, ModelInfo, Prompter};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Where generation runs, as `/health` and each answer's timings name it.
pub const DEVICE: &str = "cpu";

#[derive(Clone, Debug)]
pub enum ModelState {
    Loading { done: u64, total: Option<u64> },
    Ready { name: String, info: ModelInfo },
    Failed(String),
    /// Started with `--no-model`: visitors' browsers answer.
    Disabled,
}

/// Where the model comes from.
pub enum ModelSource {
    /// A catalogue model, fetched and verified through the cache.
    Catalog { name: String, cache: ModelCache, file: CachedFile },
    /// A GGUF file on this machine, used as it is.
    File(PathBuf),
}

impl ModelSource {
    /// The name the API and `/health` give the model: the catalogue's, or the file's stem.
    pub fn name(&self) -> String {
        match self {
            Self::Catalog { name, .. } => name.clone(),
            Self::File(path) => path.file_stem().map_or_else(|| path.display().to_string(), |stem| stem.to_string_lossy().into_owned()),
        }
    }
}

pub struct Inference {
    state: RwLock<ModelState>,
    model: Mutex<Option<ChatModel>>,
    prompter: RwLock<Option<Arc<Prompter>>>,
    pub metrics: Metrics,
}

impl Inference {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(ModelState::Loading { done: 0, total: None }),
            model: Mutex::new(None),
            prompter: RwLock::new(None),
            metrics: Metrics::default(),
        })
    }

    pub fn state(&self) -> ModelState {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// This server will run no model.
    pub fn disable(&self) {
        self.set_state(ModelState::Disabled);
    }

    fn set_state(&self, state: ModelState) {
        *self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// [`Inference::load`] on a thread of its own.
    pub fn start_loading(self: &Arc<Self>, source: ModelSource) {
        let inference = Arc::clone(self);
        std::thread::spawn(move || inference.load(source));
    }

    /// Fetches the model (if it comes from the catalogue) and loads it; `/health` follows along.
    pub fn load(&self, source: ModelSource) {
        let name = source.name();
        tracing::info!(model = %name, "loading the model (the first start downloads it)");
        let loaded = (|| -> Result<ChatModel, String> {
            let path = match &source {
                ModelSource::Catalog { cache, file, .. } => cache
                    .get(file, &mut |done, total| self.set_state(ModelState::Loading { done, total }))
                    .map_err(|error| error.to_string())?,
                ModelSource::File(path) => path.clone(),
            };
            let opened = std::fs::File::open(&path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
            let mut reader = std::io::BufReader::new(opened);
            engine::load_chat_model(&mut reader, &path.display().to_string(), &LoadOptions::default(), &Device::Cpu).map_err(|error| error.to_string())
        })();
        match loaded {
            Ok(model) => {
                let info = model.info.clone();
                *self.prompter.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&model.prompter));
                *self.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(model);
                tracing::info!(model = %name, ?info, "model ready");
                self.set_state(ModelState::Ready { name, info });
            }
            Err(error) => {
                tracing::error!(model = %name, %error, "model failed to load");
                self.set_state(ModelState::Failed(error));
            }
        }
    }

    /// The loaded model's tokenizer and template, or why there is none yet.
    pub fn prompter(&self) -> Result<Arc<Prompter>, ApiError> {
        match self.state() {
            ModelState::Loading { done, total } => {
                let progress = total.map_or_else(|| format!("{done} bytes"), |total| format!("{done} of {total} bytes"));
                Err(ApiError::Loading(progress))
            }
            ModelState::Failed(error) => Err(ApiError::LoadFailed(error)),
            ModelState::Disabled => Err(ApiError::NoServerModel),
            ModelState::Ready { .. } => Ok(self
                .prompter
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone()
                .expect("the prompter is stored before the state turns Ready")),
        }
    }

    /// Continues `prompt_ids`, calling `on_delta` (on a blocking thread) with each piece of
    /// text. The caller holds the request's turn (see [`crate::scheduler`]).
    pub async fn generate(
        self: &Arc<Self>,
        prompt_ids: Vec<u32>,
        params: GenerateParams,
        mut on_delta: impl FnMut(&str) -> Flow + Send + 'static,
    ) -> Result<Completion, ApiError> {
        let inference = Arc::clone(self);
        let generation = tokio::task::spawn_blocking(move || {
            let mut model = inference.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let model = model.as_mut().expect("a prompter exists only once the model is stored");
            model.generate_from_ids(&prompt_ids, &params, &mut on_delta)
        });
        let completion = generation.await.map_err(|error| ApiError::LoadFailed(format!("generation crashed: {error}")))??;
        let metrics = &self.metrics;
        metrics.prompt_tokens.inc_by(completion.usage.prompt_tokens as u64);
        metrics.generated_tokens.inc_by(completion.usage.completion_tokens as u64);
        metrics.time_to_first_token.observe(completion.timings.prefill_ms / 1000.0);
        if completion.usage.completion_tokens > 1 {
            metrics.decode_tokens_per_second.observe(completion.timings.decode_tokens_per_second);
        }
        if completion.finish_reason == engine::FinishReason::Cancelled {
            metrics.cancelled.inc();
        }
        Ok(completion)
    }
}
