//! The hackathon's rules for model and dataset cards (Hugging Face `README.md` with YAML front
//! matter), checked as a judge would: metadata, a bias/limitations section, the environmental
//! impact of training, no template placeholders left, and links that agree with space.toml.
//! Each check says why it passed or failed, in Spanish first (the judges' page shows it).

use serde_yaml_ng::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardKind {
    Model,
    Dataset,
}

pub use crate::judge::{Check, Evaluation};

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
    let mut checks = vec![match (&front_matter, &metadata) {
        (None, _) => fail(
            "Metadatos YAML",
            "la tarjeta no tiene metadatos YAML: empieza el README.md con un bloque entre dos líneas `---`",
        ),
        (Some(_), None) => fail(
            "Metadatos YAML",
            "los metadatos YAML no se pueden leer: revisa la sangría y las comillas",
        ),
        (Some(_), Some(_)) => pass("Metadatos YAML", "presentes y válidos"),
    }];
    let field = |key: &str| {
        metadata
            .as_ref()
            .and_then(|metadata| metadata.get(key))
            .filter(|value| !is_empty(value))
    };
    let mut required = vec![
        ("license", "Licencia en los metadatos"),
        ("language", "Idioma en los metadatos"),
    ];
    if kind == CardKind::Model {
        required.extend([
            ("base_model", "Modelo base en los metadatos"),
            ("datasets", "Conjuntos de datos en los metadatos"),
        ]);
    }
    for (key, item) in required {
        checks.push(match field(key) {
            Some(_) => pass(item, &format!("`{key}` está indicado")),
            None => fail(item, &format!("falta `{key}:` en los metadatos: añádelo")),
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
    checks.push(if has_heading(BIAS_HEADINGS) {
        pass("Sesgos y limitaciones", "la tarjeta tiene una sección de sesgos, riesgos o limitaciones")
    } else {
        fail("Sesgos y limitaciones", "no hay sección de sesgos, riesgos o limitaciones: añade una (p. ej. «## Sesgos, riesgos y limitaciones»)")
    });
    if kind == CardKind::Model {
        checks.push(if field("co2_eq_emissions").is_some() || has_heading(ENVIRONMENT_HEADINGS) {
            pass("Impacto ambiental", "hay `co2_eq_emissions` o una sección de impacto ambiental")
        } else {
            fail("Impacto ambiental", "no hay `co2_eq_emissions` en los metadatos ni sección de impacto ambiental: informa de la huella del entrenamiento")
        });
    }

    let left: Vec<&str> = PLACEHOLDERS
        .iter()
        .copied()
        .filter(|placeholder| text.contains(placeholder))
        .collect();
    checks.push(if left.is_empty() {
        pass("Plantilla completada", "no queda texto de la plantilla")
    } else {
        fail(
            "Plantilla completada",
            &format!("queda texto de la plantilla: {}", left.join(", ")),
        )
    });

    if kind == CardKind::Model {
        let named = list_of(field("datasets"));
        let missing: Vec<&str> = expected_datasets
            .iter()
            .copied()
            .filter(|id| !named.iter().any(|name| name == id))
            .collect();
        checks.push(if missing.is_empty() {
            pass(
                "Enlaces coherentes con space.toml",
                "`datasets:` de la tarjeta nombra todos los conjuntos de datos de space.toml",
            )
        } else {
            fail(
                "Enlaces coherentes con space.toml",
                &format!(
                    "`datasets:` de la tarjeta no nombra {} (que está en space.toml)",
                    missing.join(", ")
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
pub fn emissions(text: &str) -> Result<String, String> {
    let emissions = metadata(text)
        .and_then(|metadata| metadata.get("co2_eq_emissions").cloned())
        .ok_or("la tarjeta del modelo no declara `co2_eq_emissions` en sus metadatos")?;
    let field = |key: &str| {
        emissions.get(key).and_then(|value| match value {
            Value::Number(number) => Some(number.to_string()),
            Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
            _ => None,
        })
    };
    let missing: Vec<&str> = ["emissions", "source", "training_type"]
        .into_iter()
        .filter(|key| field(key).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "a `co2_eq_emissions` le falta {}: CodeCarbon da `emissions` (gramos de CO₂), `source` (\"codecarbon\") y `training_type`",
            missing.join(", ")
        ));
    }
    Ok(format!(
        "{} g de CO₂ ({}, {})",
        field("emissions").unwrap_or_default(),
        field("source").unwrap_or_default(),
        field("training_type").unwrap_or_default()
    ))
}

fn pass(item: &str, reason: &str) -> Check {
    Check::pass(item, reason)
}

fn fail(item: &str, reason: &str) -> Check {
    Check::fail(item, reason)
}

/// A list in a README's front matter (`datasets:`, `models:`), empty when absent.
pub fn front_matter_list(text: &str, key: &str) -> Vec<String> {
    let metadata: Option<Value> = split_front_matter(text)
        .0
        .and_then(|yaml| serde_yaml_ng::from_str(yaml).ok());
    list_of(metadata.as_ref().and_then(|metadata| metadata.get(key)))
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
            .map(|check| (check.item, check.reason))
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
