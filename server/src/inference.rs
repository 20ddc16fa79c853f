//! The model the Space chats with: fetched and loaded once in the background, then run by a
//! thread of its own that decodes every admitted answer together ([`crate::batches`]).

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, RwLock};

use engine::cache::{CachedFile, ModelCache};
use engine::{
    ChatMessage, ChatModel, Completion, Device, Flow, GenerateParams, LoadOptions, ModelInfo,
    Prompter,
};

use app::facts::{ModelFacts, ModelRole};

use crate::batches::Job;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::scheduler::Ticket;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub enum ModelState {
    Loading {
        done: u64,
        total: Option<u64>,
    },
    Ready {
        name: String,
        info: ModelInfo,
        place: Where,
        file: ModelFile,
    },
    Failed(String),
    /// The model's thread stopped (the reason) and the model is being loaded again.
    Restarting(String),
    /// Started with `--no-model`: visitors' browsers answer.
    Disabled,
}

/// Where generation runs, as `/health` and each answer's timings name it: a GPU (by its name,
/// `Tesla T4`) in a build with `--features cuda` on a machine with one it runs on, else the CPU.
#[derive(Clone, Debug)]
pub struct Where {
    pub gpu: Option<String>,
}

impl Where {
    fn cpu() -> Self {
        Self { gpu: None }
    }

    /// `cpu` or `cuda`.
    pub fn device(&self) -> &'static str {
        if self.gpu.is_some() {
            wire::device::CUDA
        } else {
            wire::device::CPU
        }
    }
}

/// The loaded file: its size and sha256 (the pin for a cached file, computed for a path).
#[derive(Clone, Debug)]
pub struct ModelFile {
    pub bytes: u64,
    pub sha256: String,
}

/// A model file as the engine will load it: what space.toml's `[model]` (or `--model`) says,
/// resolved once at start-up by [`ResolvedModel::resolve`].
#[derive(Clone)]
pub enum ResolvedModel {
    /// A file fetched and verified through the cache (a catalogue model or a pinned Hub file).
    Cached {
        name: String,
        cache: ModelCache,
        file: CachedFile,
    },
    /// A GGUF file in a Hub repository pinned by a commit: its sha256 is the one the Hub
    /// keeps for it, read when it is first fetched.
    HubAtCommit {
        name: String,
        cache: ModelCache,
        repo: String,
        file: String,
        commit: String,
    },
    /// A team's safetensors checkpoint or LoRA adapter, converted to GGUF once.
    Converted {
        name: String,
        cache: ModelCache,
        checkpoint: engine::convert::HubCheckpoint,
    },
    /// A GGUF file on this machine, used as it is.
    File(PathBuf),
}

/// A model file ready on this machine.
pub struct FetchedFile {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

impl ResolvedModel {
    /// Where `source` says the file is: a catalogue model or a pinned Hub file through the
    /// cache, or a file on this machine. The error says what is wrong with the source.
    pub fn resolve(source: &space::ModelSource, cache: &ModelCache) -> Result<Self, String> {
        Self::resolve_with(source, &space::ModelSettings::default(), cache)
    }

