//! `vitrina`: serves one team's demo Space.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use std::sync::Arc;

use engine::LoadOptions;
use engine::cache::ModelCache;
use server::browser_model::BrowserModel;
use server::facts::{Facts, FetchedCards};
use server::inference::{Inference, ResolvedModel};
use space::{ModelSource, Space};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "vitrina", about = "Serve a #Somos600M team's demo Space")]
struct Cli {
    /// The team's Space description.
    #[arg(long, default_value = "space.toml")]
    config: PathBuf,
    /// Address to listen on; use 0.0.0.0 inside a container.
    #[arg(long, env = "VITRINA_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    #[arg(long, env = "PORT", default_value_t = 7860)]
    port: u16,
    /// Folder with the built browser bundles and static files (made by `cargo xtask`).
    #[arg(long, env = "VITRINA_SITE_ROOT", default_value = "target/site")]
    site_root: String,
    /// The model to chat with, instead of space.toml's `[model]`: a name from the built-in
    /// catalogue (smollm2-135m, qwen2.5-coder-0.5b), or the path of a GGUF file.
    #[arg(long, env = "VITRINA_MODEL", value_parser = model_source)]
    model: Option<ModelSource>,
    /// The model visitors' browsers run, instead of space.toml's `[browser] model`: a
    /// catalogue name or the path of a GGUF file.
    #[arg(long, env = "VITRINA_BROWSER_MODEL", value_parser = model_source)]
    browser_model: Option<ModelSource>,
    /// Download the server's and the browser's models into the model cache, then exit (an
    /// image's build step, so that a cold start downloads nothing).
    #[arg(long)]
    prefetch: bool,
    /// Run no model on the server: chats run in the visitors' browsers (see `[browser]`).
    #[arg(long, env = "VITRINA_NO_MODEL")]
    no_model: bool,
    /// Where visitors' feedback is stored (SQLite); default: /data when it exists (a Space's
    /// persistent storage), else ./data.
    #[arg(long, env = "VITRINA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A server for a benchmark: requests may send `ignore_eos` (every answer then runs to its
    /// `max_tokens`, as the benchmarks need). Never on a public Space: any visitor could make
    /// every answer as long as the limits allow.
    #[arg(long)]
    bench: bool,
    /// Serve without the cross-origin isolation headers (COOP/COEP/CORP): the browser model
    /// then runs on one thread and says why. For testing that fallback.
    #[arg(long)]
    no_isolation: bool,
}

fn model_source(value: &str) -> Result<ModelSource, String> {
    if engine::catalog::by_name(value).is_some() {
        return Ok(ModelSource::Catalog(value.to_owned()));
    }
    let path = PathBuf::from(value);
    if value.ends_with(".gguf") && path.is_file() {
        return Ok(ModelSource::Path(path));
    }
    Err(format!(
        "{value:?} is neither a catalogue model ({}) nor an existing .gguf file",
        engine::catalog::NAMES.join(", ")
    ))
}

/// Why the server did not start: the message for the terminal and the exit code.
struct Refusal(u8, String);

