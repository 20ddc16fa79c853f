//! Vitrina's pages and components, written once with Leptos: rendered to HTML by the server
//! (feature `ssr`, used by the `server` crate); their interactive parts are islands, hydrated in
//! the browser from wasm (feature `hydrate` for the project page's, `hydrate-all-pages` for every
//! page's; built by `cargo xtask`). `space.toml`'s types and reference data (ODS goals,
//! language varieties) live in the `space` crate, re-exported here for the pages.

#[cfg(feature = "ssr")]
pub mod cards;
pub mod conversation;
pub mod corpus;
pub mod facts;
pub mod i18n;
pub mod judge;
pub mod markdown;
mod pages;
pub use space::{self, idioma, ods};

use leptos::prelude::*;
use leptos_meta::{MetaTags, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{ParamSegment, SsrMode, StaticSegment};

use crate::i18n::Lang;
use crate::pages::{CorpusPage, JudgePage, NotFound, PermalinkPage, ProjectPage};

/// The HTML document around the app; rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let options = with_the_pages_bundle(options);
    view! {
        <!DOCTYPE html>
        <html lang=initial_lang().code()>
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light" />
                <link rel="stylesheet" href="/style.css" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <HydrationScripts options islands=true />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The hydration bundle this page needs (`wire::pages`), in place of the default one.
#[cfg_attr(not(feature = "ssr"), allow(unused_mut))]
fn with_the_pages_bundle(mut options: LeptosOptions) -> LeptosOptions {
    #[cfg(feature = "ssr")]
    if let Some(parts) = use_context::<http::request::Parts>() {
        options.output_name = wire::pages::bundle_for(parts.uri.path()).into();
    }
    options
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(RwSignal::new(initial_lang()));

    view! {
        <Router>
            <Routes fallback=NotFound>
                // In order: what the pages load is rendered in place before the rest of the page,
                // so that each page reads whole without JavaScript (and in link previews).
                <Route path=StaticSegment("") view=ProjectPage ssr=SsrMode::InOrder />
                <Route path=StaticSegment(wire::pages::JUDGES) view=JudgePage ssr=SsrMode::InOrder />
                <Route path=StaticSegment(wire::pages::CORPUS) view=CorpusPage ssr=SsrMode::InOrder />
                <Route path=(StaticSegment(wire::pages::PERMALINK), ParamSegment("id")) view=PermalinkPage ssr=SsrMode::InOrder />
            </Routes>
        </Router>
    }
}

/// The language of the page: the visitor's stored choice, else Spanish. Server and browser
/// read the same cookie, so an island hydrates with the text the server wrote.
fn initial_lang() -> Lang {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .and_then(|parts| {
                parts
                    .headers
                    .get(http::header::COOKIE)?
                    .to_str()
                    .ok()
                    .map(Lang::from_cookie_header)
            })
            .unwrap_or_default()
    }
    #[cfg(not(feature = "ssr"))]
    {
        document::cookie()
            .map(|cookie| Lang::from_cookie_header(&cookie))
            .unwrap_or_default()
    }
}

/// What only the browser does: the cookie and the document element.
mod document {
    use crate::i18n::Lang;

    #[cfg(feature = "hydrate")]
    fn html_document() -> Option<web_sys::HtmlDocument> {
        use wasm_bindgen::JsCast;
        web_sys::window()?
            .document()?
            .dyn_into::<web_sys::HtmlDocument>()
            .ok()
    }

    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    pub fn cookie() -> Option<String> {
        html_document()?.cookie().ok()
    }

    #[cfg(not(any(feature = "hydrate", feature = "ssr")))]
    pub fn cookie() -> Option<String> {
        None
    }

    /// Counts an island as it hydrates; once every island of the page has, marks `<html>` with
    /// `data-hydrated` (what the end-to-end tests wait for). Islands hydrate one by one, in the
    /// order of the page, each in one synchronous call that this runs at the start of, so the
    /// mark is seen only after the last island's call has returned.
    #[cfg(feature = "hydrate")]
    pub fn island_hydrated() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static HYDRATED: AtomicUsize = AtomicUsize::new(0);
        let hydrated = HYDRATED.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(document) = html_document() else {
            return;
        };
        let islands = document
            .query_selector_all("leptos-island")
            .map_or(0, |islands| islands.length() as usize);
        if hydrated >= islands
            && let Some(root) = document.document_element()
        {
            let _ = root.set_attribute("data-hydrated", "true");
        }
    }

    #[cfg(not(feature = "hydrate"))]
    pub fn island_hydrated() {}

    /// Stores the visitor's language and loads the page again in it: the sheets around the
    /// islands are the server's HTML, written in one language.
    #[cfg(feature = "hydrate")]
    pub fn switch_to(lang: Lang) {
        if let Some(document) = html_document() {
            let _ = document.set_cookie(&lang.cookie());
        }
        if let Some(window) = web_sys::window() {
            let _ = window.location().reload();
        }
    }

    #[cfg(not(feature = "hydrate"))]
    pub fn switch_to(_lang: Lang) {}
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
