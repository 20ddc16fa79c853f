//! Vitrina's server: an axum application that renders the Leptos pages of `app` with the team's
//! `space.toml`, serves the OpenAI-compatible API and the feedback routes, and the browser
//! bundles built by `cargo xtask` (the islands' and the worker's wasm, styles) from the site
//! folder.

pub mod api;
pub mod batches;
pub mod browser_model;
pub mod client;
pub mod error;
pub mod facts;
pub mod feedback;
pub mod feedback_api;
pub mod hub_cards;
pub mod inference;
pub mod isolation;
pub mod listen;
pub mod metrics;
pub mod receipts;
pub mod remote;
pub mod scheduler;
pub mod validation;

use std::sync::Arc;

use app::facts::ServerFacts;
use app::{App, shell};
use axum::Router;
use axum::extract::Request;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, file_and_error_handler, generate_route_list};
use space::Space;
use tower_http::compression::CompressionLayer;

/// The whole HTTP application for one team's Space. `admin_token` (`VITRINA_ADMIN_TOKEN`)
/// unlocks the feedback exports.
pub fn router(
    space: Space,
    options: LeptosOptions,
    facts: Arc<facts::Facts>,
    admin_token: Option<String>,
) -> Router {
    let api = api::Api::new(
        Arc::clone(&facts.inference),
        facts.compare.clone(),
        space.chat.clone(),
        space.limits.clone(),
        &space.backend,
        Arc::clone(&facts.receipts),
    );
    let feedback = Arc::new(feedback_api::FeedbackApi {
        facts: Arc::clone(&facts),
        admin_token,
        idioma: space.project.languages[0].as_str().to_owned(),
        trusted_proxies: space.limits.trusted_proxies.clone(),
        per_minute: client::PerMinute::new(space.limits.requests_per_minute_per_client),
        dpo_pairs_per_question: space.feedback.dpo_pairs_per_question as usize,
        line: api.scheduler(),
        limits: space.limits.clone(),
        chat: space.chat.clone(),
    });
    let browser_model = Arc::clone(&facts.browser_model);
    let space = Arc::new(space);
    let server_facts: Arc<dyn ServerFacts> = facts;
    let provide_space = move || {
        provide_context(Arc::clone(&space));
        provide_context(Arc::clone(&server_facts));
    };
    let routes = page_routes();
    let pages = Router::new()
        .leptos_routes_with_context(&options, routes, provide_space, {
            let options = options.clone();
            move || shell(options.clone())
        })
        .fallback(file_and_error_handler(shell))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&feedback),
            read_stored_answer,
        ))
        .layer(CompressionLayer::new())
        .with_state(options);
    error::count_refusals(pages, Arc::clone(&feedback.facts.inference))
        // After the compression layer: a compressor would hold back streamed tokens.
        .merge(api::routes(api))
        .merge(feedback_api::routes(feedback))
        // Uncompressed too: a quantised model does not shrink, and Range needs the raw bytes.
        .merge(browser_model::routes(browser_model))
}

/// The pages' routes, listed once per process. Leptos lists them by rendering the app with a
/// process-wide switch that stops every resource from loading, so a second listing while
/// another router renders a page (tests build one router each, in parallel) left that page
/// waiting forever: `project_page_tests` hung in about one run in six before this.
fn page_routes() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// Permalink pages read stored answers: they count against the visitor's per-minute limit of
/// the feedback routes, like `GET /v1/feedback/<id>`, and the answer is read here, off the
/// async threads, for the page to render (`app::facts::StoredAnswerRead`).
async fn read_stored_answer(
    axum::extract::State(feedback): axum::extract::State<Arc<feedback_api::FeedbackApi>>,
    client::Visitor(visitor): client::Visitor,
    mut request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(id) = request
        .uri()
        .path()
        .strip_prefix(&wire::feedback::permalink(""))
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    if let Err(refusal) = feedback.per_minute.admit(visitor) {
        return refusal.into_response();
    }
    let read = feedback.read(id).await.map_err(|error| error.to_string());
    request
        .extensions_mut()
        .insert(app::facts::StoredAnswerRead(read));
    next.run(request).await
}

/// Leptos settings for a site folder laid out by `cargo xtask` (`pkg/` holds the wasm).
pub fn leptos_options(site_root: &str, address: std::net::SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(wire::pages::HOME_BUNDLE)
        .site_root(site_root)
        .site_pkg_dir("pkg")
        .site_addr(address)
        .build()
}
