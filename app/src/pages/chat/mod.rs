//! The chat: the visitor's question goes to the server's OpenAI-compatible API and the answer
//! streams in token by token, rendered as Markdown in which nothing the model writes becomes
//! markup. The conversation and settings are kept in the browser across reloads.

mod answerer;
mod feedback;
pub(super) mod platform;
mod session;

use leptos::either::Either;
use leptos::prelude::*;

use super::use_strings;
use crate::conversation::{
    AnswerMeta, AnswerStats, BackendChoice, EarlierAnswer, Failure, SavedTurn, Settings, Speaker,
};
use crate::i18n::Strings;
use crate::markdown;
use crate::space::{BrowserSettings, ChatDefaults, ChatExample};
use feedback::Feedback;
use session::Session;
use wire::limits;
use wire::worker::ThreadLimit;

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
    platform::origin()
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
    let place = if stats.device == wire::device::BROWSER {
        strings.in_browser
    } else {
        strings.on_server
    };
    let threads = stats
        .threads
        .map(|threads| {
            format!(
                " · {threads} {}",
                strings.threads_unit[usize::from(threads != 1)]
            )
        })
        .unwrap_or_default();
    let model = if stats.model.is_empty() {
        String::new()
    } else {
        format!(" · {}", stats.model)
    };
    format!(
        "{} tokens · {} tok/s{model} · {place} ({}{threads})",
        stats.tokens,
        number(strings, stats.tokens_per_second),
        stats.device.to_uppercase()
    )
}

/// Why the browser used fewer threads than the visitor's setting, shown under the answer.
fn thread_limit_text(strings: &Strings, limit: &ThreadLimit) -> String {
    match limit {
        ThreadLimit::NotIsolated => strings.one_thread_not_isolated.to_owned(),
        ThreadLimit::StartFailed { message } => {
            format!("{} {message}", strings.one_thread_start_failed)
        }
    }
}

