//! The corpus page (`/corpus?pagina=N`): the schema report, bar charts drawn as SVG on the
//! server (readable without JavaScript), and a page of rows with plain links between pages.

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::chat::number;
use super::{Footer, TopBar, loaded, use_strings};
use crate::corpus::{COLUMNS, Chart, CorpusView, REQUIRED};

/// Page `page` of the team's corpus, `None` when space.toml names no dataset.
fn corpus_page(page: usize) -> Result<Option<CorpusView>, String> {
    #[cfg(feature = "ssr")]
    {
        let space = super::served_space()?;
        let Some(dataset) = &space.dataset else {
            return Ok(None);
        };
        let corpus =
            crate::corpus::load_cached(&dataset.file).map_err(|error| error.to_string())?;
        Ok(Some(corpus.view(page)))
    }
    #[cfg(not(feature = "ssr"))]
    {
        let _ = page;
        Err(super::RENDERED_BY_THE_SERVER.to_owned())
    }
}

#[component]
pub fn CorpusPage() -> impl IntoView {
    let strings = use_strings();
    let query = use_query_map();
    let page = query.with_untracked(|query| {
        query
            .get("pagina")
            .and_then(|page| page.parse().ok())
            .unwrap_or(1usize)
    });
    view! {
        <Title text=move || strings().corpus_title />
        <TopBar />
        <main id="contenido" class="page corpus-page">
            <p class="eyebrow"><a href="/">{move || strings().back_to_project}</a></p>
            <h1>{move || strings().corpus_title}</h1>
            {loaded(corpus_page(page), move |view| match view {
                Some(view) => Either::Left(view! { <Report view /> }),
                None => Either::Right(view! { <p>{move || strings().no_dataset}</p> }),
            })}
        </main>
        <Footer />
    }
}

#[component]
fn Report(view: CorpusView) -> impl IntoView {
    let strings = use_strings();
    let CorpusView {
        file,
        rows,
        load_ms,
        missing_columns,
        unknown_columns,
        problems,
        charts,
        page,
        pages,
        first_row,
        sample,
    } = view;
    let missing = move || {
        let strings = strings();
        let named: Vec<String> = missing_columns
            .iter()
            .map(|column| {
                if REQUIRED.contains(&column.as_str()) {
                    format!("{column} {}", strings.missing_required)
                } else {
                    column.clone()
                }
            })
            .collect();
        if named.is_empty() {
            strings.nothing_found.to_owned()
        } else {
            named.join(", ")
        }
    };
    let unknown = move || {
        if unknown_columns.is_empty() {
            strings().nothing_found.to_owned()
        } else {
            unknown_columns.join(", ")
        }
    };
    let problem_rows = move || {
        problems
            .iter()
            .zip(strings().problem_labels)
            .map(|(problem, label)| {
                let detail = if problem.count == 0 {
                    strings().nothing_found.to_owned()
                } else {
                    format!(
                        "{} {} {}",
                        problem.count,
                        strings().rows_affected,
                        problem.examples.join(" · ")
                    )
                };
                view! {
                    <tr class=format!("problem problem-{}", problem.kind) data-count=problem.count>
                        <th scope="row">{label}</th>
                        <td>{detail}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <p class="corpus-summary" data-rows=rows>
            <strong>{rows}</strong>" "{move || strings().corpus_rows}" "<code>{file}</code>" · "
            {move || strings().corpus_read_in}" "{move || number(strings(), load_ms / 1000.0)}" s"
        </p>
        <section class="section" aria-labelledby="esquema">
            <h2 id="esquema">{move || strings().schema_report}</h2>
            <table class="facts schema-report">
                <tbody>
                    <tr><th scope="row">{move || strings().missing_columns}</th><td class="missing-columns">{missing}</td></tr>
                    <tr><th scope="row">{move || strings().unknown_columns}</th><td class="unknown-columns">{unknown}</td></tr>
                    {problem_rows}
                </tbody>
            </table>
        </section>
        <section class="section" aria-labelledby="distribucion">
            <h2 id="distribucion">{move || strings().distribution}</h2>
            <div class="charts">{charts.into_iter().map(|chart| view! { <BarChart chart total=rows /> }).collect_view()}</div>
        </section>
        <section class="section" aria-labelledby="muestra">
            <h2 id="muestra">{move || strings().sample_rows}</h2>
            <p>{move || format!("{} {page} {} {pages}", strings().page_word, strings().of_word)}</p>
            <div class="table-scroll">
                <table class="sample">
                    <thead><tr><th scope="col">"#"</th>{COLUMNS.map(|column| view! { <th scope="col">{column}</th> }).collect_view()}</tr></thead>
                    <tbody>
                        {sample
                            .into_iter()
                            .enumerate()
                            .map(|(offset, row)| view! {
                                <tr><td>{first_row + offset}</td>{row.into_iter().map(|value| view! { <td>{value}</td> }).collect_view()}</tr>
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </div>
            <nav class="pager" aria-label=move || strings().sample_rows>
                {(page > 1).then(|| view! { <a rel="prev" href=format!("/corpus?pagina={}", page - 1)>{move || strings().previous_page}</a> })}
                {(page < pages).then(|| view! { <a rel="next" href=format!("/corpus?pagina={}", page + 1)>{move || strings().next_page}</a> })}
            </nav>
        </section>
    }
}

const BAR_HEIGHT: usize = 22;
const LABEL_WIDTH: f64 = 130.0;
const CHART_WIDTH: f64 = 420.0;

/// Horizontal bars, one per value, with the value's name and count written beside them.
#[component]
fn BarChart(chart: Chart, total: usize) -> impl IntoView {
    let strings = use_strings();
    let mut bars = chart.bars;
    if chart.others > 0 {
        bars.push((strings().other_values.to_owned(), chart.others));
    }
    let largest = bars
        .iter()
        .map(|(_, count)| *count)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let height = bars.len().max(1) * BAR_HEIGHT;
    let title_id = format!("grafico-{}", chart.column);
    let column = chart.column.clone();
    let bar_room = CHART_WIDTH - LABEL_WIDTH - 70.0;
    view! {
        <figure class="chart" data-column=chart.column.clone()>
            <figcaption id=title_id.clone()>{move || format!("{} {column}", strings().rows_by)}</figcaption>
            <svg
                role="img"
                aria-labelledby=title_id
                viewBox=format!("0 0 {CHART_WIDTH} {height}")
                width="100%"
                preserveAspectRatio="xMinYMin meet"
            >
                {bars
                    .into_iter()
                    .enumerate()
                    .map(|(index, (value, count))| {
                        let y = index * BAR_HEIGHT;
                        let width = (count as f64 / largest * bar_room).max(1.0);
                        let share = if total > 0 { count as f64 * 100.0 / total as f64 } else { 0.0 };
                        view! {
                            <g class="bar" data-value=value.clone() data-count=count>
                                <title>{format!("{value}: {count} ({share:.1} %)")}</title>
                                <text x=LABEL_WIDTH - 6.0 y=y + 15 text-anchor="end">{value.clone()}</text>
                                <rect x=LABEL_WIDTH y=y + 4 width=format!("{width:.1}") height=BAR_HEIGHT - 8 rx="3"></rect>
                                <text x=LABEL_WIDTH + width + 6.0 y=y + 15>{count}</text>
                            </g>
                        }
                    })
                    .collect_view()}
            </svg>
        </figure>
    }
}
