use leptos::prelude::*;

use super::{Footer, TopBar};

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <TopBar />
        <main id="contenido" class="page">
            <h1>"404"</h1>
            <p>
                <a href="/">"Volver al proyecto · Back to the project"</a>
            </p>
        </main>
        <Footer />
    }
}
