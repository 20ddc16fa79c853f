//! The project sheet (`/`): what the hackathon asks every demo to show, readable without
//! JavaScript because the server renders it whole.

use leptos::prelude::*;
use leptos_meta::{Meta, Title};

use super::api_usage::ApiUsage;
use super::chat::Chat;
use super::{Footer, TopBar, loaded, use_strings};
use crate::i18n::Lang;
use crate::space::{HubRepo, Member, OdsNumber, Space, paragraphs};

#[component]
pub fn ProjectPage() -> impl IntoView {
    view! {
        <TopBar />
        {loaded(super::served_space(), |space| view! { <ProjectSheet space=Space::clone(&space) /> })}
        <Footer />
    }
}

#[component]
fn ProjectSheet(space: Space) -> impl IntoView {
    let strings = use_strings();
    let project = space.project;
    // The API examples ask what the first chat example asks.
    let api_question = space.examples.first().map_or_else(
        || "¿Qué puedes hacer?".to_owned(),
        |example| example.pregunta.clone(),
    );
    let future = project.future;
    let video = project.video;
    let team_names = space
        .team
        .iter()
        .map(|member| member.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    view! {
        <Title text=project.title.clone() />
        <Meta name="description" content=project.summary.clone() />
        // The chat comes right after the title: in the first screen of a phone, and beside the
        // sheet on a wide screen (style.css places it), where the public comes to talk to the
        // model and judges read on.
        <main id="contenido" class="page project">
            <section class="hero">
                <p class="eyebrow">"#Somos600M"</p>
                <h1>{project.title}</h1>
                <p class="summary">{project.summary}</p>
                <ul class="chips" aria-label=move || strings().languages>
                    {project
                        .languages
                        .iter()
                        .map(|code| {
                            let variety = code.variety();
                            let lang = super::use_lang();
                            view! {
                                <li class="chip" title=variety.code>
                                    {move || match lang.get() {
                                        Lang::Es => variety.name_es,
                                        Lang::En => variety.name_en,
                                        Lang::Pt => variety.name_pt,
                                    }}
                                </li>
                            }
                        })
                        .collect_view()}
                    <li class="chip chip-license">
                        {move || strings().license}": "{project.license.as_str().to_owned()}
                    </li>
                </ul>
                <a class="jump-to-chat" href="#chat">{move || strings().chat}</a>
            </section>
            <div class="chat-column">
                <Chat examples=space.examples defaults=space.chat browser=space.browser />
            </div>
            <div class="sheet">
            <Section id="motivacion" title=move || strings().motivation>
                <Paragraphs text=project.motivation />
            </Section>
            <Section id="impacto" title=move || strings().impact>
                <Paragraphs text=project.impact />
            </Section>
            <Section id="futuro" title=move || strings().future>
                <ul class="future">
                    {future.into_iter().map(|idea| view! { <li>{idea}</li> }).collect_view()}
                </ul>
            </Section>
            <Section id="ods" title=move || strings().ods>
                <ul class="ods-list">
                    {project.ods.into_iter().map(|number| view! { <OdsBadge number /> }).collect_view()}
                </ul>
            </Section>
            <Section id="datos" title=move || strings().datasets>
                <RepoCards repos=space.datasets is_dataset=true />
            </Section>
            <Section id="modelos" title=move || strings().models>
                <RepoCards repos=space.models is_dataset=false />
            </Section>
            <Section id="equipo" title=move || strings().team>
                {video.map(|video| view! {
                    <p class="team-video">
                        <a href=video.as_str().to_owned() rel="noopener">{move || strings().team_video}</a>
                        ": "{team_names.clone()}
                    </p>
                })}
                <ul class="cards team">
                    {space.team.into_iter().map(|member| view! { <MemberCard member /> }).collect_view()}
                </ul>
            </Section>
            <ApiUsage question=api_question />
            </div>
        </main>
    }
}

#[component]
fn Section(
    id: &'static str,
    title: impl Fn() -> &'static str + Send + Sync + 'static,
    children: Children,
) -> impl IntoView {
    let heading_id = format!("{id}-titulo");
    let labelled_by = heading_id.clone();
    view! {
        <section class="section" id=id aria-labelledby=labelled_by>
            <h2 id=heading_id>{title}</h2>
            {children()}
        </section>
    }
}

#[component]
fn Paragraphs(text: String) -> impl IntoView {
    paragraphs(&text)
        .into_iter()
        .map(|paragraph| view! { <p>{paragraph}</p> })
        .collect_view()
}

#[component]
fn OdsBadge(number: OdsNumber) -> impl IntoView {
    let strings = use_strings();
    let lang = super::use_lang();
    let goal = number.goal();
    let style = format!(
        "--ods-color: {}; --ods-text: {}",
        goal.color,
        goal.text_color()
    );
    view! {
        <li class="ods" style=style>
            <span class="ods-number">
                <span class="ods-prefix">{move || strings().ods_prefix}</span>
                " "
                <span class="ods-digits">{goal.number}</span>
            </span>
            <span class="ods-name">
                {move || match lang.get() {
                    Lang::Es => goal.name_es,
                    Lang::En => goal.name_en,
                    Lang::Pt => goal.name_pt,
                }}
            </span>
        </li>
    }
}

#[component]
fn RepoCards(repos: Vec<HubRepo>, is_dataset: bool) -> impl IntoView {
    let strings = use_strings();
    view! {
        <ul class="cards">
            {repos
                .into_iter()
                .map(|repo| {
                    let url = if is_dataset { repo.dataset_url() } else { repo.model_url() };
                    let action = move || {
                        if is_dataset { strings().open_dataset } else { strings().open_model }
                    };
                    view! {
                        <li class="card">
                            <h3 class="card-title">
                                <a href=url rel="noopener" aria-label=move || {
                                    format!("{} {}", action(), repo.id.as_str())
                                }>{repo.id.as_str().to_owned()}</a>
                            </h3>
                            <p>{repo.description}</p>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
}

#[component]
fn MemberCard(member: Member) -> impl IntoView {
    let strings = use_strings();
    let hub_url = member.hub_url();
    let initial = member
        .name
        .chars()
        .next()
        .map(|c| c.to_uppercase().to_string())
        .unwrap_or_default();
    view! {
        <li class="card member">
            <span class="avatar" aria-hidden="true">{initial}</span>
            <div>
                <h3 class="card-title">{member.name}</h3>
                <p class="role">{member.role}</p>
                <ul class="links">
                    <li>
                        <a href=hub_url rel="noopener">
                            <span class="visually-hidden">{move || strings().hub_profile}" "</span>
                            "@"{member.hub.as_str().to_owned()}
                        </a>
                    </li>
                    {member
                        .links
                        .into_iter()
                        .map(|link| {
                            let label = link_label(link.as_str());
                            view! {
                                <li>
                                    <a href=link.as_str().to_owned() rel="noopener">{label}</a>
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
            </div>
        </li>
    }
}

/// A short, readable label for a personal link: its host and path without the scheme.
fn link_label(link: &str) -> String {
    let without_scheme = link.split_once("://").map_or(link, |(_, rest)| rest);
    without_scheme
        .trim_end_matches('/')
        .trim_start_matches("www.")
        .to_owned()
}
