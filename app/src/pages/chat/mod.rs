//! The chat: the visitor's question goes to the server's OpenAI-compatible API and the answer
//! streams in token by token, rendered as Markdown in which nothing the model writes becomes
//! markup. The conversation and settings are kept in the browser across reloads.

pub(super) mod browser;
mod feedback;

use leptos::html::Textarea;
use leptos::prelude::*;

use super::use_strings;
use crate::conversation::{
    AnswerMeta, AnswerStats, BROWSER_DEVICE, Backend, ChatError, EarlierAnswer, Failure, Saved,
    SavedTurn, Settings, Speaker, StreamEvent, request_body, worker_request,
};
use crate::i18n::Strings;
use crate::markdown;
use crate::space::{BrowserSettings, ChatDefaults, ChatExample};
use feedback::Feedback;
use wire::feedback::{AnswerBackend, Rating};
use wire::limits;

/// One message on screen; every part is a signal so that the list never re-renders whole.
#[derive(Clone, Copy)]
struct Turn {
    /// Stable key for the list while messages come and go.
    key: usize,
    speaker: Speaker,
    text: RwSignal<String>,
    context: RwSignal<Option<String>>,
    stats: RwSignal<Option<AnswerStats>>,
    /// Place in the server's queue, and the estimated wait, while the answer has not started.
    queued: RwSignal<Option<(u64, Option<f64>)>>,
    meta: RwSignal<Option<AnswerMeta>>,
    earlier: RwSignal<Vec<EarlierAnswer>>,
}

impl Turn {
    fn saved(&self) -> SavedTurn {
        SavedTurn {
            speaker: self.speaker,
            text: self.text.get(),
            context: self.context.get(),
            stats: self.stats.get(),
            meta: self.meta.get(),
            earlier: self.earlier.get(),
        }
    }
}

/// Where the page is served from, once the browser can say.
pub fn browser_origin() -> Option<String> {
    browser::origin()
}

fn failure_text(strings: &Strings, failure: Failure) -> &'static str {
    match failure {
        Failure::Busy => strings.failed_busy,
        Failure::Loading => strings.failed_loading,
        Failure::TooLong => strings.failed_too_long,
        Failure::Connection => strings.failed_connection,
        Failure::Other => strings.failed_other,
        Failure::Browser => strings.failed_browser,
    }
}

pub(super) fn number(strings: &Strings, value: f64) -> String {
    let text = format!("{value:.1}");
    if strings.decimal_comma {
        text.replace('.', ",")
    } else {
        text
    }
}

fn stats_text(strings: &Strings, stats: &AnswerStats) -> String {
    let place = if stats.device == BROWSER_DEVICE {
        strings.in_browser
    } else {
        strings.on_server
    };
    format!(
        "{} tokens · {} tok/s · {place} ({})",
        stats.tokens,
        number(strings, stats.tokens_per_second),
        stats.device.to_uppercase()
    )
}

fn notice_text(strings: &Strings, problem: &browser::ServerProblem, failover: bool) -> String {
    let why = match problem.status.as_str() {
        "loading" => strings.server_loading.to_owned(),
        "disabled" => strings.server_disabled.to_owned(),
        _ if problem.message.is_empty() => strings.server_failed.to_owned(),
        _ => format!("{} {}", strings.server_failed, problem.message),
    };
    format!(
        "{why} {}",
        if failover {
            strings.answers_in_browser
        } else {
            strings.try_later
        }
    )
}

/// The browser model's download, as the visitor reads it: MB of MB, speed, time left.
fn progress_text(strings: &Strings, progress: &browser::Progress, started_ms: f64) -> String {
    let megabytes = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let (done, total) = (megabytes(progress.done), megabytes(progress.total));
    if progress.done >= progress.total {
        return strings.preparing_model.to_owned();
    }
    if progress.from_cache {
        return format!(
            "{} {:.0} / {:.0} MB",
            strings.loading_cached_model, done, total
        );
    }
    let mut text = format!(
        "{} {:.0} / {:.0} MB",
        strings.downloading_model, done, total
    );
    let seconds = (browser::now_ms() - started_ms) / 1000.0;
    if seconds > 0.5 && done > 0.0 {
        let speed = done / seconds;
        text.push_str(&format!(
            " · {} MB/s · {} {:.0} s",
            number(strings, speed),
            strings.time_left,
            ((total - done) / speed).ceil()
        ));
    }
    text
}

