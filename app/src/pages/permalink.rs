//! An answer's permalink (`/respuesta/<id>`): the question, the answer, and everything needed
//! to generate it again — model file, quantisation, settings, seed, where it ran.

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::Title;

use super::api_usage::{curl_command, use_origin};
use super::chat::platform;
use super::{Footer, TopBar, loaded, use_strings};
use crate::markdown;
use wire::feedback::{AnswerBackend, Rating, StoredAnswer, reproduction_request};
use wire::openai::ChatCompletionRequest;

fn stored_answer() -> Result<Option<StoredAnswer>, String> {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .and_then(|parts| {
                parts
                    .extensions
                    .get::<crate::facts::StoredAnswerRead>()
                    .cloned()
            })
            .ok_or("the server read no stored answer for this page")?
            .0
    }
    #[cfg(not(feature = "ssr"))]
    Err(super::RENDERED_BY_THE_SERVER.to_owned())
}

#[component]
pub fn PermalinkPage() -> impl IntoView {
    let strings = use_strings();
    view! {
        <Title text=move || strings().stored_answer />
        <TopBar />
        <main id="contenido" class="page permalink-page">
            <p class="eyebrow"><a href="/">{move || strings().back_to_project}</a></p>
            <h1>{move || strings().stored_answer}</h1>
            {loaded(stored_answer(), move |answer| match answer {
                Some(answer) => Either::Left(view! { <Answer answer /> }),
                None => Either::Right(view! { <p role="alert">{move || strings().answer_not_found}</p> }),
            })}
        </main>
        <Footer />
    }
}

// An island on the server always; in the browser, only in the bundle of every page.
#[cfg_attr(any(feature = "ssr", feature = "hydrate-all-pages"), island)]
#[cfg_attr(not(any(feature = "ssr", feature = "hydrate-all-pages")), component)]
fn Answer(answer: StoredAnswer) -> impl IntoView {
    super::island_start();
    let strings = use_strings();
    let origin = use_origin();
    let report = answer.report;
    let request = reproduction_request(&report);
    let stored_text = report.respuesta.clone();
    let again = RwSignal::new(None::<String>);
    let running = RwSignal::new(false);
    let interactive = RwSignal::new(false);
    Effect::new(move || interactive.set(true));
    let streamed_request = ChatCompletionRequest {
        stream: true,
        ..request.clone()
    };
    let reproduce = move |_| {
        running.set(true);
        again.set(Some(String::new()));
        let body = streamed_request.clone();
        leptos::task::spawn_local(async move {
            let on_event = move |event| {
                again.update(|again| {
                    crate::conversation::append_answer(again.get_or_insert_default(), &event)
                });
            };
            if let Err(error) =
                platform::stream_answer(&body, &platform::Abort::new(), on_event).await
            {
                again.set(Some(error.detail));
            }
            running.set(false);
        });
    };
    let verdict = move || {
        let again = again.get()?;
        (!running.get()).then(|| {
            if again == stored_text {
                strings().reproduced_same
            } else {
                strings().reproduced_different
            }
        })
    };
    let provenance = report.provenance.clone();
    let rating = match report.rating {
        Rating::Up => "👍",
        Rating::Down => "👎",
        Rating::None => "—",
    };
    let values = [
        match provenance.backend {
            AnswerBackend::Server => "server".to_owned(),
            AnswerBackend::Browser => "browser (WebAssembly)".to_owned(),
        },
        provenance.model,
        provenance.sha256,
        provenance.quantization,
        provenance.device,
        provenance.temperature.to_string(),
        provenance.top_p.to_string(),
        provenance.max_tokens.to_string(),
        provenance.seed.to_string(),
        rating.to_owned(),
        report.comment.unwrap_or_default(),
        answer.created_at,
    ];
    let rows = move || {
        strings()
            .provenance_labels
            .iter()
            .zip(values.clone())
            .map(|(label, value)| view! { <tr><th scope="row">{*label}</th><td>{value}</td></tr> })
            .collect_view()
    };
    // What the model read before the question: the system prompt (the Space's or the
    // visitor's own) and the earlier turns, without which the answer may not be understood.
    let earlier: Vec<_> = report
        .messages
        .split_last()
        .map(|(_, earlier)| earlier.to_vec())
        .unwrap_or_default();
    let earlier = (!earlier.is_empty()).then(|| {
        let turns = earlier
            .into_iter()
            .map(|message| {
                let role = message.role.clone();
                let label = move || match role.as_str() {
                    "system" => strings().system_prompt,
                    "assistant" => strings().model,
                    _ => strings().you,
                };
                view! {
                    <div class="turn" data-role=message.role.clone()>
                        <p class="who">{label}</p>
                        <p class="bubble">{message.content}</p>
                    </div>
                }
            })
            .collect_view();
        view! {
            <section class="section earlier-turns">
                <h2>{move || strings().earlier_turns}</h2>
                {turns}
            </section>
        }
    });
    view! {
        {earlier}
        <section class="section">
            <h2>{move || strings().question}</h2>
            <p class="question">{report.pregunta}</p>
            {report.entrada.map(|context| view! { <p class="context"><span class="label">{move || strings().context}": "</span>{context}</p> })}
            <h2>{move || strings().model}</h2>
            <div class="bubble markdown answer" inner_html=markdown::answer_to_safe_html(&report.respuesta, strings())></div>
        </section>
        <section class="section">
            <h2>{move || strings().how_made}</h2>
            <table class="facts provenance"><tbody>{rows}</tbody></table>
            <p>{move || strings().reproduce}</p>
            <pre class="snippet"><code class="curl">{move || curl_command(&origin.get(), &request)}</code></pre>
            <button type="button" class="secondary reproduce" disabled=move || !interactive.get() || running.get() on:click=reproduce>
                {move || strings().reproduce_button}
            </button>
            <div class="bubble markdown reproduced" hidden=move || again.with(Option::is_none)
                inner_html=move || again.get().map(|text| markdown::answer_to_safe_html(&text, strings())).unwrap_or_default()></div>
            <p class="reproduction-verdict" role="status">{verdict}</p>
        </section>
    }
}