impl Refusal {
    /// A mistake in space.toml or on the command line.
    fn config(message: String) -> Self {
        Self(2, message)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match serve(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Refusal(code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// The start-up, step by step.
async fn serve(cli: Cli) -> Result<(), Refusal> {
    let mut space = space::load(&cli.config).map_err(|error| Refusal::config(error.to_string()))?;
    space.limits.allow_ignore_eos = cli.bench;
    if let Some(source) = &cli.browser_model {
        space.browser.model = Some(source.clone());
    }
    warn_without_bundle(&cli.site_root);
    let cache = ModelCache::from_env();
    let models = Models::resolve(&cli, &space, &cache)?;
    if cli.prefetch {
        return prefetch(&models);
    }
    let address = SocketAddr::new(cli.host, cli.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| {
            Refusal::config(format!(
                "cannot listen on {address}: {error}. Choose another port with --port N or PORT=N."
            ))
        })?;
    let loading = load_in_background(models, cards_to_fetch(&space), cache);
    let data_dir = server::feedback::DataDir::choose(cli.data_dir.clone());
    if !data_dir.persistent {
        tracing::warn!(
            dir = %data_dir.path.display(),
            "visitors' feedback and the receipts' key are kept in a folder that a Space's container loses at every restart: enable the Space's persistent storage (mounted at /data) or set VITRINA_DATA_DIR to a mounted volume (see README, Feedback that becomes a corpus)"
        );
    }
    let storage = app::facts::StorageFacts {
        dir: data_dir.path.display().to_string(),
        persistent: data_dir.persistent,
    };
    let data_dir = data_dir.path;
    let facts = Arc::new(Facts {
        storage,
        inference: loading.inference,
        compare: loading.compare,
        browser_model: loading.browser_model,
        cards: loading.cards,
        receipts: Arc::new(server::receipts::Receipts::open(&data_dir)),
        store: open_feedback(&data_dir),
        remote_model: remote_model(&space),
    });
    read_corpus_ahead(&space);
    let admin_token = std::env::var("VITRINA_ADMIN_TOKEN")
        .ok()
        .filter(|token| !token.is_empty());
    let options = server::leptos_options(&cli.site_root, address);
    let app = server::router(space, options, facts, admin_token);
    let app = if cli.no_isolation {
        app
    } else {
        server::isolation::isolated(app)
    };
    tracing::info!("Vitrina listening on http://{address}");
    server::listen::serve(
        listener,
        app,
        server::listen::Connections::default(),
        shutdown_signal(),
    )
    .await;
    Ok(())
}

fn warn_without_bundle(site_root: &str) {
    if !std::path::Path::new(site_root).join("pkg").is_dir() {
        tracing::warn!(
            %site_root,
            "no browser bundle found: pages render but will not hydrate; build it with `cargo xtask run`"
        );
    }
}

/// Every model the Space uses, resolved from space.toml and the command line.
struct Models {
    /// The models visitors' browsers may run, the first they can hold (see
    /// [`BrowserModel::new`]), and whether they requantise it (`[browser] requantize`).
    browser: (Vec<ResolvedModel>, bool),
    /// `None` when answers come from elsewhere (`--no-model`, a remote backend).
    server: Option<(ResolvedModel, LoadOptions)>,
    compare: Option<(ResolvedModel, LoadOptions)>,
    /// What every conversation starts with (`[chat] system_prompt`), read before visitors come.
    read_ahead: Vec<engine::ChatMessage>,
}

impl Models {
    fn resolve(cli: &Cli, space: &Space, cache: &ModelCache) -> Result<Self, Refusal> {
        let config = cli.config.display();
        let resolve_with = |source: &ModelSource, settings: &space::ModelSettings, key: &str| {
            ResolvedModel::resolve_with(source, settings, cache)
                .map_err(|problem| Refusal::config(format!("{config}: key `{key}`: {problem}")))
        };
        let resolve = |source: &ModelSource, key: &str| {
            resolve_with(source, &space::ModelSettings::default(), key)
        };
        let kept = space.limits.prefix_cache_mb << 20;
        let elsewhere = cli.no_model || matches!(space.backend, space::ServerBackend::Remote(_));
        // The team's model, whether or not this server runs it: browsers run it by default.
        let team_model = match resolve_with(
            cli.model.as_ref().unwrap_or(&space.model.source),
            &space.model,
            "model",
        ) {
            Ok(model) => Some(model),
            // A server that runs no model need not have its file: browsers run the small one.
            Err(_) if elsewhere => None,
            Err(refusal) => return Err(refusal),
        };
        let browser_candidates = match &space.browser.model {
            Some(source) => vec![resolve(source, "browser.model")?],
            None => team_model
                .iter()
                .cloned()
                .chain([resolve(
                    &ModelSource::Catalog(space::SMALL_BROWSER_MODEL.into()),
                    "browser.model",
                )?])
                .collect(),
        };
        // The command line's model keeps space.toml's other `[model]` settings but its template.
        let server = team_model
            .filter(|_| !elsewhere)
            .map(|model| (model, load_options(&space.model, cli.model.is_none(), kept)));
        let compare = match &space.compare {
            Some(settings) => Some((
                resolve_with(&settings.source, settings, "compare")?,
                load_options(settings, true, kept),
            )),
            None => None,
        };
        Ok(Self {
            browser: (browser_candidates, space.browser.requantize),
            server,
            compare,
            read_ahead: space
                .chat
                .system_prompt
                .iter()
                .map(|prompt| engine::ChatMessage::new(engine::Role::System, prompt))
                .collect(),
        })
    }
}

/// How `[model]` (or `[compare]`) asks its file to be loaded; the chat template only applies
/// to the file it was written for. `kept_prefix_bytes` is `[limits] prefix_cache_mb`.
fn load_options(
    settings: &space::ModelSettings,
    with_template: bool,
    kept_prefix_bytes: usize,
) -> LoadOptions {
    LoadOptions {
        requantize: settings.requantize,
        chat_template: settings.chat_template.clone().filter(|_| with_template),
        kept_prefix_bytes,
        control_tokens_in_messages: settings.control_tokens_in_messages,
        ..LoadOptions::default()
    }
}

/// `--prefetch`: every model into the cache, with progress on the terminal.
fn prefetch(models: &Models) -> Result<(), Refusal> {
    let (browser_candidates, _) = &models.browser;
    let fitting = server::browser_model::first_that_fits(browser_candidates, &mut |name| {
        Box::new(terminal_progress(&format!("browser model {name}")))
    })
    .map_err(|error| Refusal(1, format!("browser model: {error}")))?;
    println!(
        "browser model {}: {}",
        fitting.name,
        fitting.file.path.display()
    );
    // Converting a team's checkpoint happens here, in the image's build: a cold start then
    // downloads and converts nothing.
    for (model, _) in models.server.iter().chain(&models.compare) {
        if matches!(model, ResolvedModel::File(_)) {
            continue;
        }
        let name = model.name();
        let file = model
            .fetch(&mut terminal_progress(&name))
            .map_err(|error| Refusal(1, format!("{name}: {error}")))?;
        println!("{name}: {}", file.path.display());
    }
    Ok(())
}

/// A progress bar on the terminal for a download into the model cache.
fn terminal_progress(label: &str) -> impl FnMut(u64, Option<u64>) + use<> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(label.to_owned());
    move |done, total| {
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.set_position(done);
    }
}

/// The cards the judges' page checks that `[cards]` does not give: the first linked model's
/// and dataset's, from the Hub.
fn cards_to_fetch(space: &Space) -> Vec<(app::cards::CardKind, String)> {
    [
        (
            app::cards::CardKind::Model,
            space.cards.model.is_none(),
            &space.models,
        ),
        (
            app::cards::CardKind::Dataset,
            space.cards.dataset.is_none(),
            &space.datasets,
        ),
    ]
    .into_iter()
    .filter(|(_, missing, _)| *missing)
    .map(|(kind, _, repos)| (kind, repos[0].id.as_str().to_owned()))
    .collect()
}

/// What [`load_in_background`] fills in as it goes.
struct Loading {
    inference: Arc<Inference>,
    compare: Option<Arc<Inference>>,
    browser_model: Arc<BrowserModel>,
    cards: Arc<FetchedCards>,
}

/// Fetches and loads everything on a thread of its own, while the server already answers (the
/// page says what is still loading). The browser's (small) model first: the fallback is ready
/// while the server's loads; the base model for comparisons last, as only the judges' page
/// uses it.
fn load_in_background(
    models: Models,
    cards_to_fetch: Vec<(app::cards::CardKind, String)>,
    cache: ModelCache,
) -> Loading {
    let Models {
        browser: (browser_candidates, browser_requantize),
        server,
        compare,
        read_ahead,
    } = models;
    let facts = Loading {
        inference: Inference::new(),
        compare: compare.as_ref().map(|_| Inference::new()),
        browser_model: BrowserModel::new(browser_candidates, browser_requantize),
        cards: Arc::new(FetchedCards::default()),
    };
    if server.is_none() {
        facts.inference.disable();
    }
    let (inference, compare_inference, browser_model, cards) = (
        Arc::clone(&facts.inference),
        facts.compare.clone(),
        Arc::clone(&facts.browser_model),
        Arc::clone(&facts.cards),
    );
    std::thread::spawn(move || {
        for (kind, repo) in cards_to_fetch {
            cards.fetch(&cache, kind, &repo);
        }
        browser_model.fetch();
        if let Some((model, options)) = server {
            inference.load(model, &options, &read_ahead);
        }
        if let (Some((model, options)), Some(compare_inference)) = (compare, compare_inference) {
            compare_inference.load(model, &options, &read_ahead);
        }
    });
    facts
}

/// Reads the corpus before anyone asks: the corpus page then opens at once.
fn read_corpus_ahead(space: &Space) {
    let Some(dataset) = &space.dataset else {
        return;
    };
    let file = dataset.file.clone();
    std::thread::spawn(move || match app::corpus::load_cached(&file) {
        Ok(corpus) => {
            tracing::info!(file = %file.display(), rows = corpus.rows.len(), milliseconds = corpus.load_ms, "corpus read")
        }
        Err(error) => tracing::error!(%error, "the corpus page will show this error"),
    });
}

/// The feedback database, or why there is none: the demo goes on without it, and only 👍/👎
/// and the exports say they are unavailable.
fn open_feedback(data_dir: &Path) -> Result<Arc<server::feedback::FeedbackStore>, String> {
    match server::feedback::FeedbackStore::open(data_dir) {
        Ok(store) => {
            tracing::info!(database = %store.path().display(), "feedback is stored here");
            Ok(Arc::new(store))
        }
        Err(error) => {
            tracing::error!(%error, "feedback will not be stored");
            Err(error.to_string())
        }
    }
}

/// The upstream's model name, for `[server] backend = "remote"`.
fn remote_model(space: &Space) -> Option<String> {
    match &space.backend {
        space::ServerBackend::Remote(upstream) => Some(
            upstream
                .model
                .clone()
                .unwrap_or_else(|| upstream.url.clone()),
        ),
        space::ServerBackend::Local => None,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