    /// As [`ResolvedModel::resolve`], a checkpoint converted as `settings` say (its
    /// quantisation and chat template).
    pub fn resolve_with(
        source: &space::ModelSource,
        settings: &space::ModelSettings,
        cache: &ModelCache,
    ) -> Result<Self, String> {
        match source {
            space::ModelSource::Catalog(name) => {
                let file = engine::catalog::by_name(name).ok_or_else(|| {
                    format!(
                        "catalog is {name:?}; allowed: {}",
                        engine::catalog::NAMES.join(", ")
                    )
                })?;
                Ok(Self::Cached {
                    name: name.clone(),
                    cache: cache.clone(),
                    file,
                })
            }
            space::ModelSource::Hub {
                repo,
                file,
                revision,
                sha256: None,
            } => Ok(Self::HubAtCommit {
                name: file
                    .rsplit('/')
                    .next()
                    .unwrap_or(file)
                    .trim_end_matches(".gguf")
                    .to_owned(),
                cache: cache.clone(),
                repo: repo.as_str().to_owned(),
                file: file.clone(),
                commit: revision.clone(),
            }),
            space::ModelSource::HubCheckpoint {
                repo,
                revision,
                base,
            } => {
                let quantization = engine::convert::Quantization::from_name(&settings.quantization)
                    .ok_or_else(|| {
                        format!(
                            "quantization {:?} is not one of {}",
                            settings.quantization,
                            engine::convert::Quantization::NAMES.join(", ")
                        )
                    })?;
                Ok(Self::Converted {
                    name: repo
                        .as_str()
                        .rsplit('/')
                        .next()
                        .unwrap_or(repo.as_str())
                        .to_owned(),
                    cache: cache.clone(),
                    checkpoint: engine::convert::HubCheckpoint {
                        repo: repo.as_str().to_owned(),
                        revision: revision.clone(),
                        base: base
                            .as_ref()
                            .map(|(repo, revision)| (repo.as_str().to_owned(), revision.clone())),
                        quantization,
                        chat_template: settings.chat_template.clone(),
                    },
                })
            }
            space::ModelSource::Hub {
                repo,
                file,
                revision,
                sha256: Some(sha256),
            } => {
                let file_name = file.rsplit('/').next().unwrap_or(file).to_owned();
                Ok(Self::Cached {
                    name: file_name.trim_end_matches(".gguf").to_owned(),
                    cache: cache.clone(),
                    file: CachedFile {
                        file_name,
                        sha256: sha256.clone(),
                        sources: vec![engine::cache::Source::Hub {
                            repo: repo.as_str().to_owned(),
                            file: file.clone(),
                            revision: revision.clone(),
                        }],
                    },
                })
            }
            space::ModelSource::Path(path) if path.is_file() => Ok(Self::File(path.clone())),
            space::ModelSource::Path(path) => Err(format!(
                "path {} does not exist or is not a file",
                path.display()
            )),
        }
    }

    /// The file on this machine, downloaded into the cache first if it comes from there
    /// (`progress` follows the download).
    pub fn fetch(&self, progress: engine::cache::Progress) -> Result<FetchedFile, String> {
        let (path, sha256) = match self {
            Self::Cached { cache, file, .. } => {
                let path = cache
                    .get(file, progress)
                    .map_err(|error| error.to_string())?;
                (path, file.sha256.clone())
            }
            Self::HubAtCommit {
                cache,
                repo,
                file,
                commit,
                ..
            } => {
                let kept = format!("{}/{file}", engine::cache::hub_folder(repo, commit));
                let sha256 = match engine::cache::hub_listing(repo, commit) {
                    Ok((_, files)) => files
                        .into_iter()
                        .find(|listed| &listed.name == file)
                        .ok_or_else(|| format!("{repo}@{commit} has no {file}"))?
                        .sha256
                        .ok_or_else(|| format!("the Hub keeps no sha256 for {repo}/{file} (not an LFS file): give `sha256` in space.toml"))?,
                    // Offline, the copy verified when it was fetched serves.
                    Err(_) if cache.dir().join(&kept).is_file() => {
                        let path = cache.dir().join(&kept);
                        let sha256 = engine::cache::file_sha256(&path)
                            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
                        return Self::fetched(path, sha256);
                    }
                    Err(error) => return Err(format!("cannot list {repo}@{commit}: {error}")),
                };
                let cached = CachedFile {
                    file_name: kept,
                    sha256: sha256.clone(),
                    sources: vec![engine::cache::Source::Hub {
                        repo: repo.clone(),
                        file: file.clone(),
                        revision: commit.clone(),
                    }],
                };
                let path = cache
                    .get(&cached, progress)
                    .map_err(|error| error.to_string())?;
                (path, sha256)
            }
            Self::Converted {
                cache, checkpoint, ..
            } => {
                let path = checkpoint.get(cache, progress)?;
                let sha256 = engine::cache::file_sha256(&path)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
                (path, sha256)
            }
            Self::File(path) => {
                let sha256 = engine::cache::file_sha256(path)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
                (path.clone(), sha256)
            }
        };
        Self::fetched(path, sha256)
    }

