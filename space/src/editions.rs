//! The hackathon's editions and their rules, as data: `space/editions.toml`, which a new
//! edition extends without a change to the code (its rules name checks the judges' page
//! already makes). Read once, the first time asked for; a test reads it at build time, so a
//! broken file never ships.

use std::sync::OnceLock;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edition {
    /// What `[project] edition` says: "2024", "2025"…
    pub year: String,
    pub name: String,
    /// The Hub organisation the edition's demos and repositories are published under.
    pub organisation: String,
    /// The rules checked beyond those every edition shares.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub check: RuleCheck,
    /// The rule in the organisers' words, paraphrased: why the check applies.
    pub rule: Wording,
}

/// A text in the interface's three languages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wording {
    pub es: String,
    pub en: String,
    pub pt: String,
}

/// The checks an edition's rule can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleCheck {
    /// `[project] video`: the 5-minute video.
    Video,
    /// Every `[[datasets]]` has its `kind`.
    DatasetKinds,
    /// Datasets and models under the edition's organisation (a warning otherwise).
    Organisation,
    /// `model-index` results in the model card.
    Evaluation,
    /// `co2_eq_emissions` (CodeCarbon) in the model card.
    Emissions,
}

#[derive(Deserialize)]
struct File {
    edition: Vec<Edition>,
}

/// Every edition, oldest first.
pub fn editions() -> &'static [Edition] {
    static EDITIONS: OnceLock<Vec<Edition>> = OnceLock::new();
    EDITIONS.get_or_init(|| {
        toml::from_str::<File>(include_str!("../editions.toml"))
            .expect("space/editions.toml is valid (its test reads it)")
            .edition
    })
}

pub fn edition(year: &str) -> Option<&'static Edition> {
    editions().iter().find(|edition| edition.year == year)
}

/// The default: the last edition in the file.
pub fn newest() -> &'static Edition {
    editions()
        .last()
        .expect("space/editions.toml has editions (its test checks)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editions_file_reads_and_years_are_unique() {
        let all = editions();
        assert!(all.len() >= 3);
        for (index, edition) in all.iter().enumerate() {
            assert!(
                all[index + 1..]
                    .iter()
                    .all(|other| other.year != edition.year),
                "{} twice",
                edition.year
            );
            assert!(!edition.organisation.is_empty() && !edition.name.is_empty());
            assert!(edition.rules.iter().all(|rule| {
                [&rule.rule.es, &rule.rule.en, &rule.rule.pt]
                    .iter()
                    .all(|text| !text.trim().is_empty())
            }));
        }
        assert!(
            edition("2024").unwrap().rules.is_empty(),
            "2024 is as before"
        );
        assert_eq!(edition("2025").unwrap().rules.len(), 5);
        assert_eq!(newest().year, "2026");
    }
}
