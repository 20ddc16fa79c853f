//! `space.toml`, the one file a team edits: what the project page shows and which model chats.
//!
//! Every value is checked while it is read (through `try_from` newtypes and `deserialize_with`
//! helpers), so a mistake is reported with the file, line, column and key where it was written.
//! The same types travel to the browser, which re-checks them for free on deserialisation.
//! The server and the pages both depend on this crate; reading the file from disk and the
//! server-only tables need the `load` feature.

#[cfg(feature = "load")]
mod checks;
#[cfg(feature = "load")]
pub mod editions;
pub mod idioma;
#[cfg(feature = "load")]
mod load;
pub mod ods;
mod settings;
#[cfg(feature = "load")]
pub use checks::{HUB_LICENSES, did_you_mean};
#[cfg(feature = "load")]
pub use load::{InvalidSpace, SpaceError, load, parse};
pub use settings::{BrowserSettings, ChatDefaults, SMALL_BROWSER_MODEL};
#[cfg(feature = "load")]
pub use settings::{
    FeedbackSettings, Limits, ModelSettings, ModelSource, ServerBackend, Upstream, UpstreamTimeouts,
};

use serde::{Deserialize, Deserializer, Serialize};

use crate::idioma::{Variety, variety_by_code};
use crate::ods::{GOALS, Goal, goal};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Space {
    pub project: Project,
    #[serde(deserialize_with = "non_empty")]
    pub team: Vec<Member>,
    #[serde(deserialize_with = "non_empty")]
    pub datasets: Vec<HubRepo>,
    #[serde(deserialize_with = "non_empty")]
    pub models: Vec<HubRepo>,
    #[serde(default)]
    pub examples: Vec<ChatExample>,
    /// Server only, like `limits`.
    #[cfg(feature = "load")]
    #[serde(default, skip_serializing)]
    pub model: ModelSettings,
    #[serde(default)]
    pub chat: ChatDefaults,
    #[serde(default)]
    pub browser: BrowserSettings,
    /// Server only: the browser has no use for them.
    #[cfg(feature = "load")]
    #[serde(default, skip_serializing)]
    pub limits: Limits,
    /// Server only: where answers are generated (`[server]`).
    #[cfg(feature = "load")]
    #[serde(default, rename = "server", skip_serializing)]
    pub backend: ServerBackend,
    /// Server only: a base model that answers beside the team's on the judges' page.
    #[cfg(feature = "load")]
    #[serde(default, skip_serializing)]
    pub compare: Option<ModelSettings>,
    /// Server only: what the feedback exports make of ratings.
    #[cfg(feature = "load")]
    #[serde(default, skip_serializing)]
    pub feedback: FeedbackSettings,
    /// Server only: the model card and dataset card the judges' page checks.
    #[cfg(feature = "load")]
    #[serde(default, skip_serializing)]
    pub cards: Cards,
    /// Server only: the team's corpus, described on the corpus page.
    #[cfg(feature = "load")]
    #[serde(default, skip_serializing, deserialize_with = "dataset_table")]
    pub dataset: Option<DatasetFile>,
}

/// `[dataset]` is one table; `[[dataset]]` is almost always `[[datasets]]` mistyped.
#[cfg(feature = "load")]
fn dataset_table<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DatasetFile>, D::Error> {
    let value = toml::Value::deserialize(deserializer)?;
    if value.is_array() {
        return Err(serde::de::Error::custom(
            "found a list ([[dataset]]); allowed: one table [dataset] with `file = \"…\"` (your corpus file). Hub datasets go in [[datasets]]: did you mean `datasets`?",
        ));
    }
    DatasetFile::deserialize(value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `[cards]`: README.md files of the model and dataset repositories, as paths on this machine
/// (relative to the folder the server runs in).
#[cfg(feature = "load")]
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cards {
    pub model: Option<std::path::PathBuf>,
    pub dataset: Option<std::path::PathBuf>,
}

/// `[dataset]`: the corpus file (JSONL, CSV or Parquet in the hackathon's schema).
#[cfg(feature = "load")]
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetFile {
    pub file: std::path::PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    #[serde(deserialize_with = "non_blank")]
    pub title: String,
    #[serde(deserialize_with = "non_blank")]
    pub summary: String,
    #[serde(deserialize_with = "non_blank")]
    pub motivation: String,
    #[serde(deserialize_with = "non_blank")]
    pub impact: String,
    #[serde(deserialize_with = "non_empty")]
    pub future: Vec<String>,
    #[serde(deserialize_with = "non_empty")]
    pub ods: Vec<OdsNumber>,
    #[serde(deserialize_with = "non_empty")]
    pub languages: Vec<IdiomaCode>,
    pub license: License,
    /// The hackathon edition whose rules the judges' page checks (`space/editions.toml`);
    /// the newest there by default.
    #[serde(default)]
    pub edition: EditionYear,
    /// The 5-minute video the 2025+ editions ask for, shown on the page with the team's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<WebLink>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    #[serde(deserialize_with = "non_blank")]
    pub name: String,
    pub hub: HubUser,
    #[serde(deserialize_with = "non_blank")]
    pub role: String,
    #[serde(default)]
    pub links: Vec<WebLink>,
}

/// A dataset or model on the Hugging Face Hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubRepo {
    pub id: HubId,
    #[serde(deserialize_with = "non_blank")]
    pub description: String,
    /// A dataset's kind, as the 2025+ editions name them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<DatasetKind>,
}

/// What a dataset holds, in the 2025+ editions' words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// Instructions: questions and answers.
    Prompt,
    /// Preference pairs.
    Dpo,
    /// Rated answers (unpaired preferences).
    Kto,
    /// Images with their descriptions (the vision option).
    Image,
}