fn notice_text(strings: &Strings, problem: &platform::ServerProblem, failover: bool) -> String {
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
fn progress_text(strings: &Strings, progress: &platform::Progress, started_ms: f64) -> String {
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
    let seconds = (platform::now_ms() - started_ms) / 1000.0;
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

#[island]
pub fn Chat(
    examples: Vec<ChatExample>,
    defaults: ChatDefaults,
    browser: BrowserSettings,
) -> impl IntoView {
    super::island_start();
    let strings = use_strings();
    let team_settings = Settings::from(&defaults);
    let chat = Session::new(team_settings.clone(), &browser);
    chat.restore_and_keep();
    // Why the server cannot answer, told as soon as the page is interactive.
    let server_notice = RwSignal::new(None::<platform::ServerProblem>);
    Effect::new(move || {
        leptos::task::spawn_local(
            async move { server_notice.set(platform::server_problem().await) },
        )
    });
    let failover = chat.failover;
    let view = view! {
        <section class="section chat" id="chat" aria-labelledby="chat-titulo">
            <h2 id="chat-titulo">{move || strings().chat}</h2>
            <p class="server-notice" role="status" hidden=move || server_notice.with(Option::is_none)>
                {move || server_notice.get().map(|problem| notice_text(strings(), &problem, failover))}
            </p>
            <ol class="turns" aria-live="polite" on:click=move |event| platform::copy_code_clicked(&event, strings().copied)>
                <For each=move || chat.turns.get() key=|turn| turn.key let:turn>
                    <TurnItem turn chat />
                </For>
            </ol>
            <DownloadProgress download=chat.download />
            <div class="chat-error" role="alert">
                {move || chat.failure.get().map(|error| view! {
                    <p>{failure_text(strings(), error.failure)}</p>
                    <details><summary>{strings().error_detail}</summary><p>{error.detail}</p></details>
                })}
            </div>
            <ConversationActions chat />
            <ExampleChips examples chat />
            <Composer chat />
            <SettingsPanel settings=chat.settings team_settings=StoredValue::new(team_settings) failover />
            <noscript>
                <p>{move || strings().chat_needs_js}</p>
            </noscript>
        </section>
    };
    // Erased on the server, where the page's view type would otherwise nest deeper than the
    // compiler follows; not in the browser, where an erased view brings every way of
    // rendering one (async hydration too) into the bundle.
    #[cfg(feature = "ssr")]
    let view = view.into_any();
    view
}

/// One message: the visitor's question, or the model's answer with its stats, feedback and
/// the answers a regeneration replaced.
#[component]
fn TurnItem(turn: Turn, chat: Session) -> impl IntoView {
    let strings = use_strings();
    let visitor = turn.speaker == Speaker::Visitor;
    let body = if visitor {
        Either::Left(view! {
            <div class="bubble">
                <p class="question">{move || turn.text.get()}</p>
                {move || turn.context.get().map(|context| view! {
                    <p class="context"><span class="label">{strings().context}": "</span>{context}</p>
                })}
            </div>
        })
    } else {
        Either::Right(view! {
            <p class="queue-status" hidden=move || turn.queued.get().is_none()>
                {move || turn.queued.get().map(|(position, wait)| queue_text(strings(), position, wait))}
            </p>
            <div
                class="bubble markdown"
                inner_html=move || markdown::answer_to_safe_html(&turn.text.get(), strings())
            ></div>
            {move || turn.stats.get().map(|stats| view! {
                <p class="answer-stats">
                    <span>{stats_text(strings(), &stats)}</span>
                    <button type="button" class="link-button" on:click=move |_| platform::copy_text(&turn.text.get_untracked())>
                        {strings().copy_answer}
                    </button>
                </p>
                {stats.thread_limit.map(|limit| view! {
                    <p class="answer-stats thread-limit">{thread_limit_text(strings(), &limit)}</p>
                })}
            })}
            <Feedback reply=turn turns=chat.turns conversation=chat.conversation />
            <EarlierAnswers earlier=turn.earlier />
        })
    };
    // Erased on the server only, as the chat itself is (see `Chat`).
    #[cfg(feature = "ssr")]
    let body = body.into_any();
    view! {
        <li class=if visitor { "turn turn-visitor" } else { "turn turn-model" }>
            <span class="who">
                {move || if visitor { strings().you } else { strings().model }}
            </span>
            {body}
        </li>
    }
}

#[component]
fn EarlierAnswers(earlier: RwSignal<Vec<EarlierAnswer>>) -> impl IntoView {
    let strings = use_strings();
    view! {
        <details class="earlier-answers" hidden=move || earlier.with(Vec::is_empty)>
            <summary>{move || format!("{} ({})", strings().earlier_answers, earlier.with(Vec::len))}</summary>
            <ol>
                {move || earlier.get().into_iter().map(|earlier| view! {
                    <li class="bubble markdown" inner_html=markdown::answer_to_safe_html(&earlier.text, strings())></li>
                }).collect_view()}
            </ol>
        </details>
    }
}

#[component]
fn DownloadProgress(download: RwSignal<Option<(platform::Progress, f64)>>) -> impl IntoView {
    let strings = use_strings();
    view! {
        <div class="model-download" hidden=move || download.get().is_none()>
            {move || download.get().map(|(progress, started)| view! {
                <progress max=progress.total.to_string() value=progress.done.to_string()></progress>
                <p>{progress_text(strings(), &progress, started)}</p>
            })}
        </div>
    }
}

#[component]
fn ConversationActions(chat: Session) -> impl IntoView {
    let strings = use_strings();
    view! {
        <div class="conversation-actions" hidden=move || !chat.has_question()>
            <button type="button" class="secondary regenerate" disabled=move || !chat.can_act() on:click=move |_| chat.regenerate()>
                {move || strings().regenerate}
            </button>
            <button type="button" class="secondary edit-last" disabled=move || !chat.can_act() on:click=move |_| chat.edit_last()>
                {move || strings().edit_last}
            </button>
            <button type="button" class="secondary clear" disabled=move || !chat.can_act() on:click=move |_| chat.clear()>
                {move || strings().clear}
            </button>
        </div>
    }
}

#[component]
fn ExampleChips(examples: Vec<ChatExample>, chat: Session) -> impl IntoView {
    let strings = use_strings();
    view! {
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
                            disabled=move || !chat.can_act()
                            on:click=move |_| chat.send(pregunta.clone(), contexto.clone())
                        >
                            {shown}
                        </button>
                    }
                })
                .collect_view()}
        </div>
    }
}

