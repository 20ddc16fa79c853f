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
    /// Not met, but a recommendation rather than a rule (shown as a warning).
    #[serde(default)]
    pub warning: bool,
    /// Why, in words a team can act on.
    pub reason: String,
}

impl Check {
    pub fn pass(item: &str, reason: &str) -> Self {
        Self {
            item: item.to_owned(),
            passed: true,
            warning: false,
            reason: reason.to_owned(),
        }
    }

    pub fn fail(item: &str, reason: &str) -> Self {
        Self {
            item: item.to_owned(),
            passed: false,
            warning: false,
            reason: reason.to_owned(),
        }
    }

    pub fn warn(item: &str, reason: &str) -> Self {
        Self {
            warning: true,
            ..Self::fail(item, reason)
        }
    }
}

/// One result of a model card's `model-index`, as the judges' page lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub task: String,
    pub dataset: String,
    pub metric: String,
    pub value: String,
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
    /// The edition whose rules apply (`[project] edition`), by name.
    pub edition: String,
    /// The model card's evaluation results.
    pub evaluations: Vec<Evaluation>,
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

    use super::{Check, CheckGroup, Evaluation, JudgeReport};
    use crate::cards::{CardKind, check_card, emissions, evaluations, front_matter_list};
    use crate::facts::{FetchedCard, ModelFacts};
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
        TEMPLATE_TEXT
            .iter()
            .copied()
            .find(|marker| text.contains(marker))
    }

    /// A section of the project sheet: present, and more than the template's words.
    fn text_check(item: &str, key: &str, text: &str, min_chars: usize) -> Check {
        if let Some(marker) = template_left(text) {
            return Check::fail(
                item,
                &format!(
                    "`{key}` aún tiene el texto de la plantilla («{marker}…»): escribe el vuestro"
                ),
            );
        }
        let chars = text.trim().chars().count();
        if chars < min_chars {
            return Check::fail(
                item,
                &format!("`{key}` tiene {chars} caracteres: explícalo en al menos {min_chars}"),
            );
        }
        Check::pass(item, &format!("`{key}`: {chars} caracteres"))
    }

    fn project_checks(space: &Space) -> Vec<Check> {
        let project = &space.project;
        let mut checks = vec![
            text_check("Motivación", "project.motivation", &project.motivation, 80),
            text_check("Impacto", "project.impact", &project.impact, 80),
        ];
        let future = project.future.join("\n");
        checks.push(match template_left(&future) {
            Some(marker) => Check::fail(
                "Ideas de futuro",
                &format!("`project.future` aún tiene el texto de la plantilla («{marker}…»)"),
            ),
            None => Check::pass(
                "Ideas de futuro",
                &format!("{} ideas en `project.future`", project.future.len()),
            ),
        });
        let goals: Vec<String> = project
            .ods
            .iter()
            .map(|number| format!("ODS {} ({})", number.goal().number, number.goal().name_es))
            .collect();
        checks.push(Check::pass("ODS", &goals.join(", ")));
        for (item, key, repos) in [
            (
                "Conjunto(s) de datos enlazado(s)",
                "datasets",
                &space.datasets,
            ),
            ("Modelo(s) enlazado(s)", "models", &space.models),
        ] {
            let ids: Vec<&str> = repos.iter().map(|repo| repo.id.as_str()).collect();
            checks.push(match ids.iter().find_map(|id| template_left(id)) {
                Some(marker) => Check::fail(item, &format!("`[[{key}]]` aún nombra «{marker}», de la plantilla: pon vuestros identificadores del Hub")),
                None => Check::pass(item, &ids.join(", ")),
            });
        }
        let team: Vec<String> = space
            .team
            .iter()
            .map(|member| format!("{} ({})", member.name, member.hub.as_str()))
            .collect();
        checks.push(match space.team.iter().find_map(|member| template_left(&member.name).or_else(|| template_left(member.hub.as_str()))) {
            Some(marker) => Check::fail("Equipo", &format!("`[[team]]` aún tiene «{marker}», de la plantilla: nombra a cada persona del equipo")),
            None => Check::pass("Equipo", &team.join(", ")),
        });
        checks
    }

    /// The Space's README front matter names the same datasets and models as space.toml (the
    /// Hub links the Space to them from it).
    fn readme_checks(space: &Space, readme: Option<&str>) -> Vec<Check> {
        let Some(readme) = readme else {
            return vec![Check::fail(
                "README.md",
                "no hay README.md en la carpeta donde se ejecuta el servidor: el README del Space (con sus metadatos) va ahí",
            )];
        };
        let mut checks = Vec::new();
        for (item, key, repos) in [
            ("Datasets en README.md", "datasets", &space.datasets),
            ("Modelos en README.md", "models", &space.models),
        ] {
            let listed = front_matter_list(readme, key);
            let missing: Vec<&str> = repos
                .iter()
                .map(|repo| repo.id.as_str())
                .filter(|id| !listed.iter().any(|name| name == id))
                .collect();
            checks.push(if missing.is_empty() {
                Check::pass(
                    item,
                    &format!("`{key}:` de los metadatos nombra todos los de space.toml"),
                )
            } else {
                Check::fail(
                    item,
                    &format!(
                        "a `{key}:` de los metadatos le falta {} (que está en space.toml): añádelo",
                        missing.join(", ")
                    ),
                )
            });
        }
        checks
    }

    /// The rules of the Space's edition beyond those every edition shares, each checked and
    /// given with its wording (`space/editions.toml`) as the reason it applies.
    fn edition_group(
        space: &Space,
        edition: &space::editions::Edition,
        model_card: Option<&str>,
        evaluations: &[Evaluation],
    ) -> Option<CheckGroup> {
        use space::editions::RuleCheck;
        if edition.rules.is_empty() {
            return None;
        }
        let checks = edition
            .rules
            .iter()
            .map(|rule| {
                let check = match rule.check {
                    RuleCheck::Video => match &space.project.video {
                        Some(video) => Check::pass("Vídeo del equipo", &format!("`project.video`: {}", video.as_str())),
                        None => Check::fail("Vídeo del equipo", "falta `[project] video = \"https://…\"` en space.toml: el enlace al vídeo"),
                    },
                    RuleCheck::DatasetKinds => {
                        let unnamed: Vec<&str> = space.datasets.iter().filter(|repo| repo.kind.is_none()).map(|repo| repo.id.as_str()).collect();
                        if unnamed.is_empty() {
                            Check::pass("Tipo de cada conjunto de datos", "cada `[[datasets]]` tiene su `kind`")
                        } else {
                            Check::fail("Tipo de cada conjunto de datos", &format!("falta `kind = \"prompt\"` (o \"dpo\", \"kto\", \"image\") en los `[[datasets]]` de {}", unnamed.join(", ")))
                        }
                    }
                    RuleCheck::Organisation => {
                        let outside: Vec<&str> = space.datasets.iter().chain(&space.models).map(|repo| repo.id.as_str()).filter(|id| id.split('/').next() != Some(edition.organisation.as_str())).collect();
                        if outside.is_empty() {
                            Check::pass("Organización de la edición", &format!("los conjuntos de datos y modelos están en {}", edition.organisation))
                        } else {
                            Check::warn("Organización de la edición", &format!("fuera de {}: {} (y publica la demo allí también)", edition.organisation, outside.join(", ")))
                        }
                    }
                    RuleCheck::Evaluation => match (model_card, evaluations.len()) {
                        (None, _) => Check::fail("Resultados de evaluación", "no hay tarjeta del modelo que leer (ver «Tarjeta del modelo»)"),
                        (Some(_), 0) => Check::fail("Resultados de evaluación", "la tarjeta del modelo no tiene resultados en `model-index`: añade los de vuestras evaluaciones"),
                        (Some(_), count) => Check::pass("Resultados de evaluación", &format!("{count} resultados en `model-index` (tabla abajo)")),
                    },
                    RuleCheck::Emissions => match model_card.map(emissions) {
                        None => Check::fail("Emisiones de CO₂ (CodeCarbon)", "no hay tarjeta del modelo que leer (ver «Tarjeta del modelo»)"),
                        Some(Ok(declared)) => Check::pass("Emisiones de CO₂ (CodeCarbon)", &declared),
                        Some(Err(missing)) => Check::fail("Emisiones de CO₂ (CodeCarbon)", &missing),
                    },
                };
                Check {
                    reason: format!("{} — norma de la edición {}: «{}»", check.reason, edition.year, rule.rule),
                    ..check
                }
            })
            .collect();
        Some(CheckGroup {
            title: format!("Normas de {}", edition.name),
            source: "space.toml, tarjeta del modelo (space/editions.toml)".into(),
            checks,
        })
    }

    /// The model card's text: the one `[cards] model` gives, else the one fetched.
    fn model_card_text(given: Option<&Path>, fetched: Option<&FetchedCard>) -> Option<String> {
        let path = match (given, fetched) {
            (Some(path), _) => path,
            (None, Some(FetchedCard::Fetched { path, .. })) => path.as_path(),
            _ => return None,
        };
        std::fs::read_to_string(path).ok()
    }

    /// A card given in `[cards]`, else the one fetched from the Hub, else why there is none.
    fn card_group(
        title: &str,
        kind: CardKind,
        given: Option<&Path>,
        fetched: Option<FetchedCard>,
        key: &str,
        expected_datasets: &[&str],
    ) -> CheckGroup {
        let read = |path: &Path, source: String| match std::fs::read_to_string(path) {
            Ok(text) => (source, check_card(kind, &text, expected_datasets)),
            Err(error) => (
                source,
                vec![Check::fail(
                    title,
                    &format!(
                        "no se puede leer {} ({error}): corrige `[cards] {key}` en space.toml",
                        path.display()
                    ),
                )],
            ),
        };
        let (source, checks) = match (given, fetched) {
            (Some(path), _) => read(path, path.display().to_string()),
            (None, Some(FetchedCard::Fetched { repo, path })) => {
                read(&path, format!("{repo} (Hub) → {}", path.display()))
            }
            (None, Some(FetchedCard::Failed { repo, reason })) => (
                repo.clone(),
                vec![Check::fail(
                    title,
                    &format!(
                        "no se pudo traer del Hub la tarjeta de {repo} ({reason}): copia su README.md junto a space.toml y escribe `[cards] {key} = \"…\"`"
                    ),
                )],
            ),
            (None, None) => (
                "space.toml".to_owned(),
                vec![Check::fail(
                    title,
                    &format!(
                        "no hay tarjeta: copia el README.md del repositorio junto a space.toml y escribe `[cards] {key} = \"…\"`"
                    ),
                )],
            ),
        };
        CheckGroup {
            title: title.to_owned(),
            source,
            checks,
        }
    }

    /// The whole report; `readme` is the Space's README.md, if found; `fetched` gives the cards
    /// the server fetched from the Hub for what `[cards]` leaves out.
    pub fn build_report(
        space: &Space,
        readme: Option<&str>,
        models: Vec<ModelFacts>,
        fetched: impl Fn(CardKind) -> Option<FetchedCard>,
    ) -> JudgeReport {
        let datasets: Vec<&str> = space.datasets.iter().map(|repo| repo.id.as_str()).collect();
        let edition = space::editions::edition(space.project.edition.as_str())
            .unwrap_or_else(space::editions::newest);
        let fetched_model_card = fetched(CardKind::Model);
        let model_card = model_card_text(space.cards.model.as_deref(), fetched_model_card.as_ref());
        let evaluations = model_card.as_deref().map(evaluations).unwrap_or_default();
        let mut groups = vec![
            CheckGroup {
                title: "Ficha del proyecto".into(),
                source: "space.toml".into(),
                checks: project_checks(space),
            },
            CheckGroup {
                title: "Enlaces en el README del Space".into(),
                source: "README.md".into(),
                checks: readme_checks(space, readme),
            },
            card_group(
                "Tarjeta del modelo",
                CardKind::Model,
                space.cards.model.as_deref(),
                fetched_model_card,
                "model",
                &datasets,
            ),
            card_group(
                "Tarjeta del conjunto de datos",
                CardKind::Dataset,
                space.cards.dataset.as_deref(),
                fetched(CardKind::Dataset),
                "dataset",
                &[],
            ),
        ];
        groups.extend(edition_group(
            space,
            edition,
            model_card.as_deref(),
            &evaluations,
        ));
        JudgeReport {
            title: space.project.title.clone(),
            edition: edition.name.clone(),
            evaluations,
            groups,
            models,
            examples: space.examples.clone(),
            chat: space.chat.clone(),
            compare: space.compare.is_some(),
        }
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use crate::cards::CardKind;
    use crate::facts::FetchedCard;

    const SHIPPED: &str = include_str!("../../space.toml");
    const README: &str = "---\nmodels:\n  - Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF\ndatasets:\n  - somosnlp/corpus-salud\n---\n# Space\n";

    fn failed(report: &JudgeReport, group: usize) -> Vec<String> {
        report.groups[group]
            .checks
            .iter()
            .filter(|check| !check.passed)
            .map(|check| format!("{}: {}", check.item, check.reason))
            .collect()
    }

    #[test]
    fn the_shipped_template_is_flagged_item_by_item() {
        let space = crate::space::parse(SHIPPED, "space.toml").unwrap();
        let report = build_report(&space, Some(README), Vec::new(), |_| None);
        let failures = failed(&report, 0);
        let items: Vec<&str> = failures
            .iter()
            .map(|failure| failure.split(':').next().unwrap())
            .collect();
        assert_eq!(
            items,
            [
                "Motivación",
                "Impacto",
                "Conjunto(s) de datos enlazado(s)",
                "Equipo"
            ]
        );
        assert!(failures[0].contains("«Escribe aquí…»"), "{failures:?}");
        assert!(failures[3].contains("«Tu nombre»"), "{failures:?}");
        // The README names another dataset than space.toml.
        assert_eq!(
            failed(&report, 1),
            [
                "Datasets en README.md: a `datasets:` de los metadatos le falta tu-organizacion/tu-corpus-instrucciones (que está en space.toml): añádelo"
            ]
        );
        let no_readme = build_report(&space, None, Vec::new(), |_| None);
        assert!(failed(&no_readme, 1)[0].contains("no hay README.md"));
    }

    #[test]
    fn cards_not_in_space_toml_come_from_the_hub_or_say_why_not() {
        let without_cards = SHIPPED.replace("[cards]\nmodel = \"proyecto/README-modelo.md\"\ndataset = \"proyecto/README-dataset.md\"\n", "");
        let space = crate::space::parse(&without_cards, "space.toml").unwrap();
        assert_eq!(space.cards, crate::space::Cards::default());
        let dir = std::env::temp_dir().join(format!("vitrina-card-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let card = dir.join("dataset.md");
        std::fs::write(
            &card,
            "---\nlicense: mit\nlanguage: es\n---\n# Corpus\n## Limitaciones\nPocas.\n",
        )
        .unwrap();
        let fetched = |kind| match kind {
            CardKind::Model => Some(FetchedCard::Failed {
                repo: "org/modelo".into(),
                reason: "sin conexión".into(),
            }),
            CardKind::Dataset => Some(FetchedCard::Fetched {
                repo: "org/corpus".into(),
                path: card.clone(),
            }),
        };
        let report = build_report(&space, Some(README), Vec::new(), fetched);
        assert_eq!(
            failed(&report, 2),
            [
                "Tarjeta del modelo: no se pudo traer del Hub la tarjeta de org/modelo (sin conexión): copia su README.md junto a space.toml y escribe `[cards] model = \"…\"`"
            ]
        );
        assert!(
            report.groups[3].source.starts_with("org/corpus (Hub)"),
            "{}",
            report.groups[3].source
        );
        assert_eq!(failed(&report, 3), Vec::<String>::new());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_filled_in_sheet_passes_every_project_check() {
        let filled = SHIPPED
            .replace(
                "Escribe aquí por qué existe el proyecto",
                "El proyecto existe porque los centros de salud rurales",
            )
            .replace(
                "Explica a quién ayuda el modelo",
                "Ayuda a quienes atienden pacientes en zonas rurales",
            )
            .replace(
                "tu-organizacion/tu-corpus-instrucciones",
                "somosnlp/corpus-salud",
            )
            .replace("Nombre de otra persona del equipo", "Luis Gómez")
            .replace("Tu nombre", "Ana Pérez")
            .replace("tu-usuario", "ana-perez")
            .replace("otro-usuario", "luis-gomez");
        let space = crate::space::parse(&filled, "space.toml").unwrap();
        let report = build_report(&space, Some(README), Vec::new(), |_| None);
        assert_eq!(failed(&report, 0), Vec::<String>::new());
        assert_eq!(failed(&report, 1), Vec::<String>::new());
        assert_eq!(report.groups[0].checks.len(), 7);
        assert!(
            report.groups[0].checks[3]
                .reason
                .contains("ODS 4 (Educación de calidad)")
        );
    }

    /// The shipped space.toml for `edition`, its model card at `card`.
    fn in_edition(edition: &str, card: &std::path::Path) -> crate::space::Space {
        let toml = SHIPPED
            .replacen(
                "[project]\n",
                &format!("[project]\nedition = \"{edition}\"\n"),
                1,
            )
            .replace(
                "model = \"proyecto/README-modelo.md\"",
                &format!("model = {:?}", card.display().to_string()),
            );
        crate::space::parse(&toml, "space.toml").unwrap()
    }

    fn card_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("vitrina-edition-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("README.md");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn edition_2024_checks_what_it_always_did() {
        let card = card_file("2024", "---\nlicense: mit\n---\n# Modelo\n");
        let report = build_report(&in_edition("2024", &card), Some(README), Vec::new(), |_| {
            None
        });
        let titles: Vec<&str> = report
            .groups
            .iter()
            .map(|group| group.title.as_str())
            .collect();
        assert_eq!(
            titles,
            [
                "Ficha del proyecto",
                "Enlaces en el README del Space",
                "Tarjeta del modelo",
                "Tarjeta del conjunto de datos"
            ]
        );
        assert_eq!(report.edition, "#Somos600M (2024)");
    }

    #[test]
    fn edition_2025_checks_its_rules_and_says_why_they_apply() {
        let bare = card_file("bare", "---\nlicense: mit\n---\n# Modelo\n");
        let report = build_report(&in_edition("2025", &bare), Some(README), Vec::new(), |_| {
            None
        });
        let group = report.groups.last().unwrap();
        assert_eq!(
            group.title,
            "Normas de Hackathon SomosNLP 2025: alineamiento cultural de LLMs"
        );
        let verdicts: Vec<(&str, bool, bool)> = group
            .checks
            .iter()
            .map(|check| (check.item.as_str(), check.passed, check.warning))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("Vídeo del equipo", false, false),
                ("Tipo de cada conjunto de datos", false, false),
                ("Organización de la edición", false, true),
                ("Resultados de evaluación", false, false),
                ("Emisiones de CO₂ (CodeCarbon)", false, false),
            ]
        );
        assert!(
            group.checks[0]
                .reason
                .contains("norma de la edición 2025: «Para optar a los premios"),
            "{}",
            group.checks[0].reason
        );
        assert!(
            group.checks[1]
                .reason
                .contains("tu-organizacion/tu-corpus-instrucciones")
        );
        assert!(
            group.checks[2]
                .reason
                .contains("fuera de somosnlp-hackathon-2025")
        );
        assert!(
            group.checks[4]
                .reason
                .contains("no declara `co2_eq_emissions`")
        );

        let card = card_file(
            "full",
            concat!(
                "---\nlicense: mit\nco2_eq_emissions:\n  emissions: 1250\n  source: codecarbon\n  training_type: fine-tuning\n",
                "model-index:\n- name: mi-modelo\n  results:\n  - task:\n      type: text-generation\n    dataset:\n      name: BLEND\n      type: blend\n",
                "    metrics:\n    - type: accuracy\n      value: 0.61\n      name: Exactitud\n  - task:\n      type: text-generation\n",
                "    dataset:\n      name: INCLUDE (es)\n      type: include\n    metrics:\n    - type: accuracy\n      value: 48.2\n",
                "---\n# Modelo\n"
            ),
        );
        let filled = SHIPPED
            .replacen(
                "[project]\n",
                "[project]\nedition = \"2025\"\nvideo = \"https://youtu.be/abcdefgh\"\n",
                1,
            )
            .replace(
                "model = \"proyecto/README-modelo.md\"",
                &format!("model = {:?}", card.display().to_string()),
            )
            .replace(
                "tu-organizacion/tu-corpus-instrucciones\"",
                "somosnlp-hackathon-2025/corpus\"\nkind = \"prompt\"",
            );
        let space = crate::space::parse(&filled, "space.toml").unwrap();
        let report = build_report(&space, Some(README), Vec::new(), |_| None);
        let group = report.groups.last().unwrap();
        let passed: Vec<bool> = group.checks.iter().map(|check| check.passed).collect();
        // The shipped model lives outside the edition's organisation: still a warning.
        assert_eq!(
            passed,
            [true, true, false, true, true],
            "{:?}",
            group.checks
        );
        assert!(
            group.checks[4]
                .reason
                .starts_with("1250 g de CO₂ (codecarbon, fine-tuning)")
        );
        assert_eq!(
            report.evaluations,
            [
                Evaluation {
                    task: "text-generation".into(),
                    dataset: "BLEND".into(),
                    metric: "Exactitud".into(),
                    value: "0.61".into()
                },
                Evaluation {
                    task: "text-generation".into(),
                    dataset: "INCLUDE (es)".into(),
                    metric: "accuracy".into(),
                    value: "48.2".into()
                },
            ]
        );
        for path in [bare, card] {
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
    }
}
