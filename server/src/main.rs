//! `vitrina`: serves one team's demo Space.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use std::sync::Arc;

use server::browser_model::BrowserModel;
use server::inference::ModelSource;
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
    model: Option<ModelChoice>,
    /// The model visitors' browsers run, instead of space.toml's `[browser] model`.
    #[arg(long, env = "VITRINA_BROWSER_MODEL", value_parser = clap::builder::PossibleValuesParser::new(engine::catalog::NAMES))]
    browser_model: Option<String>,
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
}

#[derive(Clone)]
enum ModelChoice {
    Catalog(String),
    File(PathBuf),
}

fn model_source(value: &str) -> Result<ModelChoice, String> {
    if engine::catalog::by_name(value).is_some() {
        return Ok(ModelChoice::Catalog(value.to_owned()));
    }
    let path = PathBuf::from(value);
    if value.ends_with(".gguf") && path.is_file() {
        return Ok(ModelChoice::File(path));
    }
    Err(format!(
        "{value:?} is neither a catalogue model ({}) nor an existing .gguf file",
        engine::catalog::NAMES.join(", ")
    ))
}

/// `--prefetch`: both models into the cache, with progress on the terminal.
fn prefetch(
    cache: &engine::cache::ModelCache,
    browser_file: &engine::cache::CachedFile,
    server: [Option<&ModelSource>; 2],
) -> ExitCode {
    let mut files = vec![("browser model".to_owned(), browser_file)];
    for source in server.into_iter().flatten() {
        if let ModelSource::Cached { name, file, .. } = source {
            files.push((name.clone(), file));
        }
    }
    for (name, file) in files {
        match cache.get(file, &mut terminal_progress(&name)) {
            Ok(path) => println!("{name}: {}", path.display()),
            Err(error) => {
                eprintln!("error: {name}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// A progress bar on the terminal for a download into the model cache.
fn terminal_progress(label: &str) -> impl FnMut(u64, Option<u64>) {
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

/// The server's model as space.toml's `[model]` describes it.
fn model_from_space(
    source: &space::ModelSource,
    cache: &engine::cache::ModelCache,
) -> Result<ModelSource, String> {
    use space::ModelSource as InSpace;
    Ok(match source {
        InSpace::Catalog(name) => {
            let file = engine::catalog::by_name(name).ok_or_else(|| {
                format!(
                    "catalog is {name:?}; allowed: {}",
                    engine::catalog::NAMES.join(", ")
                )
            })?;
            ModelSource::Cached {
                name: name.clone(),
                cache: cache.clone(),
                file,
            }
        }
        InSpace::Hub {
            repo,
            file,
            revision,
            sha256,
        } => {
            let file_name = file.rsplit('/').next().unwrap_or(file).to_owned();
            let cached = engine::cache::CachedFile {
                file_name: file_name.clone(),
                sha256: sha256.clone(),
                sources: vec![engine::cache::Source::Hub {
                    repo: repo.as_str().to_owned(),
                    file: file.clone(),
                    revision: revision.clone(),
                }],
            };
            ModelSource::Cached {
                name: file_name.trim_end_matches(".gguf").to_owned(),
                cache: cache.clone(),
                file: cached,
            }
        }
        InSpace::Path(path) if path.is_file() => ModelSource::File(path.clone()),
        InSpace::Path(path) => {
            return Err(format!(
                "path {} does not exist or is not a file",
                path.display()
            ));
        }
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();

    let mut space = match space::load(&cli.config) {
        Ok(space) => space,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if !std::path::Path::new(&cli.site_root).join("pkg").is_dir() {
        tracing::warn!(
            site_root = %cli.site_root,
            "no browser bundle found: pages render but will not hydrate; build it with `cargo xtask run`"
        );
    }

    let Some(browser_file) = engine::catalog::by_name(&space.browser.model) else {
        eprintln!(
            "error: {}: key `browser.model`: found {:?}; allowed: {}",
            cli.config.display(),
            space.browser.model,
            engine::catalog::NAMES.join(", ")
        );
        return ExitCode::from(2);
    };
    let cache = engine::cache::ModelCache::from_env();
    let browser_model_file = browser_file.clone();
    let browser_model = BrowserModel::new(space.browser.model.clone(), browser_file);
    let inference = server::inference::Inference::new();
    let mut options = engine::LoadOptions {
        requantize: space.model.requantize,
        ..engine::LoadOptions::default()
    };
    let source = match cli.model {
        // Answers come from elsewhere: no model here (the browser's is still served).
        _ if cli.no_model || matches!(space.backend, space::Backend::Remote(_)) => None,
        Some(ModelChoice::Catalog(name)) => {
            let file =
                engine::catalog::by_name(&name).expect("checked while parsing the arguments");
            Some(ModelSource::Cached {
                name,
                cache: cache.clone(),
                file,
            })
        }
        Some(ModelChoice::File(path)) => Some(ModelSource::File(path)),
        None => {
            options.chat_template = space.model.chat_template.clone();
            match model_from_space(&space.model.source, &cache) {
                Ok(source) => Some(source),
                Err(problem) => {
                    eprintln!("error: {}: key `model`: {problem}", cli.config.display());
                    return ExitCode::from(2);
                }
            }
        }
    };
    let compare = match space
        .compare
        .as_ref()
        .map(|settings| model_from_space(&settings.source, &cache))
    {
        None => None,
        Some(Ok(source)) => Some(source),
        Some(Err(problem)) => {
            eprintln!("error: {}: key `compare`: {problem}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    if cli.prefetch {
        return prefetch(
            &cache,
            &browser_model_file,
            [source.as_ref(), compare.as_ref()],
        );
    }
    let address = SocketAddr::new(cli.host, cli.port);
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "error: cannot listen on {address}: {error}. Choose another port with --port N or PORT=N."
            );
            return ExitCode::from(2);
        }
    };
    if let Some(name) = &cli.browser_model {
        space.browser.model = name.clone();
    }
    if source.is_none() {
        inference.disable();
    }
    let compare_inference = compare
        .as_ref()
        .map(|_| server::inference::Inference::new());
    let cards = Arc::new(server::facts::FetchedCards::default());
    // The judges' page checks the first linked model's and dataset's cards when `[cards]` does
    // not give them.
    let cards_to_fetch: Vec<(app::cards::CardKind, String)> = [
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
    .collect();
    {
        let (inference, browser_model, compare_inference) = (
            Arc::clone(&inference),
            Arc::clone(&browser_model),
            compare_inference.clone(),
        );
        let cards = Arc::clone(&cards);
        let compare_options = engine::LoadOptions {
            chat_template: space
                .compare
                .as_ref()
                .and_then(|settings| settings.chat_template.clone()),
            requantize: space
                .compare
                .as_ref()
                .is_none_or(|settings| settings.requantize),
            ..engine::LoadOptions::default()
        };
        // The browser's (small) model first: the fallback is ready while the server's loads;
        // the base model for comparisons last, as only the judges' page uses it.
        std::thread::spawn(move || {
            for (kind, repo) in cards_to_fetch {
                cards.fetch(&cache, kind, &repo);
            }
            browser_model.fetch(&cache);
            if let Some(source) = source {
                inference.load(source, &options);
            }
            if let (Some(source), Some(compare_inference)) = (compare, compare_inference) {
                compare_inference.load(source, &compare_options);
            }
        });
    }
    if let Some(dataset) = &space.dataset {
        // Read before anyone asks: the corpus page then opens at once.
        let file = dataset.file.clone();
        std::thread::spawn(move || match app::corpus::load_cached(&file) {
            Ok(corpus) => {
                tracing::info!(file = %file.display(), rows = corpus.rows.len(), milliseconds = corpus.load_ms, "corpus read")
            }
            Err(error) => tracing::error!(%error, "the corpus page will show this error"),
        });
    }
    let data_dir = cli
        .data_dir
        .unwrap_or_else(server::feedback::default_data_dir);
    let store = match server::feedback::FeedbackStore::open(&data_dir) {
        Ok(store) => {
            tracing::info!(database = %store.path().display(), "feedback is stored here");
            Ok(Arc::new(store))
        }
        Err(error) => {
            // The demo goes on: only 👍/👎 and exports are unavailable, and say why.
            tracing::error!(%error, "feedback will not be stored");
            Err(error.to_string())
        }
    };
    let remote_model = match &space.backend {
        space::Backend::Remote(upstream) => Some(
            upstream
                .model
                .clone()
                .unwrap_or_else(|| upstream.url.clone()),
        ),
        space::Backend::Local => None,
    };
    let facts = Arc::new(server::facts::Facts {
        inference,
        compare: compare_inference,
        browser_model,
        remote_model,
        store,
        cards,
    });
    let admin_token = std::env::var("VITRINA_ADMIN_TOKEN")
        .ok()
        .filter(|token| !token.is_empty());
    let options = server::leptos_options(&cli.site_root, address);
    let app = server::router(space, options, facts, admin_token);
    tracing::info!("Vitrina listening on http://{address}");
    if let Err(error) = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    {
        eprintln!("error: server stopped: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
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
