//! The hackathon's rules for model and dataset cards (Hugging Face `README.md` with YAML front
//! matter), checked as a judge would: metadata, a bias/limitations section, the environmental
//! impact of training, no template placeholders left, and links that agree with space.toml.
//! Each check says why it passed or failed, in the interface's three languages (the judges' page
//! shows the visitor's).

use serde_yaml_ng::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardKind {
    Model,
    Dataset,
}

use crate::judge::said;
pub use crate::judge::{Check, Evaluation, Said};

/// What the Hub's card templates leave behind when a section is not filled in.
const PLACEHOLDERS: &[&str] = &[
    "[More Information Needed]",
    "[optional]",
    "<!-- Provide",
    "{{ ",
];

const BIAS_HEADINGS: &[&str] = &[
    "bias",
    "limitation",
    "risk",
    "sesgo",
    "limitacion",
    "limitación",
    "riesgo",
];
const ENVIRONMENT_HEADINGS: &[&str] = &[
    "environmental impact",
    "carbon",
    "impacto ambiental",
    "huella de carbono",
    "emisiones",
];

/// Checks a card; `expected_datasets` are space.toml's `[[datasets]]` ids, which a model card's
/// `datasets:` must name.
pub fn check_card(kind: CardKind, text: &str, expected_datasets: &[&str]) -> Vec<Check> {
    let (front_matter, body) = split_front_matter(text);
    let metadata: Option<Value> = front_matter.and_then(|yaml| serde_yaml_ng::from_str(yaml).ok());
    let yaml_item = || said!("Metadatos YAML", "YAML metadata", "Metadados YAML");
    let mut checks = vec![match (&front_matter, &metadata) {
        (None, _) => Check::fail(
            yaml_item(),
            said!(
                "la tarjeta no tiene metadatos YAML: empieza el README.md con un bloque entre dos líneas `---`",
                "the card has no YAML metadata: start the README.md with a block between two `---` lines",
                "o cartão não tem metadados YAML: comecem o README.md com um bloco entre duas linhas `---`",
            ),
        ),
        (Some(_), None) => Check::fail(
            yaml_item(),
            said!(
                "los metadatos YAML no se pueden leer: revisa la sangría y las comillas",
                "the YAML metadata cannot be read: check the indentation and the quotes",
                "os metadados YAML não podem ser lidos: revisem a indentação e as aspas",
            ),
        ),
        (Some(_), Some(_)) => Check::pass(
            yaml_item(),
            said!(
                "presentes y válidos",
                "present and valid",
                "presentes e válidos"
            ),
        ),
    }];
    let field = |key: &str| {
        metadata
            .as_ref()
            .and_then(|metadata| metadata.get(key))
            .filter(|value| !is_empty(value))
    };
    let mut required = vec![
        (
            "license",
            said!(
                "Licencia en los metadatos",
                "License in the metadata",
                "Licença nos metadados"
            ),
        ),
        (
            "language",
            said!(
                "Idioma en los metadatos",
                "Language in the metadata",
                "Idioma nos metadados"
            ),
        ),
    ];
    if kind == CardKind::Model {
        required.extend([
            (
                "base_model",
                said!(
                    "Modelo base en los metadatos",
                    "Base model in the metadata",
                    "Modelo base nos metadados"
                ),
            ),
            (
                "datasets",
                said!(
                    "Conjuntos de datos en los metadatos",
                    "Datasets in the metadata",
                    "Conjuntos de dados nos metadados"
                ),
            ),
        ]);
    }
    for (key, item) in required {
        checks.push(match field(key) {
            Some(_) => Check::pass(
                item,
                said!(
                    "`{key}` está indicado",
                    "`{key}` is given",
                    "`{key}` está indicado"
                ),
            ),
            None => Check::fail(
                item,
                said!(
                    "falta `{key}:` en los metadatos: añádelo",
                    "the metadata lacks `{key}:`: add it",
                    "falta `{key}:` nos metadados: adicionem",
                ),
            ),
        });
    }

    let headings: Vec<String> = body
        .lines()
        .filter(|line| line.starts_with('#'))
        .map(|line| line.trim_start_matches('#').trim().to_lowercase())
        .collect();
    let has_heading = |words: &[&str]| {
        headings
            .iter()
            .any(|heading| words.iter().any(|word| heading.contains(word)))
    };
    let bias_item = said!(
        "Sesgos y limitaciones",
        "Biases and limitations",
        "Vieses e limitações"
    );
    checks.push(if has_heading(BIAS_HEADINGS) {
        Check::pass(
            bias_item,
            said!(
                "la tarjeta tiene una sección de sesgos, riesgos o limitaciones",
                "the card has a section on biases, risks or limitations",
                "o cartão tem uma seção de vieses, riscos ou limitações",
            ),
        )
    } else {
        Check::fail(
            bias_item,
            said!(
                "no hay sección de sesgos, riesgos o limitaciones: añade una (p. ej. «## Sesgos, riesgos y limitaciones»)",
                "there is no section on biases, risks or limitations: add one (e.g. «## Bias, Risks, and Limitations»)",
                "não há seção de vieses, riscos ou limitações: adicionem uma (p. ex. «## Vieses, riscos e limitações»)",
            ),
        )
    });
    if kind == CardKind::Model {
        let item = said!(
            "Impacto ambiental",
            "Environmental impact",
            "Impacto ambiental"
        );
        checks.push(if field("co2_eq_emissions").is_some() || has_heading(ENVIRONMENT_HEADINGS) {
            Check::pass(
                item,
                said!(
                    "hay `co2_eq_emissions` o una sección de impacto ambiental",
                    "there is `co2_eq_emissions` or a section on environmental impact",
                    "há `co2_eq_emissions` ou uma seção de impacto ambiental",
                ),
            )
        } else {
            Check::fail(
                item,
                said!(
                    "no hay `co2_eq_emissions` en los metadatos ni sección de impacto ambiental: informa de la huella del entrenamiento",
                    "there is no `co2_eq_emissions` in the metadata nor a section on environmental impact: report the training's footprint",
                    "não há `co2_eq_emissions` nos metadados nem seção de impacto ambiental: informem a pegada do treinamento",
                ),
            )
        });
    }

    let left = PLACEHOLDERS
        .iter()
        .copied()
        .filter(|placeholder| text.contains(placeholder))
        .collect::<Vec<_>>()
        .join(", ");
    let template_item = said!(
        "Plantilla completada",
        "Template filled in",
        "Modelo preenchido"
    );
    checks.push(if left.is_empty() {
        Check::pass(
            template_item,
            said!(
                "no queda texto de la plantilla",
                "no template text is left",
                "não sobra texto do modelo",
            ),
        )
    } else {
        Check::fail(
            template_item,
            said!(
                "queda texto de la plantilla: {left}",
                "template text is left: {left}",
                "sobra texto do modelo: {left}",
            ),
        )
    });

    if kind == CardKind::Model {
        let named = list_of(field("datasets"));
        let missing = expected_datasets
            .iter()
            .copied()
            .filter(|id| !named.iter().any(|name| name == id))
            .collect::<Vec<_>>()
            .join(", ");
        let item = said!(
            "Enlaces coherentes con space.toml",
            "Links that agree with space.toml",
            "Links coerentes com o space.toml"
        );
        checks.push(if missing.is_empty() {
            Check::pass(
                item,
                said!(
                    "`datasets:` de la tarjeta nombra todos los conjuntos de datos de space.toml",
                    "the card's `datasets:` names every dataset of space.toml",
                    "`datasets:` do cartão nomeia todos os conjuntos de dados do space.toml",
                ),
            )
        } else {
            Check::fail(
                item,
                said!(
                    "`datasets:` de la tarjeta no nombra {missing} (que está en space.toml)",
                    "the card's `datasets:` does not name {missing} (which space.toml has)",
                    "`datasets:` do cartão não nomeia {missing} (que está no space.toml)",
                ),
            )
        });
    }
    checks
}

