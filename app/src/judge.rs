//! What the judges' page (`/jurado`) reports: the hackathon's rules checked against space.toml,
//! the Space's README front matter and the model and dataset cards, and the facts of the models
//! that answer. Built on the server; the page only shows it.

use serde::{Deserialize, Serialize};

use crate::facts::ModelFacts;
use crate::i18n::Lang;
use crate::space::{ChatDefaults, ChatExample};

/// A text of the checklist in each language of the interface: the page shows the visitor's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Said {
    pub es: String,
    pub en: String,
    pub pt: String,
}

impl Said {
    pub fn pick(&self, lang: Lang) -> &str {
        match lang {
            Lang::Es => &self.es,
            Lang::En => &self.en,
            Lang::Pt => &self.pt,
        }
    }

    /// The same text in every language (names, identifiers, numbers).
    pub fn same(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            es: text.clone(),
            en: text.clone(),
            pt: text,
        }
    }
}

/// A [`Said`] from three format strings: Spanish, English, Portuguese (built on the server).
#[cfg(feature = "ssr")]
macro_rules! said {
    ($es:literal, $en:literal, $pt:literal $(,)?) => {
        $crate::judge::Said {
            es: format!($es),
            en: format!($en),
            pt: format!($pt),
        }
    };
}
#[cfg(feature = "ssr")]
pub(crate) use said;

/// One line of the checklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked, e.g. «Licencia en los metadatos».
    pub item: Said,
    pub passed: bool,
    /// Not met, but a recommendation rather than a rule (shown as a warning).
    #[serde(default)]
    pub warning: bool,
    /// Why, in words a team can act on.
    pub reason: Said,
}

impl Check {
    pub fn pass(item: Said, reason: Said) -> Self {
        Self {
            item,
            passed: true,
            warning: false,
            reason,
        }
    }

    pub fn fail(item: Said, reason: Said) -> Self {
        Self {
            item,
            passed: false,
            warning: false,
            reason,
        }
    }

