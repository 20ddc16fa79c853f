//! The model the Space chats with: fetched and loaded once in the background, then used for
//! one generation at a time on a blocking thread, behind a bounded queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use engine::cache::{CachedFile, ModelCache};
use engine::{ChatMessage, ChatModel, Completion, Device, Flow, GenerateParams, LoadOptions, ModelInfo};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::metrics::Metrics;

#[derive(Clone, Debug)]
pub enum ModelState {
    Loading { done: u64, total: Option<u64> },
    Ready { name: String, info: ModelInfo },
    Failed(String),
}

pub struct Inference {
    state: RwLock<ModelState>,
    model: Mutex<Option<ChatModel>>,
    running: Semaphore,
    queued: AtomicUsize,
    max_queue: usize,
    pub metrics: Metrics,
}

/// Counts a request as queued until it starts or its client goes away.
struct QueuedGuard<'a>(&'a Inference);

impl Drop for QueuedGuard<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.queued.dec();
    }
}

/// Counts a generation as running while it holds the model.
struct RunningGuard<'a>(&'a Metrics);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.running.dec();
    }
}

impl Inference {
    /// `max_concurrent` generations run at once; `max_queue` more may wait.
    pub fn new(max_concurrent: usize, max_queue: usize) -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(ModelState::Loading { done: 0, total: None }),
            model: Mutex::new(None),
            running: Semaphore::new(max_concurrent.max(1)),
            queued: AtomicUsize::new(0),
            max_queue,
            metrics: Metrics::default(),
        })
    }

    pub fn state(&self) -> ModelState {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set_state(&self, state: ModelState) {
        *self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// Fetches `file` through `cache` and loads it, on a thread of its own.
    pub fn start_loading(self: &Arc<Self>, cache: ModelCache, name: String, file: CachedFile) {
        let inference = Arc::clone(self);
        tracing::info!(model = %name, cache = %cache.dir().display(), "loading the model (the first start downloads it)");
        std::thread::spawn(move || {
            let loaded = (|| -> Result<ChatModel, String> {
                let path = cache
                    .get(&file, &mut |done, total| inference.set_state(ModelState::Loading { done, total }))
                    .map_err(|error| error.to_string())?;
                let mut reader = std::io::BufReader::new(std::fs::File::open(&path).map_err(|error| error.to_string())?);
                engine::load_chat_model(&mut reader, &file.file_name, &LoadOptions::default(), &Device::Cpu).map_err(|error| error.to_string())
            })();
            match loaded {
                Ok(model) => {
                    let info = model.info.clone();
                    *inference.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(model);
                    tracing::info!(model = %name, ?info, "model ready");
                    inference.set_state(ModelState::Ready { name, info });
                }
                Err(error) => {
                    tracing::error!(model = %name, %error, "model failed to load");
                    inference.set_state(ModelState::Failed(error));
                }
            }
        });
    }

    /// Answers `messages`, calling `on_delta` (on a blocking thread) with each piece of text.
    pub async fn generate(
        self: &Arc<Self>,
        messages: Vec<ChatMessage>,
        params: GenerateParams,
        mut on_delta: impl FnMut(&str) -> Flow + Send + 'static,
    ) -> Result<Completion, ApiError> {
        match self.state() {
            ModelState::Loading { done, total } => {
                let progress = total.map_or_else(|| format!("{done} bytes"), |total| format!("{done} of {total} bytes"));
                return Err(ApiError::Loading(progress));
            }
            ModelState::Failed(error) => return Err(ApiError::LoadFailed(error)),
            ModelState::Ready { .. } => {}
        }
        let _permit = match self.running.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                let queued = self.queued.fetch_add(1, Ordering::SeqCst);
                self.metrics.queued.inc();
                let _queued = QueuedGuard(self);
                if queued >= self.max_queue {
                    return Err(ApiError::Overloaded { queued, limit: self.max_queue });
                }
                self.running.acquire().await.map_err(|_| ApiError::LoadFailed("the server is shutting down".into()))?
            }
        };
        self.metrics.running.inc();
        let _running = RunningGuard(&self.metrics);
        let inference = Arc::clone(self);
        let generation = tokio::task::spawn_blocking(move || {
            let mut model = inference.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let model = model.as_mut().expect("state is Ready only once the model is stored");
            model.generate(&messages, &params, &mut on_delta)
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
