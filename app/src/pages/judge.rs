//! The judges' page (`/jurado`): the rules checked against the Space's files, the facts of its
//! models, and every example run on the spot (beside the base model with `[compare]`).

use leptos::prelude::*;
use leptos_meta::Title;

use super::chat::{number, platform};
use super::{Footer, TopBar, loaded, use_strings};
use crate::conversation::{AnswerStats, SavedTurn, Settings, Speaker, StreamEvent, request_body};
use crate::facts::{ModelFacts, ModelRole};
use crate::i18n::Strings;
use crate::judge::{CheckGroup, Evaluation, JudgeReport, Said};
use crate::markdown;
use crate::space::{ChatDefaults, ChatExample};

fn judge_report() -> Result<JudgeReport, String> {
    #[cfg(feature = "ssr")]
    {
        use std::sync::Arc;
        let space = super::served_space()?;
        let facts = use_context::<Arc<dyn crate::facts::ServerFacts>>()
            .ok_or("the server provides no model facts")?;
        // The Space's README sits beside space.toml, in the folder the server runs in.
        let readme = std::fs::read_to_string("README.md").ok();
        // The Hub tells a Space its own `owner/name`; elsewhere it is not known.
        let space_id = std::env::var("SPACE_ID").ok();
        let mut report = crate::judge::build_report(
            &space,
            space_id.as_deref(),
            readme.as_deref(),
            facts.models(),
            |kind| facts.fetched_card(kind),
        );
        let (storage, opened) = facts.storage();
        report
            .groups
            .push(crate::judge::storage_group(&storage, &opened));
        Ok(report)
    }
    #[cfg(not(feature = "ssr"))]
    Err(super::RENDERED_BY_THE_SERVER.to_owned())
}

/// The seed every example runs with, on every model: the same question gets comparable answers.
const EXAMPLE_SEED: u64 = 600;

#[component]
pub fn JudgePage() -> impl IntoView {
    let strings = use_strings();
    view! {
        <Title text=move || strings().judge_title />
        <TopBar />
        <main id="contenido" class="page judge">
            {loaded(judge_report(), |report| view! { <Report report /> })}
        </main>
        <Footer />
    }
}

#[component]
fn Report(report: JudgeReport) -> impl IntoView {
    let strings = use_strings();
    let total: usize = report.groups.iter().map(|group| group.checks.len()).sum();
    let passed: usize = report
        .groups
        .iter()
        .map(|group| group.checks.iter().filter(|check| check.passed).count())
        .sum();
    let JudgeReport {
        title,
        edition,
        evaluations,
        groups,
        models,
        examples,
        chat,
        compare,
    } = report;
    view! {
        <p class="eyebrow"><a href="/">{move || strings().back_to_project}</a></p>
        <h1>{move || strings().judge_title}": "{title}</h1>
        <p>{move || strings().judge_intro}</p>
        <p class="edition">{move || strings().edition_label}": "<strong>{edition}</strong></p>
        <p class="checks-summary" data-passed=passed data-total=total>
            <strong>{format!("{passed} / {total}")}</strong>" "{move || strings().checks_passed}
        </p>
        {groups.into_iter().map(|group| view! { <Checklist group /> }).collect_view()}
        <Evaluations evaluations />
        <section class="section" aria-labelledby="datos-modelos">
            <h2 id="datos-modelos">{move || strings().model_facts}</h2>
            <div class="facts-grid">{models.into_iter().map(|facts| view! { <FactsTable facts /> }).collect_view()}</div>
        </section>
        <ExampleRunner examples chat compare />
    }
}

