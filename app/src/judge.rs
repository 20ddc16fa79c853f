//! What the judges' page (`/jurado`) reports: the hackathon's rules checked against space.toml,
//! the Space's README front matter and the model and dataset cards, and the facts of the models
//! that answer. Built on the server; the page only shows it.

use serde::{Deserialize, Serialize};

use crate::facts::ModelFacts;
use crate::space::{ChatDefaults, ChatExample};

/// One line of the checklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked, e.g. «Licencia en los metadatos».
    pub item: String,
    pub passed: bool,
    /// Why, in words a team can act on.
    pub reason: String,
}

impl Check {
    pub fn pass(item: &str, reason: &str) -> Self {
        Self { item: item.to_owned(), passed: true, reason: reason.to_owned() }
    }

    pub fn fail(item: &str, reason: &str) -> Self {
        Self { item: item.to_owned(), passed: false, reason: reason.to_owned() }
    }
}

/// Checks that read one source: space.toml, README.md or a card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckGroup {
    pub title: String,
    /// The file the checks read, for the team to open.
    pub source: String,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeReport {
    pub title: String,
    pub groups: Vec<CheckGroup>,
    pub models: Vec<ModelFacts>,
    pub examples: Vec<ChatExample>,
    /// The settings the examples run with (the team's `[chat]`).
    pub chat: ChatDefaults,
    /// Whether `[compare]` is set: the examples then also run on the base model.
    pub compare: bool,
}

#[cfg(feature = "ssr")]
pub use build::build_report;

#[cfg(feature = "ssr")]
mod build {
    use std::path::Path;

    use super::{Check, CheckGroup, JudgeReport};
    use crate::cards::{CardKind, check_card, front_matter_list};
    use crate::facts::ModelFacts;
    use crate::space::Space;

    /// What space.toml as shipped says, and no team's project does.
    const TEMPLATE_TEXT: &[&str] = &[
        "Escribe aquí",
        "Explica a quién ayuda",
        "Tu proyecto #Somos600M",
        "Tu nombre",
        "Nombre de otra persona",
        "tu-usuario",
        "otro-usuario",
        "tu-organizacion",
    ];

    fn template_left(text: &str) -> Option<&'static str> {
        TEMPLATE_TEXT.iter().copied().find(|marker| text.contains(marker))
    }

    /// A section of the project sheet: present, and more than the template's words.
    fn text_check(item: &str, key: &str, text: &str, min_chars: usize) -> Check {
        if let Some(marker) = template_left(text) {
            return Check::fail(item, &format!("`{key}` still has the template's text («{marker}…»): write your own"));
        }
        let chars = text.trim().chars().count();
        if chars < min_chars {
            return Check::fail(item, &format!("`{key}` has {chars} characters: explain it in at least {min_chars}"));
        }
        Check::pass(item, &format!("`{key}`: {chars} characters"))
    }

    fn project_checks(space: &Space) -> Vec<Check> {
        let project = &space.project;
        let mut checks = vec![
            text_check("Motivación", "project.motivation", &project.motivation, 80),
            text_check("Impacto", "project.impact", &project.impact, 80),
        ];
        let future = project.future.join("\n");
        checks.push(match template_left(&future) {
            Some(marker) => Check::fail("Ideas de futuro", &format!("`project.future` still has the template's text («{marker}…»)")),
            None => Check::pass("Ideas de futuro", &format!("{} ideas in `project.future`", project.future.len())),
        });
        let goals: Vec<String> = project.ods.iter().map(|number| format!("ODS {} ({})", number.goal().number, number.goal().name_es)).collect();
        checks.push(Check::pass("ODS", &goals.join(", ")));
        for (item, key, repos) in [("Conjunto(s) de datos enlazado(s)", "datasets", &space.datasets), ("Modelo(s) enlazado(s)", "models", &space.models)] {
            let ids: Vec<&str> = repos.iter().map(|repo| repo.id.as_str()).collect();
            checks.push(match ids.iter().find_map(|id| template_left(id)) {
                Some(marker) => Check::fail(item, &format!("`[[{key}]]` still names the template's «{marker}»: put your Hub ids")),
                None => Check::pass(item, &ids.join(", ")),
            });
        }
        let team: Vec<String> = space.team.iter().map(|member| format!("{} ({})", member.name, member.hub.as_str())).collect();
        checks.push(match space.team.iter().find_map(|member| template_left(&member.name).or_else(|| template_left(member.hub.as_str()))) {
            Some(marker) => Check::fail("Equipo", &format!("`[[team]]` still has the template's «{marker}»: list every member")),
            None => Check::pass("Equipo", &team.join(", ")),
        });
        checks
    }

    /// The Space's README front matter names the same datasets and models as space.toml (the
    /// Hub links the Space to them from it).
    fn readme_checks(space: &Space, readme: Option<&str>) -> Vec<Check> {
        let Some(readme) = readme else {
            return vec![Check::fail("README.md", "README.md was not found in the folder the server runs in; the Space's README (with its front matter) belongs there")];
        };
        let mut checks = Vec::new();
        for (item, key, repos) in [("Datasets en README.md", "datasets", &space.datasets), ("Modelos en README.md", "models", &space.models)] {
            let listed = front_matter_list(readme, key);
            let missing: Vec<&str> = repos.iter().map(|repo| repo.id.as_str()).filter(|id| !listed.iter().any(|name| name == id)).collect();
            checks.push(if missing.is_empty() {
                Check::pass(item, &format!("the front matter's `{key}:` names every one of space.toml"))
            } else {
                Check::fail(item, &format!("the front matter's `{key}:` lacks {} (listed in space.toml): add them", missing.join(", ")))
            });
        }
        checks
    }

    fn card_group(title: &str, kind: CardKind, path: Option<&Path>, key: &str, expected_datasets: &[&str]) -> CheckGroup {
        let (source, checks) = match path {
            None => (
                "space.toml".to_owned(),
                vec![Check::fail(title, &format!("no card given: copy the repository's README.md next to space.toml and set `[cards] {key} = \"…\"`"))],
            ),
            Some(path) => {
                let source = path.display().to_string();
                match std::fs::read_to_string(path) {
                    Ok(text) => (source, check_card(kind, &text, expected_datasets)),
                    Err(error) => (source.clone(), vec![Check::fail(title, &format!("cannot read {source} ({error}); fix `[cards] {key}` in space.toml"))]),
                }
            }
        };
        CheckGroup { title: title.to_owned(), source, checks }
    }

    /// The whole report; `readme` is the Space's README.md, if found.
    pub fn build_report(space: &Space, readme: Option<&str>, models: Vec<ModelFacts>) -> JudgeReport {
        let datasets: Vec<&str> = space.datasets.iter().map(|repo| repo.id.as_str()).collect();
        let groups = vec![
            CheckGroup { title: "Ficha del proyecto".into(), source: "space.toml".into(), checks: project_checks(space) },
            CheckGroup { title: "Enlaces en el README del Space".into(), source: "README.md".into(), checks: readme_checks(space, readme) },
            card_group("Tarjeta del modelo", CardKind::Model, space.cards.model.as_deref(), "model", &datasets),
            card_group("Tarjeta del conjunto de datos", CardKind::Dataset, space.cards.dataset.as_deref(), "dataset", &[]),
        ];
        JudgeReport {
            title: space.project.title.clone(),
            groups,
            models,
            examples: space.examples.clone(),
            chat: space.chat.clone(),
            compare: space.compare.is_some(),
        }
    }
}