    fn fetched(path: PathBuf, sha256: String) -> Result<FetchedFile, String> {
        let bytes = std::fs::metadata(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?
            .len();
        Ok(FetchedFile {
            path,
            sha256,
            bytes,
        })
    }

    /// The name the API and `/health` give the model: the catalogue's, or the file's stem.
    pub fn name(&self) -> String {
        match self {
            Self::Cached { name, .. }
            | Self::HubAtCommit { name, .. }
            | Self::Converted { name, .. } => name.clone(),
            Self::File(path) => path.file_stem().map_or_else(
                || path.display().to_string(),
                |stem| stem.to_string_lossy().into_owned(),
            ),
        }
    }
}

pub struct Inference {
    state: RwLock<ModelState>,
    /// To the model's thread, once the model is loaded.
    jobs: Mutex<Option<Sender<Job>>>,
    prompter: RwLock<Option<Arc<Prompter>>>,
    /// Sum of decoding speeds and their number, for the mean the judges' page shows.
    speeds: Mutex<(f64, u64)>,
    pub metrics: Metrics,
}

impl Inference {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(ModelState::Loading {
                done: 0,
                total: None,
            }),
            jobs: Mutex::new(None),
            prompter: RwLock::new(None),
            speeds: Mutex::new((0.0, 0)),
            metrics: Metrics::default(),
        })
    }

    pub fn state(&self) -> ModelState {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// This server will run no model.
    pub fn disable(&self) {
        self.set_state(ModelState::Disabled);
    }

    fn set_state(&self, state: ModelState) {
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// [`Inference::load`] on a thread of its own.
    pub fn start_loading(
        self: &Arc<Self>,
        source: ResolvedModel,
        options: LoadOptions,
        read_ahead: Vec<ChatMessage>,
    ) {
        let inference = Arc::clone(self);
        std::thread::spawn(move || inference.load(source, &options, &read_ahead));
    }

    /// Fetches the model (if it comes from the catalogue) and loads it; `/health` follows along.
    /// `read_ahead` are the messages every conversation starts with (the system prompt): they
    /// are read before the first visitor comes, and kept, so no visitor waits for them.
    pub fn load(
        self: &Arc<Self>,
        source: ResolvedModel,
        options: &LoadOptions,
        read_ahead: &[ChatMessage],
    ) {
        let name = source.name();
        tracing::info!(model = %name, "loading the model (the first start downloads it)");
        let loaded = (|| -> Result<(ChatModel, Reload, ModelFile), String> {
            let FetchedFile {
                path,
                sha256,
                bytes,
            } = source
                .fetch(&mut |done, total| self.set_state(ModelState::Loading { done, total }))?;
            let chosen = engine::device::choose();
            if let Some(reason) = &chosen.cpu_because {
                tracing::warn!(%reason, "this build has CUDA but runs on the CPU");
            }
            let mut reload = Reload {
                path,
                options: options.clone(),
                device: chosen.device.clone(),
                place: Where::cpu(),
                read_ahead: read_ahead.to_vec(),
            };
            let model = match (&chosen.gpu, reload.load()) {
                (None, loaded) => loaded?,
                (Some(gpu), Ok(model)) => {
                    reload.place.gpu = Some(gpu.clone());
                    model
                }
                // A model the GPU cannot run (a kernel missing for this GPU, memory) is still
                // served, more slowly: a Space never shows a runtime error for it.
                (Some(gpu), Err(error)) => {
                    tracing::warn!(%gpu, %error, "the model failed on the GPU; loading it on the CPU");
                    reload.device = Device::Cpu;
                    reload.load()?
                }
            };
            Ok((model, reload, ModelFile { bytes, sha256 }))
        })();
        match loaded {
            Ok((model, reload, file)) => self.serve(name, model, reload, file),
            Err(error) => {
                tracing::error!(model = %name, %error, "model failed to load");
                self.set_state(ModelState::Failed(error));
            }
        }
    }

    /// Runs `model` on a thread of its own, and keeps a thread that watches it: a model thread
    /// that dies (a panic outside a forward step, which the batch survives by itself) is
    /// replaced by a new one with the model loaded again, while `/health` and every request
    /// say it is restarting; its answers in progress end with an error, their places given
    /// back.
    fn serve(self: &Arc<Self>, name: String, model: ChatModel, reload: Reload, file: ModelFile) {
        let inference = Arc::clone(self);
        let keeper = move || {
            let mut model = Some(model);
            loop {
                let model = match model.take().map_or_else(|| reload.load(), Ok) {
                    Ok(model) => model,
                    Err(error) => {
                        tracing::error!(model = %name, %error, "the model failed to load again");
                        inference.set_state(ModelState::Failed(error));
                        return;
                    }
                };
                let info = model.info.clone();
                *inference
                    .prompter
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some(Arc::clone(&model.prompter));
                let (jobs, received) = std::sync::mpsc::channel();
                let metrics = inference.metrics.engine();
                let thread = std::thread::Builder::new()
                    .name("model".into())
                    .spawn(move || crate::batches::run(model, received, &metrics))
                    .expect("a thread can be started");
                *inference.jobs() = Some(jobs);
                let place = &reload.place;
                tracing::info!(model = %name, ?info, device = place.device(), gpu = ?place.gpu, "model ready");
                inference.set_state(ModelState::Ready {
                    name: name.clone(),
                    info,
                    place: place.clone(),
                    file: file.clone(),
                });
                let Err(panic) = thread.join() else {
                    // Every sender is gone: the server is stopping.
                    return;
                };
                let reason = panic_message(panic.as_ref());
                *inference.jobs() = None;
                inference.metrics.model_restarts.inc();
                tracing::error!(model = %name, %reason, "the model's thread stopped; loading the model again");
                inference.set_state(ModelState::Restarting(reason));
            }
        };
        std::thread::Builder::new()
            .name("model-keeper".into())
            .spawn(keeper)
            .expect("a thread can be started");
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Option<Sender<Job>>> {
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The loaded model's tokenizer and template, or why there is none yet.
    pub fn prompter(&self) -> Result<Arc<Prompter>, ApiError> {
        match self.state() {
            ModelState::Loading { done, total } => {
                let progress = total.map_or_else(
                    || format!("{done} bytes"),
                    |total| format!("{done} of {total} bytes"),
                );
                Err(ApiError::Loading(progress))
            }
            ModelState::Failed(error) => Err(ApiError::LoadFailed(error)),
            ModelState::Restarting(reason) => Err(ApiError::Loading(format!(
                "its thread stopped ({reason}) and it is being loaded again"
            ))),
            ModelState::Disabled => Err(ApiError::NoServerModel),
            ModelState::Ready { .. } => Ok(self
                .prompter
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone()
                .expect("the prompter is stored before the state turns Ready")),
        }
    }

    /// Continues `owner`'s `prompt_ids`, calling `on_delta` (on the model's thread) with each piece of
    /// text. The caller holds the request's turn (see [`crate::scheduler`]): the answer joins
    /// the batch being decoded at its next step.
    /// `cancel` (or dropping the returned future) stops the answer at the model's next step,
    /// its prompt half-read or not; `place` is given back when the model lets go of it.
    pub async fn generate(
        self: &Arc<Self>,
        prompt_ids: Vec<u32>,
        params: GenerateParams,
        place: Ticket,
        owner: engine::Owner,
        cancel: CancellationToken,
        on_delta: impl FnMut(&str) -> Flow + Send + 'static,
    ) -> Result<Completion, ApiError> {
        let (done, completion) = tokio::sync::oneshot::channel();
        let _cancel_on_drop = cancel.clone().drop_guard();
        let job = Job {
            prompt_ids,
            params,
            owner,
            on_delta: Box::new(on_delta),
            cancel,
            place,
            done,
        };
        let sent = self.jobs().as_ref().map(|jobs| jobs.send(job).is_ok());
        // The thread died with this answer in it (its keeper loads the model again).
        let stopped =
            || ApiError::Loading("its thread stopped and it is being loaded again".into());
        match sent {
            Some(true) => {}
            Some(false) => return Err(stopped()),
            None => return Err(self.prompter().err().unwrap_or_else(stopped)),
        }
        let completion = completion.await.map_err(|_| stopped())??;
        self.record(&completion);
        Ok(completion)
    }

    /// Counts a finished answer in the metrics, wherever it was generated.
    pub fn record(&self, completion: &Completion) {
        let metrics = &self.metrics;
        metrics
            .prompt_tokens
            .inc_by(completion.usage.prompt_tokens as u64);
        metrics
            .generated_tokens
            .inc_by(completion.usage.completion_tokens as u64);
        metrics
            .time_to_first_token
            .observe(completion.timings.prefill_ms / 1000.0);
        if completion.usage.completion_tokens > 1 {
            metrics
                .decode_tokens_per_second
                .observe(completion.timings.decode_tokens_per_second);
            let mut speeds = self
                .speeds
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            speeds.0 += completion.timings.decode_tokens_per_second;
            speeds.1 += 1;
        }
        if completion.finish_reason == engine::FinishReason::Cancelled {
            metrics.cancelled.inc();
        }
        if completion.usage.cached_tokens > 0 {
            metrics.prefix_cache_hits.inc();
            metrics
                .reused_prompt_tokens
                .inc_by(completion.usage.cached_tokens as u64);
        }
    }
}

impl Inference {
    /// The model as the judges' page describes it; `role` says which of the Space's it is.
    pub fn facts(&self, role: ModelRole) -> ModelFacts {
        let (speed_sum, answers) = *self
            .speeds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut facts = ModelFacts::named(role, String::new(), wire::device::CPU);
        facts.answers = answers;
        facts.decode_tokens_per_second = (answers > 0).then(|| speed_sum / answers as f64);
        facts.aggregate_tokens_per_second = self.metrics.aggregate_tokens_per_second();
        match self.state() {
            ModelState::Ready {
                name,
                info,
                place,
                file,
            } => {
                facts.name = name;
                facts.status = "ready".into();
                facts.ready = true;
                facts.device = place.device().into();
                facts.file_bytes = Some(file.bytes);
                facts.sha256 = Some(file.sha256);
                fill_from_info(&mut facts, info);
            }
            ModelState::Loading { done, total } => {
                facts.status = total.map_or_else(
                    || format!("loading ({done} bytes)"),
                    |total| format!("loading ({done} of {total} bytes)"),
                );
            }
            ModelState::Failed(error) => facts.status = format!("failed: {error}"),
            ModelState::Restarting(reason) => {
                facts.status = format!("restarting: its thread stopped ({reason})");
            }
            ModelState::Disabled => facts.status = "disabled (--no-model)".into(),
        }
        facts
    }
}

/// Copies what a GGUF header says into `facts`.
pub fn fill_from_info(facts: &mut ModelFacts, info: ModelInfo) {
    facts.architecture = Some(info.architecture);
    facts.parameters = Some(info.parameters);
    facts.quantization = Some(info.quantization);
    facts.tensor_types = info.tensor_types;
    facts.context_length = Some(info.context_length);
}

/// What loads the model again: its file, how and where it was loaded, and the system prompt
/// read ahead.
struct Reload {
    path: PathBuf,
    options: LoadOptions,
    device: Device,
    place: Where,
    read_ahead: Vec<ChatMessage>,
}

impl Reload {
    /// Loads the file, tests it with a few greedy tokens before the model is declared ready
    /// (a file that loads but cannot generate — broken weights, a template that fails — is
    /// reported at start-up, in `/health`, not to the first visitor) and reads the system
    /// prompt ahead.
    fn load(&self) -> Result<ChatModel, String> {
        let path = &self.path;
        let opened = std::fs::File::open(path)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        let mut reader = std::io::BufReader::new(opened);
        let mut model = engine::load_chat_model(
            &mut reader,
            &path.display().to_string(),
            &self.options,
            &self.device,
        )
        .map_err(|error| error.to_string())?;
        self_test(&mut model)?;
        if !self.read_ahead.is_empty() {
            let tokens = model
                .read_ahead(&self.read_ahead)
                .map_err(|error| format!("the system prompt cannot be read: {error}"))?;
            tracing::info!(tokens, "system prompt read ahead and kept");
        }
        Ok(model)
    }
}

/// What a panic said, when it said it in words.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic (see the server log)".to_owned())
}

fn self_test(model: &mut ChatModel) -> Result<(), String> {
    let messages = [engine::ChatMessage::new(engine::Role::User, "Hola")];
    let params = GenerateParams {
        sampling: engine::SamplingParams::greedy(),
        max_tokens: 3,
        ..GenerateParams::default()
    };
    let started = std::time::Instant::now();
    let completion = model
        .generate(&messages, &params, &mut |_| Flow::Continue)
        .map_err(|error| format!("the model loaded but failed its start-up self-test (3 tokens for \"Hola\"): {error}"))?;
    tracing::info!(
        tokens = completion.usage.completion_tokens,
        seconds = started.elapsed().as_secs_f64(),
        "self-test passed"
    );
    Ok(())
}