fn queue_text(strings: &Strings, position: u64, wait: Option<f64>) -> String {
    let mut text = format!("{} {position}", strings.queue_position);
    if let Some(seconds) = wait {
        text.push_str(&format!(
            " · {} {} s",
            strings.queue_wait,
            seconds.ceil().max(1.0)
        ));
    }
    text
}

#[component]
pub fn Chat(
    examples: Vec<ChatExample>,
    defaults: ChatDefaults,
    browser: BrowserSettings,
) -> impl IntoView {
    let strings = use_strings();
    let team_settings = Settings::from(&defaults);
    let settings = RwSignal::new(team_settings.clone());
    let turns = RwSignal::new(Vec::<Turn>::new());
    let next_key = StoredValue::new(0usize);
    let draft = RwSignal::new(String::new());
    let context_draft = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let failure = RwSignal::new(None::<ChatError>);
    let (failover, requantize) = (browser.failover, browser.requantize);
    // The browser model's download: progress and when it began (for speed and time left).
    let download = RwSignal::new(None::<(browser::Progress, f64)>);
    let question_box = NodeRef::<Textarea>::new();
    // Buttons stay disabled until the page is interactive: a click before hydration would be lost.
    let interactive = RwSignal::new(false);
    // The browser's AbortController cannot leave its thread; the server's stand-in can, and
    // must, since a server render may end on another thread than it began.
    #[cfg(feature = "hydrate")]
    let controller = StoredValue::new_local(None::<browser::Abort>);
    #[cfg(not(feature = "hydrate"))]
    let controller = StoredValue::new(None::<browser::Abort>);

    let conversation = RwSignal::new(String::new());
    let push_turn = move |saved: SavedTurn| {
        let key = next_key.get_value();
        next_key.set_value(key + 1);
        let turn = Turn {
            key,
            speaker: saved.speaker,
            text: RwSignal::new(saved.text),
            context: RwSignal::new(saved.context),
            stats: RwSignal::new(saved.stats),
            queued: RwSignal::new(None),
            meta: RwSignal::new(saved.meta),
            earlier: RwSignal::new(saved.earlier),
        };
        turns.update(|turns| turns.push(turn));
        turn
    };

    // Why the server cannot answer, told as soon as the page is interactive.
    let server_notice = RwSignal::new(None::<browser::ServerProblem>);
    Effect::new(move || {
        leptos::task::spawn_local(async move { server_notice.set(browser::server_problem().await) })
    });
    // Effects run only in the browser, after hydration: the server's HTML is an empty chat.
    Effect::new(move || {
        let mut conversation_id = String::new();
        if let Some(saved) = browser::load_saved() {
            settings.set(saved.settings.clamped());
            conversation_id = saved.conversation;
            for turn in saved.turns {
                push_turn(turn);
            }
        }
        conversation.set(if conversation_id.is_empty() {
            browser::random_key()
        } else {
            conversation_id
        });
        interactive.set(true);
    });
    Effect::new(move || {
        let saved = Saved {
            turns: turns.get().iter().map(Turn::saved).collect(),
            settings: settings.get(),
            conversation: conversation.get(),
        };
        if interactive.get() {
            browser::save(&saved);
        }
    });

    // Answers the conversation as it stands, which ends with the visitor's turn; `turn_key`
    // and `earlier` carry over the answers a regeneration replaces.
    let answer = move |turn_key: String, earlier: Vec<EarlierAnswer>| {
        let history: Vec<SavedTurn> = turns
            .get_untracked()
            .iter()
            .map(|turn| turn.saved())
            .collect();
        if history
            .last()
            .is_none_or(|turn| turn.speaker != Speaker::Visitor)
        {
            return;
        }
        let current = settings.get_untracked().clamped();
        let seed = browser::random_seed();
        let (body, in_browser_request) = (
            request_body(&history, &current, seed, None),
            worker_request(&history, &current, seed),
        );
        let backend = if failover {
            current.backend
        } else {
            Backend::Server
        };
        let reply = push_turn(SavedTurn {
            earlier,
            ..SavedTurn::new(Speaker::Model, String::new(), None)
        });
        let meta = AnswerMeta {
            answer_key: browser::random_key(),
            turn_key,
            seed,
            backend: AnswerBackend::Server,
            settings: current.clone(),
            rating: Rating::None,
        };
        failure.set(None);
        busy.set(true);
        let abort = browser::Abort::new();
        controller.set_value(Some(abort.clone()));
        let on_event = move |event| match event {
            StreamEvent::Text(text) => {
                reply.queued.set(None);
                reply.text.update(|answer| answer.push_str(&text));
            }
            StreamEvent::Queued {
                position,
                estimated_wait_seconds,
            } => reply.queued.set(Some((position, estimated_wait_seconds))),
            StreamEvent::Finished(stats) => reply.stats.set(Some(stats)),
            StreamEvent::Nothing => {}
        };
        leptos::task::spawn_local(async move {
            let mut in_browser = match backend {
                Backend::Browser => true,
                Backend::Server => false,
                // Back to the server as soon as it is healthy again.
                Backend::Auto => browser::server_problem().await.is_some(),
            };
            let mut result = Ok(());
            if !in_browser {
                result = browser::stream_answer(&body, &abort, on_event).await;
                // The same question, history included, goes to the browser when the server
                // could not even begin to answer.
                in_browser = backend == Backend::Auto
                    && !abort.aborted()
                    && reply.text.get_untracked().is_empty()
                    && result
                        .as_ref()
                        .is_err_and(ChatError::server_could_not_serve);
            }
            if in_browser {
                reply.queued.set(None);
                let on_progress = move |progress: browser::Progress| {
                    download.update(|download| {
                        let started = download.map_or_else(browser::now_ms, |(_, started)| started);
                        *download = Some((progress, started));
                    })
                };
                result = browser::answer_in_browser(
                    in_browser_request,
                    requantize,
                    &abort,
                    on_progress,
                    on_event,
                )
                .await;
                download.set(None);
            }
            reply.queued.set(None);
            if result.is_ok() && !reply.text.get_untracked().is_empty() {
                let backend = if in_browser {
                    AnswerBackend::Browser
                } else {
                    AnswerBackend::Server
                };
                reply.meta.set(Some(AnswerMeta { backend, ..meta }));
            }
            if let Err(error) = result {
                // An answer that never began leaves no empty bubble behind.
                if reply.text.get_untracked().is_empty() {
                    turns.update(|turns| turns.retain(|turn| turn.key != reply.key));
                }
                failure.set(Some(error));
            }
            busy.set(false);
        });
    };
    let send = move |question: String, context: Option<String>| {
        let question = question.trim().to_owned();
        if question.is_empty() || busy.get_untracked() {
            return;
        }
        draft.set(String::new());
        context_draft.set(String::new());
        push_turn(SavedTurn::new(
            Speaker::Visitor,
            question,
            context.filter(|context| !context.trim().is_empty()),
        ));
        answer(browser::random_key(), Vec::new());
    };
    let regenerate = move |_| {
        if busy.get_untracked() {
            return;
        }
        // The replaced answer stays with the question: the visitor preferred another one.
        let (mut turn_key, mut earlier) = (browser::random_key(), Vec::new());
        turns.update(|turns| {
            if let Some(replaced) = turns.pop_if(|turn| turn.speaker == Speaker::Model) {
                earlier = replaced.earlier.get_untracked();
                if let Some(meta) = replaced.meta.get_untracked() {
                    turn_key = meta.turn_key.clone();
                    earlier.push(EarlierAnswer {
                        text: replaced.text.get_untracked(),
                        stats: replaced.stats.get_untracked(),
                        meta,
                    });
                }
            }
        });
        answer(turn_key, earlier);
    };
    let edit_last = move |_| {
        if busy.get_untracked() {
            return;
        }
        let mut last_question = None;
        turns.update(|turns| {
            while let Some(turn) = turns.pop() {
                if turn.speaker == Speaker::Visitor {
                    last_question = Some(turn);
                    break;
                }
            }
        });
        if let Some(turn) = last_question {
            draft.set(turn.text.get_untracked());
            context_draft.set(turn.context.get_untracked().unwrap_or_default());
            failure.set(None);
            if let Some(question_box) = question_box.get_untracked() {
                let _ = question_box.focus();
            }
        }
    };
    let stop = move |_| {
        if let Some(abort) = controller.get_value() {
            abort.abort();
        }
    };
    let clear = move |_| {
        turns.set(Vec::new());
        conversation.set(browser::random_key());
        failure.set(None);
    };
    let can_act = move || interactive.get() && !busy.get();
    let has_question =
        move || turns.with(|turns| turns.iter().any(|turn| turn.speaker == Speaker::Visitor));
    let team_settings = StoredValue::new(team_settings);

    view! {
        <section class="section chat" id="chat" aria-labelledby="chat-titulo">
            <h2 id="chat-titulo">{move || strings().chat}</h2>
            <p class="server-notice" role="status" hidden=move || server_notice.with(Option::is_none)>
                {move || server_notice.get().map(|problem| notice_text(strings(), &problem, failover))}
            </p>
            <ol class="turns" aria-live="polite" on:click=move |event| browser::copy_code_clicked(&event, strings().copied)>
                <For each=move || turns.get() key=|turn| turn.key let:turn>
                    <li class=if turn.speaker == Speaker::Visitor { "turn turn-visitor" } else { "turn turn-model" }>
                        <span class="who">
                            {move || if turn.speaker == Speaker::Visitor { strings().you } else { strings().model }}
                        </span>
                        {if turn.speaker == Speaker::Visitor {
                            view! {
                                <div class="bubble">
                                    <p class="question">{move || turn.text.get()}</p>
                                    {move || turn.context.get().map(|context| view! {
                                        <p class="context"><span class="label">{strings().context}": "</span>{context}</p>
                                    })}
                                </div>
                            }
                            .into_any()
                        } else {
                            view! {
                                <p class="queue-status" hidden=move || turn.queued.get().is_none()>
                                    {move || turn.queued.get().map(|(position, wait)| queue_text(strings(), position, wait))}
                                </p>
                                <div
                                    class="bubble markdown"
                                    inner_html=move || markdown::to_safe_html(&turn.text.get(), strings().copy_code)
                                ></div>
                                {move || turn.stats.get().map(|stats| view! {
                                    <p class="answer-stats">
                                        <span>{stats_text(strings(), &stats)}</span>
                                        <button type="button" class="link-button" on:click=move |_| browser::copy_text(&turn.text.get_untracked())>
                                            {strings().copy_answer}
                                        </button>
                                    </p>
                                })}
                                <Feedback reply=turn turns conversation />
                                <details class="earlier-answers" hidden=move || turn.earlier.with(Vec::is_empty)>
                                    <summary>{move || format!("{} ({})", strings().earlier_answers, turn.earlier.with(Vec::len))}</summary>
                                    <ol>
                                        {move || turn.earlier.get().into_iter().map(|earlier| view! {
                                            <li class="bubble markdown" inner_html=markdown::to_safe_html(&earlier.text, strings().copy_code)></li>
                                        }).collect_view()}
                                    </ol>
                                </details>
                            }
                            .into_any()
                        }}
                    </li>
                </For>
            </ol>
            <div class="model-download" hidden=move || download.get().is_none()>
                {move || download.get().map(|(progress, started)| view! {
                    <progress max=progress.total.to_string() value=progress.done.to_string()></progress>
                    <p>{progress_text(strings(), &progress, started)}</p>
                })}
            </div>
            <div class="chat-error" role="alert">
                {move || failure.get().map(|error| view! {
                    <p>{failure_text(strings(), error.failure)}</p>
                    <details><summary>{strings().error_detail}</summary><p>{error.detail}</p></details>
                })}
            </div>
            <div class="conversation-actions" hidden=move || !has_question()>
                <button type="button" class="secondary regenerate" disabled=move || !can_act() on:click=regenerate>
                    {move || strings().regenerate}
                </button>
                <button type="button" class="secondary edit-last" disabled=move || !can_act() on:click=edit_last>
                    {move || strings().edit_last}
                </button>
                <button type="button" class="secondary clear" disabled=move || !can_act() on:click=clear>
                    {move || strings().clear}
                </button>
            </div>
            <div class="example-chips">
                <span class="label">{move || strings().try_example}</span>
                {examples
                    .into_iter()
                    .map(|example| {
                        let ChatExample { pregunta, contexto } = example;
                        let shown = pregunta.clone();
                        view! {
                            <button
                                type="button"
                                class="chip example-chip"
                                disabled=move || !can_act()
                                on:click=move |_| send(pregunta.clone(), contexto.clone())
                            >
                                {shown}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>
            <form class="composer" on:submit=move |event| {
                event.prevent_default();
                send(draft.get_untracked(), Some(context_draft.get_untracked()));
            }>
                <label for="pregunta" class="visually-hidden">{move || strings().chat_label}</label>
                <textarea
                    id="pregunta"
                    rows="2"
                    node_ref=question_box
                    placeholder=move || strings().chat_placeholder
                    prop:value=move || draft.get()
                    on:input=move |event| draft.set(event_target_value(&event))
                    on:keydown=move |event| {
                        if event.key() == "Enter" && !event.shift_key() {
                            event.prevent_default();
                            send(draft.get_untracked(), Some(context_draft.get_untracked()));
                        }
                    }
                ></textarea>
                <details class="context-field" prop:open=move || !context_draft.get().is_empty()>
                    <summary>{move || strings().add_context}</summary>
                    <label for="contexto" class="visually-hidden">{move || strings().context}</label>
                    <textarea
                        id="contexto"
                        rows="3"
                        prop:value=move || context_draft.get()
                        on:input=move |event| context_draft.set(event_target_value(&event))
                    ></textarea>
                </details>
                <div class="composer-buttons">
                    <button type="submit" class="primary" disabled=move || !can_act()>
                        {move || strings().send}
                    </button>
                    <button type="button" class="secondary stop" hidden=move || !busy.get() on:click=stop>
                        {move || strings().stop}
                    </button>
                </div>
            </form>
            <SettingsPanel settings=settings team_settings=team_settings failover=failover />
            <noscript>
                <p>{move || strings().chat_needs_js}</p>
            </noscript>
        </section>
    }
    // Erased: the page's view type would otherwise nest deeper than the compiler follows.
    .into_any()
}

/// An HTML number input's `min` and `max`: the bound the server checks.
fn input_range<T: Copy + Into<f64>>(bound: &limits::Bound<T>) -> (f64, f64) {
    (bound.min.into(), bound.max.into())
}

/// System prompt and sampling, starting from the team's `[chat]` values.
#[component]
fn SettingsPanel(
    settings: RwSignal<Settings>,
    team_settings: StoredValue<Settings>,
    failover: bool,
) -> impl IntoView {
    let strings = use_strings();
    let number_field = move |id: &'static str,
                             label: fn(&Strings) -> &'static str,
                             (min, max): (f64, f64),
                             step: &'static str,
                             read: fn(&Settings) -> f64,
                             write: fn(&mut Settings, f64)| {
        view! {
            <label for=id>{move || label(strings())}</label>
            <input
                id=id
                type="number"
                min=min
                max=max
                step=step
                prop:value=move || settings.with(|settings| read(settings).to_string())
                on:change=move |event| {
                    if let Ok(value) = event_target_value(&event).trim().replace(',', ".").parse::<f64>() {
                        settings.update(|settings| {
                            write(settings, value);
                            *settings = settings.clone().clamped();
                        });
                    }
                }
            />
        }
    };
    view! {
        <details class="chat-settings">
            <summary>{move || strings().settings}</summary>
            <div class="settings-grid">
                <label for="system-prompt">{move || strings().system_prompt}</label>
                <textarea
                    id="system-prompt"
                    rows="3"
                    prop:value=move || settings.with(|settings| settings.system_prompt.clone())
                    on:change=move |event| settings.update(|settings| settings.system_prompt = event_target_value(&event))
                ></textarea>
                {number_field("temperature", |strings| strings.temperature, input_range(&limits::TEMPERATURE), "0.1", |s| s.temperature, |s, v| s.temperature = v)}
                {number_field("top-p", |strings| strings.top_p, input_range(&limits::TOP_P), "0.05", |s| s.top_p, |s, v| s.top_p = v)}
                {number_field("max-tokens", |strings| strings.max_tokens, input_range(&limits::MAX_TOKENS), "1", |s| f64::from(s.max_tokens), |s, v| s.max_tokens = v.round() as u32)}
            </div>
            {failover.then(|| {
                let choice = move |backend: Backend, id: &'static str, label: fn(&Strings) -> &'static str| view! {
                    <label class="backend-choice" for=id>
                        <input
                            type="radio"
                            name="backend"
                            id=id
                            prop:checked=move || settings.with(|settings| settings.backend == backend)
                            on:change=move |_| settings.update(|settings| settings.backend = backend)
                        />
                        {move || label(strings())}
                    </label>
                };
                view! {
                    <fieldset class="backend">
                        <legend>{move || strings().backend}</legend>
                        {choice(Backend::Auto, "backend-auto", |strings| strings.backend_auto)}
                        {choice(Backend::Server, "backend-server", |strings| strings.backend_server)}
                        {choice(Backend::Browser, "backend-browser", |strings| strings.backend_browser)}
                    </fieldset>
                }
            })}
            <button type="button" class="secondary" on:click=move |_| settings.set(team_settings.get_value())>
                {move || strings().reset_settings}
            </button>
        </details>
    }
}