    pub fn warn(item: Said, reason: Said) -> Self {
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
    pub title: Said,
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
pub use build::{build_report, storage_group};

#[cfg(feature = "ssr")]
mod build {
    use std::path::Path;

    use super::{Check, CheckGroup, Evaluation, JudgeReport, Said};
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
    fn text_check(item: Said, key: &str, text: &str, min_chars: usize) -> Check {
        if let Some(marker) = template_left(text) {
            return Check::fail(
                item,
                said!(
                    "`{key}` aún tiene el texto de la plantilla («{marker}…»): escribe el vuestro",
                    "`{key}` still has the template's text («{marker}…»): write your own",
                    "`{key}` ainda tem o texto do modelo («{marker}…»): escrevam o de vocês",
                ),
            );
        }
        let chars = text.trim().chars().count();
        if chars < min_chars {
            return Check::fail(
                item,
                said!(
                    "`{key}` tiene {chars} caracteres: explícalo en al menos {min_chars}",
                    "`{key}` has {chars} characters: explain it in at least {min_chars}",
                    "`{key}` tem {chars} caracteres: expliquem em pelo menos {min_chars}",
                ),
            );
        }
        Check::pass(
            item,
            said!(
                "`{key}`: {chars} caracteres",
                "`{key}`: {chars} characters",
                "`{key}`: {chars} caracteres",
            ),
        )
    }

    fn project_checks(space: &Space) -> Vec<Check> {
        let project = &space.project;
        let mut checks = vec![
            text_check(
                said!("Motivación", "Motivation", "Motivação"),
                "project.motivation",
                &project.motivation,
                80,
            ),
            text_check(
                said!("Impacto", "Impact", "Impacto"),
                "project.impact",
                &project.impact,
                80,
            ),
        ];
        let future = project.future.join("\n");
        let future_item = said!("Ideas de futuro", "Future ideas", "Ideias para o futuro");
        let ideas = project.future.len();
        checks.push(match template_left(&future) {
            Some(marker) => Check::fail(
                future_item,
                said!(
                    "`project.future` aún tiene el texto de la plantilla («{marker}…»)",
                    "`project.future` still has the template's text («{marker}…»)",
                    "`project.future` ainda tem o texto do modelo («{marker}…»)",
                ),
            ),
            None => Check::pass(
                future_item,
                said!(
                    "{ideas} ideas en `project.future`",
                    "{ideas} ideas in `project.future`",
                    "{ideas} ideias em `project.future`",
                ),
            ),
        });
        let goals = |name: fn(&space::ods::Goal) -> &'static str, prefix: &str| {
            project
                .ods
                .iter()
                .map(|number| {
                    format!(
                        "{prefix} {} ({})",
                        number.goal().number,
                        name(number.goal())
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        checks.push(Check::pass(
            said!("ODS", "SDG", "ODS"),
            Said {
                es: goals(|goal| goal.name_es, "ODS"),
                en: goals(|goal| goal.name_en, "SDG"),
                pt: goals(|goal| goal.name_pt, "ODS"),
            },
        ));
        for (item, key, repos) in [
            (
                said!(
                    "Conjunto(s) de datos enlazado(s)",
                    "Linked dataset(s)",
                    "Conjunto(s) de dados com link"
                ),
                "datasets",
                &space.datasets,
            ),
            (
                said!(
                    "Modelo(s) enlazado(s)",
                    "Linked model(s)",
                    "Modelo(s) com link"
                ),
                "models",
                &space.models,
            ),
        ] {
            let ids: Vec<&str> = repos.iter().map(|repo| repo.id.as_str()).collect();
            checks.push(match ids.iter().find_map(|id| template_left(id)) {
                Some(marker) => Check::fail(
                    item,
                    said!(
                        "`[[{key}]]` aún nombra «{marker}», de la plantilla: pon vuestros identificadores del Hub",
                        "`[[{key}]]` still names «{marker}», from the template: put your Hub ids",
                        "`[[{key}]]` ainda nomeia «{marker}», do modelo: ponham os identificadores de vocês no Hub",
                    ),
                ),
                None => Check::pass(item, Said::same(ids.join(", "))),
            });
        }
        let team: Vec<String> = space
            .team
            .iter()
            .map(|member| format!("{} ({})", member.name, member.hub.as_str()))
            .collect();
        let team_item = said!("Equipo", "Team", "Equipe");
        checks.push(match space.team.iter().find_map(|member| template_left(&member.name).or_else(|| template_left(member.hub.as_str()))) {
            Some(marker) => Check::fail(
                team_item,
                said!(
                    "`[[team]]` aún tiene «{marker}», de la plantilla: nombra a cada persona del equipo",
                    "`[[team]]` still has «{marker}», from the template: name each person of the team",
                    "`[[team]]` ainda tem «{marker}», do modelo: nomeiem cada pessoa da equipe",
                ),
            ),
            None => Check::pass(team_item, Said::same(team.join(", "))),
        });
        checks
    }

    /// The Space's README front matter names the same datasets and models as space.toml (the
    /// Hub links the Space to them from it).
    fn readme_checks(space: &Space, readme: Option<&str>) -> Vec<Check> {
        let Some(readme) = readme else {
            return vec![Check::fail(
                Said::same("README.md"),
                said!(
                    "no hay README.md en la carpeta donde se ejecuta el servidor: el README del Space (con sus metadatos) va ahí",
                    "there is no README.md in the folder the server runs in: the Space's README (with its metadata) goes there",
                    "não há README.md na pasta onde o servidor roda: o README do Space (com seus metadados) fica ali",
                ),
            )];
        };
        let mut checks = Vec::new();
        for (item, key, repos) in [
            (
                said!(
                    "Datasets en README.md",
                    "Datasets in README.md",
                    "Datasets no README.md"
                ),
                "datasets",
                &space.datasets,
            ),
            (
                said!(
                    "Modelos en README.md",
                    "Models in README.md",
                    "Modelos no README.md"
                ),
                "models",
                &space.models,
            ),
        ] {
            let listed = front_matter_list(readme, key);
            let missing = repos
                .iter()
                .map(|repo| repo.id.as_str())
                .filter(|id| !listed.iter().any(|name| name == id))
                .collect::<Vec<_>>()
                .join(", ");
            checks.push(if missing.is_empty() {
                Check::pass(
                    item,
                    said!(
                        "`{key}:` de los metadatos nombra todos los de space.toml",
                        "the metadata's `{key}:` names all of space.toml's",
                        "`{key}:` dos metadados nomeia todos os do space.toml",
                    ),
                )
            } else {
                Check::fail(
                    item,
                    said!(
                        "a `{key}:` de los metadatos le falta {missing} (que está en space.toml): añádelo",
                        "the metadata's `{key}:` lacks {missing} (which space.toml has): add it",
                        "falta {missing} em `{key}:` dos metadados (está no space.toml): adicionem",
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
        space_id: Option<&str>,
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
                    RuleCheck::Video => {
                        let item = said!("Vídeo del equipo", "The team's video", "Vídeo da equipe");
                        match &space.project.video {
                            Some(video) => Check::pass(item, Said::same(format!("`project.video`: {}", video.as_str()))),
                            None => Check::fail(
                                item,
                                said!(
                                    "falta `[project] video = \"https://…\"` en space.toml: el enlace al vídeo",
                                    "space.toml lacks `[project] video = \"https://…\"`: the video's link",
                                    "falta `[project] video = \"https://…\"` no space.toml: o link do vídeo",
                                ),
                            ),
                        }
                    }
                    RuleCheck::DatasetKinds => {
                        let item = said!(
                            "Tipo de cada conjunto de datos",
                            "Each dataset's kind",
                            "Tipo de cada conjunto de dados"
                        );
                        let unnamed = space
                            .datasets
                            .iter()
                            .filter(|repo| repo.kind.is_none())
                            .map(|repo| repo.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ");
                        if unnamed.is_empty() {
                            Check::pass(
                                item,
                                said!(
                                    "cada `[[datasets]]` tiene su `kind`",
                                    "every `[[datasets]]` has its `kind`",
                                    "cada `[[datasets]]` tem seu `kind`",
                                ),
                            )
                        } else {
                            Check::fail(
                                item,
                                said!(
                                    "falta `kind = \"prompt\"` (o \"dpo\", \"kto\", \"image\") en los `[[datasets]]` de {unnamed}",
                                    "`kind = \"prompt\"` (or \"dpo\", \"kto\", \"image\") is missing from the `[[datasets]]` of {unnamed}",
                                    "falta `kind = \"prompt\"` (ou \"dpo\", \"kto\", \"image\") nos `[[datasets]]` de {unnamed}",
                                ),
                            )
                        }
                    }
                    RuleCheck::Organisation => {
                        let item = said!(
                            "Organización de la edición",
                            "The edition's organisation",
                            "Organização da edição"
                        );
                        let organisation = &edition.organisation;
                        let outside = space
                            .datasets
                            .iter()
                            .chain(&space.models)
                            .map(|repo| repo.id.as_str())
                            .chain(space_id)
                            .filter(|id| id.split('/').next() != Some(organisation.as_str()))
                            .collect::<Vec<_>>()
                            .join(", ");
                        if outside.is_empty() {
                            Check::pass(
                                item,
                                said!(
                                    "los conjuntos de datos y modelos (y el Space, si se sabe) están en {organisation}",
                                    "the datasets and models (and the Space, where known) are under {organisation}",
                                    "os conjuntos de dados e modelos (e o Space, se conhecido) estão em {organisation}",
                                ),
                            )
                        } else {
                            Check::warn(
                                item,
                                said!(
                                    "fuera de {organisation}: {outside} (y publica la demo allí también)",
                                    "outside {organisation}: {outside} (and publish the demo there too)",
                                    "fora de {organisation}: {outside} (e publiquem a demo lá também)",
                                ),
                            )
                        }
                    }
                    RuleCheck::Evaluation => {
                        let item = said!(
                            "Resultados de evaluación",
                            "Evaluation results",
                            "Resultados de avaliação"
                        );
                        match (model_card, evaluations.len()) {
                            (None, _) => Check::fail(item, no_model_card()),
                            (Some(_), 0) => Check::fail(
                                item,
                                said!(
                                    "la tarjeta del modelo no tiene resultados en `model-index`: añade los de vuestras evaluaciones",
                                    "the model card has no results in `model-index`: add your evaluations'",
                                    "o cartão do modelo não tem resultados em `model-index`: adicionem os das avaliações de vocês",
                                ),
                            ),
                            (Some(_), count) => Check::pass(
                                item,
                                said!(
                                    "{count} resultados en `model-index` (tabla abajo)",
                                    "{count} results in `model-index` (table below)",
                                    "{count} resultados em `model-index` (tabela abaixo)",
                                ),
                            ),
                        }
                    }
                    RuleCheck::Emissions => {
                        let item = said!(
                            "Emisiones de CO₂ (CodeCarbon)",
                            "CO₂ emissions (CodeCarbon)",
                            "Emissões de CO₂ (CodeCarbon)"
                        );
                        match model_card.map(emissions) {
                            None => Check::fail(item, no_model_card()),
                            Some(Ok(declared)) => Check::pass(item, declared),
                            Some(Err(missing)) => Check::fail(item, missing),
                        }
                    }
                };
                let (year, wording) = (&edition.year, &rule.rule);
                let (es, en, pt) = (&wording.es, &wording.en, &wording.pt);
                let why = said!(
                    " — norma de la edición {year}: «{es}»",
                    " — rule of the {year} edition: «{en}»",
                    " — regra da edição {year}: «{pt}»",
                );
                Check {
                    reason: Said {
                        es: check.reason.es.clone() + &why.es,
                        en: check.reason.en.clone() + &why.en,
                        pt: check.reason.pt.clone() + &why.pt,
                    },
                    ..check
                }
            })
            .collect();
        let name = &edition.name;
        Some(CheckGroup {
            title: said!("Normas de {name}", "Rules of {name}", "Regras de {name}"),
            source: "space.toml, README.md (model), space/editions.toml".into(),
            checks,
        })
    }

    fn no_model_card() -> Said {
        said!(
            "no hay tarjeta del modelo que leer (ver «Tarjeta del modelo»)",
            "there is no model card to read (see «Model card»)",
            "não há cartão do modelo para ler (ver «Cartão do modelo»)",
        )
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
        title: Said,
        kind: CardKind,
        given: Option<&Path>,
        fetched: Option<FetchedCard>,
        key: &str,
        expected_datasets: &[&str],
    ) -> CheckGroup {
        let read = |path: &Path, source: String| match std::fs::read_to_string(path) {
            Ok(text) => (source, check_card(kind, &text, expected_datasets)),
            Err(error) => {
                let path = path.display();
                (
                    source,
                    vec![Check::fail(
                        title.clone(),
                        said!(
                            "no se puede leer {path} ({error}): corrige `[cards] {key}` en space.toml",
                            "cannot read {path} ({error}): fix `[cards] {key}` in space.toml",
                            "não é possível ler {path} ({error}): corrijam `[cards] {key}` no space.toml",
                        ),
                    )],
                )
            }
        };
        let (source, checks) = match (given, fetched) {
            (Some(path), _) => read(path, path.display().to_string()),
            (None, Some(FetchedCard::Fetched { repo, path })) => {
                read(&path, format!("{repo} (Hub) → {}", path.display()))
            }
            (None, Some(FetchedCard::Failed { repo, reason })) => (
                repo.clone(),
                vec![Check::fail(
                    title.clone(),
                    said!(
                        "no se pudo traer del Hub la tarjeta de {repo} ({reason}): copia su README.md junto a space.toml y escribe `[cards] {key} = \"…\"`",
                        "the card of {repo} could not be fetched from the Hub ({reason}): copy its README.md beside space.toml and write `[cards] {key} = \"…\"`",
                        "não foi possível trazer do Hub o cartão de {repo} ({reason}): copiem o README.md dele junto ao space.toml e escrevam `[cards] {key} = \"…\"`",
                    ),
                )],
            ),
            (None, None) => (
                "space.toml".to_owned(),
                vec![Check::fail(
                    title.clone(),
                    said!(
                        "no hay tarjeta: copia el README.md del repositorio junto a space.toml y escribe `[cards] {key} = \"…\"`",
                        "there is no card: copy the repository's README.md beside space.toml and write `[cards] {key} = \"…\"`",
                        "não há cartão: copiem o README.md do repositório junto ao space.toml e escrevam `[cards] {key} = \"…\"`",
                    ),
                )],
            ),
        };
        CheckGroup {
            title,
            source,
            checks,
        }
    }

    /// The whole report; `readme` is the Space's README.md, if found; `fetched` gives the cards
    /// the server fetched from the Hub for what `[cards]` leaves out.
    /// `space_id` is the Space's own `owner/name` on the Hub (its `SPACE_ID`), when known.
    pub fn build_report(
        space: &Space,
        space_id: Option<&str>,
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
                title: said!("Ficha del proyecto", "Project sheet", "Ficha do projeto"),
                source: "space.toml".into(),
                checks: project_checks(space),
            },
            CheckGroup {
                title: said!(
                    "Enlaces en el README del Space",
                    "Links in the Space's README",
                    "Links no README do Space"
                ),
                source: "README.md".into(),
                checks: readme_checks(space, readme),
            },
            card_group(
                said!("Tarjeta del modelo", "Model card", "Cartão do modelo"),
                CardKind::Model,
                space.cards.model.as_deref(),
                fetched_model_card,
                "model",
                &datasets,
            ),
            card_group(
                said!(
                    "Tarjeta del conjunto de datos",
                    "Dataset card",
                    "Cartão do conjunto de dados"
                ),
                CardKind::Dataset,
                space.cards.dataset.as_deref(),
                fetched(CardKind::Dataset),
                "dataset",
                &[],
            ),
        ];
        groups.extend(edition_group(
            space,
            space_id,
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

    /// Whether visitors' ratings (the team's next corpus) are kept: a Space without
    /// persistent storage loses them, and the receipts' key, at every restart, silently.
    pub fn storage_group(
        storage: &crate::facts::StorageFacts,
        opened: &Result<(), String>,
    ) -> CheckGroup {
        let dir = &storage.dir;
        let item = said!(
            "Valoraciones guardadas tras un reinicio",
            "Ratings kept across a restart",
            "Avaliações guardadas após um reinício"
        );
        let check = match opened {
            Err(error) => Check::fail(
                item,
                said!(
                    "no se guardan: {error}",
                    "they are not stored: {error}",
                    "não são guardadas: {error}"
                ),
            ),
            Ok(()) if storage.persistent => Check::pass(
                item,
                said!(
                    "se guardan en {dir}, que sobrevive a los reinicios",
                    "stored in {dir}, which outlives restarts",
                    "guardadas em {dir}, que sobrevive aos reinícios"
                ),
            ),
            Ok(()) => Check::warn(
                item,
                said!(
                    "se guardan en {dir}, dentro del contenedor: se pierden en cada reinicio. Activa el almacenamiento persistente del Space (se monta en /data) o pon VITRINA_DATA_DIR en un volumen",
                    "stored in {dir}, inside the container: lost at every restart. Enable the Space's persistent storage (mounted at /data) or set VITRINA_DATA_DIR to a volume",
                    "guardadas em {dir}, dentro do contêiner: perdem-se a cada reinício. Ative o armazenamento persistente do Space (montado em /data) ou defina VITRINA_DATA_DIR num volume"
                ),
            ),
        };
        CheckGroup {
            title: said!(
                "Almacenamiento de las valoraciones",
                "Storage of the ratings",
                "Armazenamento das avaliações"
            ),
            source: "VITRINA_DATA_DIR, /data".into(),
            checks: vec![check],
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
            .map(|check| format!("{}: {}", check.item.es, check.reason.es))
            .collect()
    }

    #[test]
    fn the_shipped_template_is_flagged_item_by_item() {
        let space = crate::space::parse(SHIPPED, "space.toml").unwrap();
        let report = build_report(&space, None, Some(README), Vec::new(), |_| None);
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
        let no_readme = build_report(&space, None, None, Vec::new(), |_| None);
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
        let report = build_report(&space, None, Some(README), Vec::new(), fetched);
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
        let report = build_report(&space, None, Some(README), Vec::new(), |_| None);
        assert_eq!(failed(&report, 0), Vec::<String>::new());
        assert_eq!(failed(&report, 1), Vec::<String>::new());
        assert_eq!(report.groups[0].checks.len(), 7);
        assert!(
            report.groups[0].checks[3]
                .reason
                .es
                .contains("ODS 4 (Educación de calidad)")
        );
    }

    /// The report of the shipped space.toml for `edition`, its model card at `card`.
    fn edition_report(edition: &str, card: &std::path::Path) -> JudgeReport {
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
        let space = crate::space::parse(&toml, "space.toml").unwrap();
        build_report(&space, None, Some(README), Vec::new(), |_| None)
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
        let report = edition_report("2024", &card);
        let titles: Vec<&str> = report
            .groups
            .iter()
            .map(|group| group.title.es.as_str())
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
        let report = edition_report("2025", &bare);
        let group = report.groups.last().unwrap();
        assert_eq!(
            group.title.es,
            "Normas de Hackathon SomosNLP 2025: alineamiento cultural de LLMs"
        );
        // Every line of the checklist is written in each language of the interface.
        for check in report.groups.iter().flat_map(|group| &group.checks) {
            for said in [&check.item, &check.reason] {
                assert!(
                    [&said.es, &said.en, &said.pt]
                        .iter()
                        .all(|text| !text.trim().is_empty()),
                    "{said:?}"
                );
            }
        }
        assert_eq!(group.checks[0].item.pt, "Vídeo da equipe");
        assert!(
            group.checks[0]
                .reason
                .en
                .contains("rule of the 2025 edition: «To compete for the prizes")
        );
        let verdicts: Vec<(&str, bool, bool)> = group
            .checks
            .iter()
            .map(|check| (check.item.es.as_str(), check.passed, check.warning))
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
                .es
                .contains("norma de la edición 2025: «Para optar a los premios"),
            "{}",
            group.checks[0].reason.es
        );
        assert!(
            group.checks[1]
                .reason
                .es
                .contains("tu-organizacion/tu-corpus-instrucciones")
        );
        assert!(
            group.checks[2]
                .reason
                .es
                .contains("fuera de somosnlp-hackathon-2025")
        );
        assert!(
            group.checks[4]
                .reason
                .es
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
        // On the Hub the Space's own id is known, and checked with the repositories.
        let report = build_report(
            &space,
            Some("alguien/mi-demo"),
            Some(README),
            Vec::new(),
            |_| None,
        );
        let group = report.groups.last().unwrap();
        assert!(group.checks[2].reason.es.contains("alguien/mi-demo"));
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
                .es
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