#[component]
fn Checklist(group: CheckGroup) -> impl IntoView {
    let strings = use_strings();
    let lang = super::use_lang();
    // The checklist is written in every language; the visitor's is shown.
    let in_lang = move |said: Said| move || said.pick(lang.get()).to_owned();
    view! {
        <section class="section checklist">
            <h2>{in_lang(group.title)}</h2>
            <p class="source">{move || strings().source_file}": "<code>{group.source}</code></p>
            <ul>
                {group
                    .checks
                    .into_iter()
                    .map(|check| {
                        let (passed, warning) = (check.passed, check.warning);
                        let (class, mark) = match (passed, warning) {
                            (true, _) => ("check check-pass", "✓"),
                            (false, true) => ("check check-warning", "!"),
                            (false, false) => ("check check-fail", "✗"),
                        };
                        let verdict = move || match (passed, warning) {
                            (true, _) => strings().check_passed,
                            (false, true) => strings().check_warning,
                            (false, false) => strings().check_failed,
                        };
                        view! {
                            <li class=class>
                                <span class="mark" aria-hidden="true">{mark}</span>
                                <span class="visually-hidden">{verdict}": "</span>
                                <strong>{in_lang(check.item)}</strong>
                                <span class="reason">{in_lang(check.reason)}</span>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </section>
    }
}

/// The model card's `model-index` results, as a table.
#[component]
fn Evaluations(evaluations: Vec<Evaluation>) -> impl IntoView {
    let strings = use_strings();
    (!evaluations.is_empty()).then(|| {
        view! {
            <section class="section" aria-labelledby="evaluaciones">
                <h2 id="evaluaciones">{move || strings().evaluations_title}</h2>
                <table class="evaluations">
                    <thead>
                        <tr>
                            {(0..4).map(|column| view! { <th scope="col">{move || strings().evaluation_columns[column]}</th> }).collect_view()}
                        </tr>
                    </thead>
                    <tbody>
                        {evaluations.into_iter().map(|row| view! {
                            <tr><td>{row.task}</td><td>{row.dataset}</td><td>{row.metric}</td><td>{row.value}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </section>
        }
    })
}

#[component]
fn FactsTable(facts: ModelFacts) -> impl IntoView {
    let strings = use_strings();
    let role = match facts.role {
        ModelRole::Server => 0,
        ModelRole::Compare => 1,
        ModelRole::Browser => 2,
    };
    let facts = StoredValue::new(facts);
    let rows = move || {
        let strings = strings();
        let facts = facts.get_value();
        let unknown = || "—".to_owned();
        let speed = |speed: Option<f64>| {
            speed.map_or_else(
                || strings.not_measured.to_owned(),
                |speed| format!("{speed:.1} tok/s"),
            )
        };
        let values = [
            facts.name.clone(),
            facts.status.clone(),
            facts.architecture.clone().unwrap_or_else(unknown),
            facts.parameters.map_or_else(unknown, |parameters| {
                format!("{} M", number(strings, parameters as f64 / 1e6))
            }),
            facts.quantization.clone().unwrap_or_else(unknown),
            facts
                .tensor_types
                .iter()
                .map(|(kind, count)| format!("{kind} × {count}"))
                .collect::<Vec<_>>()
                .join(", "),
            facts
                .context_length
                .map_or_else(unknown, |tokens| tokens.to_string()),
            facts.file_bytes.map_or_else(unknown, |bytes| {
                format!("{} MB", number(strings, bytes as f64 / 1e6))
            }),
            facts.sha256.clone().unwrap_or_else(unknown),
            facts.backend.clone(),
            facts.device.clone(),
            speed(facts.decode_tokens_per_second),
            speed(facts.aggregate_tokens_per_second),
            facts.answers.to_string(),
        ];
        strings
            .fact_labels
            .iter()
            .zip(values)
            .map(|(label, value)| view! { <tr><th scope="row">{*label}</th><td>{value}</td></tr> })
            .collect_view()
    };
    view! {
        <table class="facts">
            <caption>{move || strings().model_roles[role]}</caption>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// One model's answer to one example, as it streams.
#[derive(Clone, Copy)]
struct Run {
    text: RwSignal<String>,
    state: RwSignal<RunState>,
}

#[derive(Clone, Debug, PartialEq)]
enum RunState {
    Waiting,
    Generating,
    Done(AnswerStats),
    Failed(String),
}

impl Run {
    fn new() -> Self {
        Self {
            text: RwSignal::new(String::new()),
            state: RwSignal::new(RunState::Waiting),
        }
    }
}

// An island on the server always; in the browser, only in the bundle of every page.
#[cfg_attr(any(feature = "ssr", feature = "hydrate-all-pages"), island)]
#[cfg_attr(not(any(feature = "ssr", feature = "hydrate-all-pages")), component)]
fn ExampleRunner(examples: Vec<ChatExample>, chat: ChatDefaults, compare: bool) -> impl IntoView {
    super::island_start();
    let strings = use_strings();
    let settings = Settings::from(&chat);
    // One row per example: the team's model, and the base model when compared.
    let rows: Vec<(ChatExample, Run, Option<Run>)> = examples
        .into_iter()
        .map(|example| (example, Run::new(), compare.then(Run::new)))
        .collect();
    let rows = StoredValue::new(rows);
    let running = RwSignal::new(false);
    let interactive = RwSignal::new(false);
    Effect::new(move || interactive.set(true));
    let run_all = move |_| {
        if running.get_untracked() {
            return;
        }
        running.set(true);
        let settings = settings.clone();
        leptos::task::spawn_local(async move {
            for (example, team_run, base_run) in rows.get_value() {
                let turn = SavedTurn::new(
                    Speaker::Visitor,
                    example.pregunta.clone(),
                    example.contexto.clone(),
                );
                let runs = std::iter::once((team_run, None))
                    .chain(base_run.map(|run| (run, Some("compare"))));
                for (run, model) in runs {
                    run.text.set(String::new());
                    run.state.set(RunState::Generating);
                    let body =
                        request_body(std::slice::from_ref(&turn), &settings, EXAMPLE_SEED, model);
                    let on_event = move |event: StreamEvent| match &event {
                        StreamEvent::Text(_) | StreamEvent::Reasoning(_) => run
                            .text
                            .update(|answer| crate::conversation::append_answer(answer, &event)),
                        StreamEvent::Finished(stats) => {
                            run.state.set(RunState::Done(stats.clone()))
                        }
                        StreamEvent::Queued { .. } | StreamEvent::Nothing => {}
                    };
                    if let Err(error) =
                        platform::stream_answer(&body, &platform::Abort::new(), on_event).await
                    {
                        run.state.set(RunState::Failed(error.detail));
                    }
                }
            }
            running.set(false);
        });
    };
    let answer_view = move |run: Run, label: fn(&'static Strings) -> &'static str| {
        view! {
            <div class="example-answer" data-state=move || match run.state.get() {
                RunState::Waiting => "waiting",
                RunState::Generating => "generating",
                RunState::Done(_) => "done",
                RunState::Failed(_) => "failed",
            }>
                <h4>{move || label(strings())}</h4>
                <div class="bubble markdown" inner_html=move || markdown::answer_to_safe_html(&run.text.get(), strings())></div>
                <p class="answer-stats">
                    {move || match run.state.get() {
                        RunState::Waiting => strings().waiting.to_owned(),
                        RunState::Generating => strings().generating.to_owned(),
                        RunState::Done(stats) => format!("{} tokens · {:.1} tok/s · {}", stats.tokens, stats.tokens_per_second, stats.device),
                        RunState::Failed(detail) => detail,
                    }}
                </p>
            </div>
        }
    };
    view! {
        <section class="section examples-run" aria-labelledby="ejemplos">
            <h2 id="ejemplos">{move || strings().run_examples}</h2>
            <p>{move || strings().run_examples_intro}" (seed = "{EXAMPLE_SEED}")"</p>
            <button type="button" class="primary run-examples" disabled=move || !interactive.get() || running.get() on:click=run_all>
                {move || strings().run_examples}
            </button>
            <ol class="example-runs">
                {rows
                    .get_value()
                    .into_iter()
                    .map(|(example, team_run, base_run)| {
                        view! {
                            <li class="example-run">
                                <p class="question">{example.pregunta}</p>
                                {example.contexto.map(|context| view! { <p class="context">{context}</p> })}
                                <div class=if base_run.is_some() { "side-by-side" } else { "single" }>
                                    {answer_view(team_run, if base_run.is_some() { |strings| strings.fine_tuned_model } else { |strings| strings.model })}
                                    {base_run.map(|run| answer_view(run, |strings| strings.base_model))}
                                </div>
                            </li>
                        }
                    })
                    .collect_view()}
            </ol>
        </section>
    }
}