/// The front matter's YAML, if there is a readable one.
fn metadata(text: &str) -> Option<Value> {
    split_front_matter(text)
        .0
        .and_then(|yaml| serde_yaml_ng::from_str(yaml).ok())
}

/// The results a model card's `model-index` reports (the Hub's evaluation metadata), one per
/// metric: what the 2025+ editions ask teams to publish.
pub fn evaluations(text: &str) -> Vec<Evaluation> {
    let Some(metadata) = metadata(text) else {
        return Vec::new();
    };
    let text_at = |value: &Value, keys: &[&str]| -> String {
        keys.iter()
            .find_map(|key| value.get(*key).and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned()
    };
    let sequence = |value: Option<&Value>| -> Vec<Value> {
        value
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
    };
    let mut rows = Vec::new();
    for model in sequence(metadata.get("model-index")) {
        for result in sequence(model.get("results")) {
            let task = result
                .get("task")
                .map(|task| text_at(task, &["name", "type"]))
                .unwrap_or_default();
            let dataset = result
                .get("dataset")
                .map(|dataset| text_at(dataset, &["name", "type"]))
                .unwrap_or_default();
            for metric in sequence(result.get("metrics")) {
                let value = match metric.get("value") {
                    Some(Value::Number(number)) => number.to_string(),
                    Some(Value::String(text)) => text.clone(),
                    _ => continue,
                };
                rows.push(Evaluation {
                    task: task.clone(),
                    dataset: dataset.clone(),
                    metric: text_at(&metric, &["name", "type"]),
                    value,
                });
            }
        }
    }
    rows
}

/// The training's emissions as a model card declares them (`co2_eq_emissions`, as CodeCarbon
/// reports them): `Ok` with what it says, or `Err` with what is missing.
pub fn emissions(text: &str) -> Result<Said, Said> {
    let emissions = metadata(text)
        .and_then(|metadata| metadata.get("co2_eq_emissions").cloned())
        .ok_or_else(|| {
            said!(
                "la tarjeta del modelo no declara `co2_eq_emissions` en sus metadatos",
                "the model card does not declare `co2_eq_emissions` in its metadata",
                "o cartão do modelo não declara `co2_eq_emissions` em seus metadados",
            )
        })?;
    let field = |key: &str| {
        emissions.get(key).and_then(|value| match value {
            Value::Number(number) => Some(number.to_string()),
            Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
            _ => None,
        })
    };
    let missing = ["emissions", "source", "training_type"]
        .into_iter()
        .filter(|key| field(key).is_none())
        .collect::<Vec<_>>()
        .join(", ");
    if !missing.is_empty() {
        return Err(said!(
            "a `co2_eq_emissions` le falta {missing}: CodeCarbon da `emissions` (gramos de CO₂), `source` (\"codecarbon\") y `training_type`",
            "`co2_eq_emissions` lacks {missing}: CodeCarbon gives `emissions` (grams of CO₂), `source` (\"codecarbon\") and `training_type`",
            "falta {missing} em `co2_eq_emissions`: o CodeCarbon dá `emissions` (gramas de CO₂), `source` (\"codecarbon\") e `training_type`",
        ));
    }
    let [grams, source, training] =
        ["emissions", "source", "training_type"].map(|key| field(key).unwrap_or_default());
    Ok(said!(
        "{grams} g de CO₂ ({source}, {training})",
        "{grams} g of CO₂ ({source}, {training})",
        "{grams} g de CO₂ ({source}, {training})",
    ))
}

/// A list in a README's front matter (`datasets:`, `models:`), empty when absent.
pub fn front_matter_list(text: &str, key: &str) -> Vec<String> {
    list_of(
        metadata(text)
            .as_ref()
            .and_then(|metadata| metadata.get(key)),
    )
}

fn list_of(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.trim().is_empty(),
        Value::Sequence(items) => items.is_empty(),
        _ => false,
    }
}

