//! Vitrina's pages and components, written once with Leptos: rendered to HTML by the server
//! (feature `ssr`, used by the `server` crate) and hydrated in the browser from wasm (feature
//! `hydrate`, built by `cargo xtask`). `space.toml`'s types and reference data (ODS goals,
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
    view! {
        <!DOCTYPE html>
        <html lang=initial_lang().code()>
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light" />
                <link rel="stylesheet" href="/style.css" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let lang = RwSignal::new(initial_lang());
    provide_context(lang);
    Effect::new(move || document::show_lang(lang.get()));

    view! {
        <Router>
            <Routes fallback=NotFound>
                // In order: what the pages load is rendered in place before the rest of the page,
                // so that each page reads whole without JavaScript (and in link previews).
                <Route path=StaticSegment("") view=ProjectPage ssr=SsrMode::InOrder />
                <Route path=StaticSegment("jurado") view=JudgePage ssr=SsrMode::InOrder />
                <Route path=StaticSegment("corpus") view=CorpusPage ssr=SsrMode::InOrder />
                <Route path=(StaticSegment("respuesta"), ParamSegment("id")) view=PermalinkPage ssr=SsrMode::InOrder />
            </Routes>
        </Router>
    }
}

/// The language of the first paint: the visitor's stored choice, else Spanish. Server and
/// browser read the same cookie, so hydration never swaps the text under the visitor's eyes.
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

    /// Marks `<html>` with the language (for screen readers and hyphenation) and with
    /// `data-hydrated`, which says the page is interactive.
    #[cfg(feature = "hydrate")]
    pub fn show_lang(lang: Lang) {
        if let Some(root) = html_document().and_then(|document| document.document_element()) {
            let _ = root.set_attribute("lang", lang.code());
            let _ = root.set_attribute("data-hydrated", "true");
        }
    }

    #[cfg(not(feature = "hydrate"))]
    pub fn show_lang(_lang: Lang) {}

    #[cfg(feature = "hydrate")]
    pub fn remember(lang: Lang) {
        if let Some(document) = html_document() {
            let _ = document.set_cookie(&lang.cookie());
        }
    }

    #[cfg(not(feature = "hydrate"))]
    pub fn remember(_lang: Lang) {}
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