/// A question the public can send to the model with one click; the names follow the
/// hackathon's corpus format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatExample {
    #[serde(deserialize_with = "non_blank")]
    pub pregunta: String,
    #[serde(default, alias = "entrada")]
    pub contexto: Option<String>,
}

impl HubRepo {
    pub fn dataset_url(&self) -> String {
        format!("https://huggingface.co/datasets/{}", self.id.as_str())
    }

    pub fn model_url(&self) -> String {
        format!("https://huggingface.co/{}", self.id.as_str())
    }
}

impl Member {
    pub fn hub_url(&self) -> String {
        format!("https://huggingface.co/{}", self.hub.as_str())
    }
}

/// Declares a `String` newtype whose every value passed `$check`.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                // The browser only receives what the server has already checked; skipping the
                // checks there keeps their tables (and `url`'s) out of the wasm bundle.
                #[cfg(feature = "load")]
                checks::$check(&value)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

checked_string!(
    /// `owner/name` of a Hub dataset or model.
    HubId,
    check_hub_id
);
checked_string!(
    /// A Hugging Face username.
    HubUser,
    check_hub_user
);
checked_string!(
    /// One of the hackathon's `idioma` codes (see [`crate::idioma`]).
    IdiomaCode,
    check_idioma
);
checked_string!(
    /// A license identifier as the Hub's `license:` metadata accepts it.
    License,
    check_license
);
checked_string!(
    /// An `http(s)` address: anything else (`javascript:`…) never reaches an `href`.
    WebLink,
    check_web_link
);
checked_string!(
    /// A year of `space/editions.toml`: "2024", "2025"…
    EditionYear,
    check_edition
);

impl Default for EditionYear {
    /// The newest edition (on the server; the browser only ever gets the server's value).
    fn default() -> Self {
        #[cfg(feature = "load")]
        return Self(editions::newest().year.clone());
        #[cfg(not(feature = "load"))]
        Self(String::new())
    }
}

impl IdiomaCode {
    pub fn variety(&self) -> &'static Variety {
        variety_by_code(&self.0).expect("checked on deserialisation")
    }
}

/// The number of one of the 17 Sustainable Development Goals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct OdsNumber(u8);

impl OdsNumber {
    pub fn goal(self) -> &'static Goal {
        goal(self.0).expect("checked on deserialisation")
    }
}

impl TryFrom<i64> for OdsNumber {
    type Error = String;
    fn try_from(number: i64) -> Result<Self, String> {
        match u8::try_from(number).ok().and_then(goal) {
            Some(goal) => Ok(Self(goal.number)),
            None => Err(format!(
                "found {number}; allowed: a whole number from 1 to {} (the UN Sustainable Development Goals, ODS)",
                GOALS.len()
            )),
        }
    }
}

impl From<OdsNumber> for u8 {
    fn from(number: OdsNumber) -> u8 {
        number.0
    }
}

fn non_blank<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.trim().is_empty() {
        return Err(serde::de::Error::custom(
            "found an empty text; allowed: any non-empty text",
        ));
    }
    Ok(text)
}

fn non_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<T>::deserialize(deserializer)?;
    if items.is_empty() {
        return Err(serde::de::Error::custom(
            "found an empty list; allowed: a list with at least one entry",
        ));
    }
    Ok(items)
}

/// Splits a long text written in `space.toml` into paragraphs at blank lines.
pub fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|paragraph| !paragraph.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_split_at_blank_lines_and_reflow() {
        assert_eq!(
            paragraphs("Uno\ndos.\n\n\n  Tres. \n"),
            vec!["Uno dos.", "Tres."]
        );
    }
}