/// The YAML between the opening `---` and the next `---` line, and the rest.
fn split_front_matter(text: &str) -> (Option<&str>, &str) {
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return (None, text);
    };
    match rest.find("\n---") {
        Some(end) => {
            let after = &rest[end + 4..];
            (
                Some(&rest[..end]),
                after.split_once('\n').map_or("", |(_, body)| body),
            )
        }
        None => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETE_MODEL: &str = "---\nlicense: apache-2.0\nlanguage: [es]\nbase_model: Qwen/Qwen2.5-0.5B-Instruct\ndatasets:\n  - equipo/corpus\nco2_eq_emissions:\n  emissions: 120\n---\n# Modelo\n\n## Sesgos, riesgos y limitaciones\nEl modelo puede reproducir sesgos del corpus.\n";
    const COMPLETE_DATASET: &str = "---\nlicense: cc-by-4.0\nlanguage:\n  - es\n---\n# Corpus\n\n## Limitaciones\nSolo español peninsular y de México.\n";

    fn failed(checks: Vec<Check>) -> Vec<(String, String)> {
        checks
            .into_iter()
            .filter(|check| !check.passed)
            .map(|check| (check.item.es, check.reason.es))
            .collect()
    }

    #[test]
    fn a_complete_pair_passes_every_check() {
        let model = check_card(CardKind::Model, COMPLETE_MODEL, &["equipo/corpus"]);
        assert_eq!(model.len(), 9);
        assert_eq!(failed(model.clone()), []);
        let dataset = check_card(CardKind::Dataset, COMPLETE_DATASET, &[]);
        assert_eq!(dataset.len(), 5);
        assert_eq!(failed(dataset.clone()), []);
    }

    #[test]
    fn each_gap_is_reported_with_its_reason() {
        let gappy = "---\nlicense: apache-2.0\nlanguage: []\ndatasets: otro/corpus\n---\n# Modelo\n\n## Uso\n[More Information Needed]\n";
        let failures = failed(check_card(CardKind::Model, gappy, &["equipo/corpus"]));
        let items: Vec<&str> = failures.iter().map(|(item, _)| item.as_str()).collect();
        assert_eq!(
            items,
            [
                "Idioma en los metadatos",
                "Modelo base en los metadatos",
                "Sesgos y limitaciones",
                "Impacto ambiental",
                "Plantilla completada",
                "Enlaces coherentes con space.toml"
            ]
        );
        let reason = |item: &str| {
            failures
                .iter()
                .find(|(name, _)| *name == item)
                .unwrap()
                .1
                .clone()
        };
        assert!(reason("Idioma en los metadatos").contains("falta `language:`"));
        assert!(reason("Plantilla completada").contains("[More Information Needed]"));
        assert!(reason("Enlaces coherentes con space.toml").contains("equipo/corpus"));

        let no_yaml = failed(check_card(
            CardKind::Dataset,
            "# Corpus\n\n## Limitaciones\nx\n",
            &[],
        ));
        assert!(
            no_yaml[0].1.contains("no tiene metadatos YAML"),
            "{no_yaml:?}"
        );
        let broken = failed(check_card(
            CardKind::Dataset,
            "---\nlicense: [unclosed\n---\n# C\n",
            &[],
        ));
        assert!(broken[0].1.contains("no se pueden leer"), "{broken:?}");
    }
}
