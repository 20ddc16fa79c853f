//! One page per file.

mod api_usage;
mod chat;
mod corpus;
mod judge;
mod not_found;
mod permalink;
mod project;

pub use corpus::CorpusPage;
pub use judge::JudgePage;
pub use not_found::NotFound;
pub use permalink::PermalinkPage;
pub use project::ProjectPage;

use leptos::prelude::*;

use crate::i18n::{Lang, Strings};

/// The visitor's language: the page's on the server; in the browser an island hydrates apart
/// from the page and reads it again (from the same cookie the server read).
fn use_lang() -> RwSignal<Lang> {
    use_context::<RwSignal<Lang>>().unwrap_or_else(|| {
        let lang = RwSignal::new(crate::initial_lang());
        provide_context(lang);
        lang
    })
}

/// The interface strings of the visitor's current language, tracked reactively.
fn use_strings() -> impl Fn() -> &'static Strings + Copy {
    let lang = use_lang();
    move || lang.get().strings()
}

/// What each island does first: its language, and counting itself as interactive.
fn island_start() {
    use_lang();
    crate::document::island_hydrated();
}

/// A page's data, read from the server's context as the page renders: `render` shows it; why
/// it could not be read is shown as an alert. Pages render on the server only (what is
/// interactive hydrates as an island, with its data in its props), so nothing waits and
/// nothing is serialised for the browser.
///
/// Erased: a whole page's view type nests deeper than the compiler follows in a release build
/// ("queries overflow the depth limit"). Pages are not in the browser's bundles, so erasing
/// costs them nothing.
fn loaded<T, V: IntoView + 'static>(
    data: Result<T, String>,
    render: impl FnOnce(T) -> V,
) -> AnyView {
    match data {
        Ok(value) => render(value).into_any(),
        Err(error) => view! { <p role="alert">{error}</p> }.into_any(),
    }
}

/// The team's space.toml, as the server provides it to every page.
fn served_space() -> Result<std::sync::Arc<crate::space::Space>, String> {
    #[cfg(feature = "ssr")]
    {
        use_context::<std::sync::Arc<crate::space::Space>>()
            .ok_or_else(|| "the server started without a space.toml".to_owned())
    }
    #[cfg(not(feature = "ssr"))]
    Err(RENDERED_BY_THE_SERVER.to_owned())
}

/// What the browser's build says in place of a page's data: it never renders pages.
#[cfg(not(feature = "ssr"))]
const RENDERED_BY_THE_SERVER: &str = "this page is rendered by the server";

/// The bar on top of every page: skip link, name, and a switch to each other language, named
/// in its own words.
#[component]
fn TopBar() -> impl IntoView {
    let strings = use_strings();
    view! {
        <a class="skip-link" href="#contenido">{move || strings().skip_to_content}</a>
        <header class="topbar">
            <a class="brand" href="/">"Vitrina"</a>
            <LangSwitch />
        </header>
    }
}

#[island]
fn LangSwitch() -> impl IntoView {
    island_start();
    let lang = use_lang();
    view! {
        <div class="lang-switches">
            {Lang::ALL
                .into_iter()
                .filter(|&target| target != lang.get_untracked())
                .map(|target| {
                    view! {
                        <button
                            type="button"
                            class="lang-switch"
                            on:click=move |_| crate::document::switch_to(target)
                            lang=target.code()
                            aria-label=target.switch_aria()
                        >
                            {target.native_name()}
                        </button>
                    }
                })
                .collect_view()}
        </div>
    }
}

#[component]
fn Footer() -> impl IntoView {
    let strings = use_strings();
    view! {
        <footer class="footer">
            <p>{move || strings().footer}</p>
            <p>
                <a href=format!("/{}", wire::pages::JUDGES)>{move || strings().judges_link}</a>" · "
                <a href=format!("/{}", wire::pages::CORPUS)>{move || strings().corpus_link}</a>
            </p>
        </footer>
    }
}
