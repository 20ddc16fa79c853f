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

/// The interface strings of the visitor's current language, tracked reactively.
fn use_strings() -> impl Fn() -> &'static Strings + Copy {
    let lang = expect_context::<RwSignal<Lang>>();
    move || lang.get().strings()
}

/// A page's server data once loaded: `render` shows it; an error is shown as an alert.
fn loaded<T, V>(
    resource: Resource<Result<T, ServerFnError>>,
    render: impl Fn(T) -> V + Copy + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: IntoView + 'static,
{
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                match resource.await {
                    Ok(value) => render(value).into_any(),
                    Err(error) => view! { <p role="alert">{error.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The bar on top of every page: skip link, name, language switch.
#[component]
fn TopBar() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let strings = use_strings();
    let switch = move |_| {
        let next = lang.get_untracked().other();
        lang.set(next);
        crate::document::remember(next);
    };
    view! {
        <a class="skip-link" href="#contenido">{move || strings().skip_to_content}</a>
        <header class="topbar">
            <a class="brand" href="/">"Vitrina"</a>
            <button
                type="button"
                class="lang-switch"
                on:click=switch
                lang=move || lang.get().other().code()
                aria-label=move || strings().switch_aria
            >
                {move || strings().switch_label}
            </button>
        </header>
    }
}

#[component]
fn Footer() -> impl IntoView {
    let strings = use_strings();
    view! {
        <footer class="footer">
            <p>{move || strings().footer}</p>
            <p>
                <a href="/jurado">{move || strings().judges_link}</a>" · "
                <a href="/corpus">{move || strings().corpus_link}</a>
            </p>
        </footer>
    }
}
