//! 👍/👎, a comment and a permalink under each answer. What the visitor says is posted with the
//! answer, how it was made and the answers a regeneration replaced (the rejected side of a
//! preference pair), and stored by the server.

use leptos::either::Either;
use leptos::prelude::*;

use super::{Turn, platform};
use crate::conversation::{AnswerMeta, answer_report};
use crate::pages::use_strings;
use wire::feedback::{AnswerReport, Rating, Stored};

#[derive(Clone, Debug, PartialEq)]
enum Status {
    Idle,
    Sending,
    Saved,
    Failed(String),
}

/// The rated answer's report, and one for each answer a regeneration replaced (the rejected
/// side of a preference pair).
fn reports(
    reply: Turn,
    turns: RwSignal<Vec<Turn>>,
    conversation: &str,
    meta: &AnswerMeta,
    comment: Option<String>,
) -> Vec<AnswerReport> {
    let history: Vec<_> = turns.with_untracked(|turns| {
        turns
            .iter()
            .take_while(|turn| turn.key != reply.key)
            .map(Turn::saved)
            .collect()
    });
    let stats = reply.stats.get_untracked();
    let rated = answer_report(
        conversation,
        &history,
        &reply.text.get_untracked(),
        stats.as_ref(),
        meta,
        comment,
    );
    let earlier = reply.earlier.get_untracked();
    let replaced = earlier.iter().map(|earlier| {
        answer_report(
            conversation,
            &history,
            &earlier.text,
            earlier.stats.as_ref(),
            &earlier.meta,
            None,
        )
    });
    std::iter::once(rated).chain(replaced).flatten().collect()
}

/// Posts the reports in order; the first one's permalink is the rated answer's.
async fn post(
    reports: Vec<AnswerReport>,
    status: RwSignal<Status>,
    permalink: RwSignal<Option<String>>,
) {
    for (index, report) in reports.into_iter().enumerate() {
        let body = serde_json::to_string(&report).expect("a report serialises");
        match platform::post_json("/v1/feedback", &body).await {
            Ok(text) if index == 0 => permalink.set(
                serde_json::from_str::<Stored>(&text)
                    .ok()
                    .map(|stored| stored.permalink),
            ),
            Ok(_) => {}
            Err(error) => {
                status.set(Status::Failed(error.detail));
                return;
            }
        }
    }
    status.set(Status::Saved);
}

#[component]
pub fn Feedback(
    reply: Turn,
    turns: RwSignal<Vec<Turn>>,
    conversation: RwSignal<String>,
) -> impl IntoView {
    let strings = use_strings();
    let status = RwSignal::new(Status::Idle);
    let permalink = RwSignal::new(None::<String>);
    let rating = move || {
        reply
            .meta
            .with(|meta| meta.as_ref().map_or(Rating::None, |meta| meta.rating))
    };

    // `rating` None keeps the answer's current verdict (a permalink, a comment).
    let send = move |new_rating: Option<Rating>, comment: Option<String>| {
        let Some(mut meta) = reply.meta.get_untracked() else {
            return;
        };
        if let Some(new_rating) = new_rating {
            meta.rating = new_rating;
            reply.meta.set(Some(meta.clone()));
        }
        let reports = reports(reply, turns, &conversation.get_untracked(), &meta, comment);
        status.set(Status::Sending);
        leptos::task::spawn_local(post(reports, status, permalink));
    };
    let rate = move |chosen: Rating| {
        // A second click on the same thumb takes the verdict back.
        let new_rating = if rating() == chosen {
            Rating::None
        } else {
            chosen
        };
        send(Some(new_rating), None);
    };

    view! {
        <div class="feedback" hidden=move || reply.meta.with(Option::is_none)>
            {[(Rating::Up, "rate rate-up", "👍"), (Rating::Down, "rate rate-down", "👎")]
                .map(|(thumb, class, symbol)| {
                    let label = move || if thumb == Rating::Up { strings().like } else { strings().dislike };
                    // Words beside the emoji: a font without it, or a reader, still says what
                    // the button does.
                    let word = move || if thumb == Rating::Up { strings().like_short } else { strings().dislike_short };
                    view! {
                        <button
                            type="button"
                            class=class
                            aria-pressed=move || (rating() == thumb).to_string()
                            aria-label=label
                            title=label
                            disabled=move || status.get() == Status::Sending
                            on:click=move |_| rate(thumb)
                        >
                            <span aria-hidden="true">{symbol}</span>
                            " "
                            <span class="rate-word">{word}</span>
                        </button>
                    }
                })
                .collect_view()}
            {move || match permalink.get() {
                Some(link) => Either::Left(view! { <a class="permalink" href=link>{strings().permalink}</a> }),
                None => Either::Right(view! {
                    <button type="button" class="link-button make-permalink" on:click=move |_| send(None, None)>
                        {strings().permalink}
                    </button>
                }),
            }}
            <p class="feedback-status" role="status">
                {move || match status.get() {
                    Status::Saved => strings().feedback_saved.to_owned(),
                    Status::Failed(detail) => format!("{} {detail}", strings().feedback_failed),
                    Status::Idle | Status::Sending => String::new(),
                }}
            </p>
            <CommentForm
                key=reply.key
                rated=Signal::derive(move || rating() != Rating::None)
                on_send=Callback::new(move |comment| send(None, Some(comment)))
            />
        </div>
    }
}

/// A comment on a rated answer; `key` tells the answers' fields apart.
#[component]
fn CommentForm(key: usize, rated: Signal<bool>, on_send: Callback<String>) -> impl IntoView {
    let strings = use_strings();
    let comment = RwSignal::new(String::new());
    let id = format!("comentario-{key}");
    view! {
        <details class="feedback-comment" hidden=move || !rated.get()>
            <summary>{move || strings().add_comment}</summary>
            <form on:submit=move |event| {
                event.prevent_default();
                on_send.run(comment.get_untracked());
            }>
                <label class="visually-hidden" for=id.clone()>{move || strings().add_comment}</label>
                <textarea
                    id=id
                    rows="2"
                    maxlength="2000"
                    prop:value=move || comment.get()
                    on:input=move |event| comment.set(event_target_value(&event))
                ></textarea>
                <button type="submit" class="secondary">{move || strings().send_comment}</button>
            </form>
        </details>
    }
}