/// The question box, the optional context it refers to, send and stop.
#[component]
fn Composer(chat: Session) -> impl IntoView {
    let strings = use_strings();
    let Session {
        draft,
        context_draft,
        ..
    } = chat;
    let send = move || chat.send(draft.get_untracked(), Some(context_draft.get_untracked()));
    view! {
        <form class="composer" on:submit=move |event| {
            event.prevent_default();
            send();
        }>
            <label for="pregunta" class="visually-hidden">{move || strings().chat_label}</label>
            <textarea
                id="pregunta"
                rows="2"
                node_ref=chat.question_box
                placeholder=move || strings().chat_placeholder
                prop:value=move || draft.get()
                on:input=move |event| draft.set(event_target_value(&event))
                on:keydown=move |event| {
                    if event.key() == "Enter" && !event.shift_key() {
                        event.prevent_default();
                        send();
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
                <button type="submit" class="primary" disabled=move || !chat.can_act()>
                    {move || strings().send}
                </button>
                <button type="button" class="secondary stop" hidden=move || !chat.busy.get() on:click=move |_| chat.stop()>
                    {move || strings().stop}
                </button>
            </div>
        </form>
    }
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
                             write: fn(&mut Settings, f64),
                             help: Option<fn(&Strings) -> &'static str>| {
        let help_id = format!("{id}-help");
        view! {
            <label for=id>{move || label(strings())}</label>
            <input
                id=id
                type="number"
                min=min
                max=max
                step=step
                aria-describedby=help.map(|_| help_id.clone())
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
            {help.map(|help| view! { <p id=help_id class="hint">{move || help(strings())}</p> })}
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
                {number_field("temperature", |strings| strings.temperature, input_range(&limits::TEMPERATURE), "0.1", |s| s.temperature, |s, v| s.temperature = v, None)}
                {number_field("top-p", |strings| strings.top_p, input_range(&limits::TOP_P), "0.05", |s| s.top_p, |s, v| s.top_p = v, None)}
                {number_field("max-tokens", |strings| strings.max_tokens, input_range(&limits::MAX_TOKENS), "1", |s| f64::from(s.max_tokens), |s, v| s.max_tokens = v.round() as u32, None)}
                {failover.then(|| number_field(
                    "browser-threads",
                    |strings| strings.browser_threads,
                    input_range(&limits::BROWSER_THREADS),
                    "1",
                    |s| f64::from(s.browser_threads.unwrap_or_else(platform::default_threads)),
                    |s, v| s.browser_threads = Some(v.round() as u32),
                    Some(|strings| strings.browser_threads_help),
                ))}
            </div>
            {failover.then(|| {
                let choice = move |backend: BackendChoice, id: &'static str, label: fn(&Strings) -> &'static str| view! {
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
                        {choice(BackendChoice::Auto, "backend-auto", |strings| strings.backend_auto)}
                        {choice(BackendChoice::Server, "backend-server", |strings| strings.backend_server)}
                        {choice(BackendChoice::Browser, "backend-browser", |strings| strings.backend_browser)}
                    </fieldset>
                }
            })}
            <button type="button" class="secondary" on:click=move |_| settings.set(team_settings.get_value())>
                {move || strings().reset_settings}
            </button>
        </details>
    }
}
