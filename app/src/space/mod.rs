//! `space.toml`, the one file a team edits: what the project page shows and which model chats.
//!
//! Every value is checked while it is read (through `try_from` newtypes and `deserialize_with`
//! helpers), so a mistake is reported with the file, line, column and key where it was written.
//! The same types travel to the browser, which re-checks them for free on deserialisation.

#[cfg(feature = "ssr")]
mod load;
#[cfg(feature = "ssr")]
pub use load::{InvalidSpace, SpaceError, load, parse};

use serde::{Deserialize, Deserializer, Serialize};

use crate::idioma::{VARIETIES, Variety, variety_by_code};
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
    ($(#[$doc:meta])* $name:ident, $check:path) => {
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
                $check(&value).map(|()| Self(value))
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

/// Hub repository ids: `owner/name`, each part 1–96 characters of letters, digits, `-`, `_`,
/// `.`, not starting or ending with `-` or `.`, without `--` or `..` (the Hub's own rules).
fn check_hub_id(id: &str) -> Result<(), String> {
    let valid = match id.split_once('/') {
        Some((owner, name)) => is_hub_name(owner) && is_hub_name(name),
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "found {id:?}; allowed: a Hugging Face id `owner/name` (letters, digits, '-', '_', '.'), e.g. \"somosnlp/mi-corpus\""
        ))
    }
}

fn check_hub_user(user: &str) -> Result<(), String> {
    if is_hub_name(user) {
        Ok(())
    } else {
        Err(format!(
            "found {user:?}; allowed: a Hugging Face username (letters, digits, '-', '_', '.'), without '@' or a URL, e.g. \"tu-usuario\""
        ))
    }
}

fn is_hub_name(part: &str) -> bool {
    (1..=96).contains(&part.len())
        && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !part.starts_with(['-', '.'])
        && !part.ends_with(['-', '.'])
        && !part.contains("--")
        && !part.contains("..")
}

fn check_idioma(code: &str) -> Result<(), String> {
    if variety_by_code(code).is_some() {
        return Ok(());
    }
    let codes: Vec<&str> = VARIETIES.iter().map(|variety| variety.code).collect();
    Err(format!(
        "found {code:?}{}; allowed: {}",
        did_you_mean_suffix(code, &codes),
        codes.join(", ")
    ))
}

/// License identifiers the Hub accepts in a repository's `license:` field.
pub const HUB_LICENSES: &[&str] = &[
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0", "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0",
    "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0",
    "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
    "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0",
    "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl",
    "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "h-research", "intel-research",
    "lppl-1.3c", "ms-pl", "apple-ascl", "apple-amlr", "mpl-2.0", "odc-by", "odbl", "openrail++",
    "osl-3.0", "postgresql", "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr",
    "deepfloyd-if-license", "fair-noncommercial-research-license", "llama2", "llama3",
    "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "unknown", "other",
];

fn check_license(license: &str) -> Result<(), String> {
    if HUB_LICENSES.contains(&license) {
        return Ok(());
    }
    Err(format!(
        "found {license:?}{}; allowed: a Hub license id such as \"apache-2.0\", \"mit\", \"cc-by-4.0\", \"llama3\", \"gemma\" or \"other\" (all: {})",
        did_you_mean_suffix(license, HUB_LICENSES),
        HUB_LICENSES.join(", ")
    ))
}

fn check_web_link(link: &str) -> Result<(), String> {
    let parsed = url::Url::parse(link);
    match parsed {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(format!("found {link:?}; allowed: a full http(s) address, e.g. \"https://github.com/tu-usuario\"")),
    }
}

/// The closest candidate to a misspelt word, if one is close enough to be what was meant.
pub fn did_you_mean<'a>(found: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let found = found.to_lowercase();
    candidates
        .iter()
        .map(|candidate| (strsim::jaro_winkler(&found, candidate), *candidate))
        .filter(|(similarity, _)| *similarity >= 0.8)
        .max_by(|(a, _), (b, _)| a.total_cmp(b))
        .map(|(_, candidate)| candidate)
}

fn did_you_mean_suffix(found: &str, candidates: &[&str]) -> String {
    did_you_mean(found, candidates).map(|best| format!(" (did you mean {best:?}?)")).unwrap_or_default()
}

fn non_blank<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.trim().is_empty() {
        return Err(serde::de::Error::custom("found an empty text; allowed: any non-empty text"));
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
        return Err(serde::de::Error::custom("found an empty list; allowed: a list with at least one entry"));
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
    fn hub_ids_follow_the_hub_rules() {
        for good in ["somosnlp/mi-corpus", "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "a/b_c.d"] {
            assert!(check_hub_id(good).is_ok(), "{good}");
        }
        for bad in ["corpus", "a/b/c", "/x", "a/", "a b/c", "-a/b", "a/b.", "a--b/c", "a/b..c", "https://huggingface.co/a/b"] {
            assert!(check_hub_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_must_be_http() {
        assert!(check_web_link("https://github.com/x").is_ok());
        assert!(check_web_link("javascript:alert(1)").is_err());
        assert!(check_web_link("github.com/x").is_err());
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(did_you_mean("titel", &["title", "summary"]), Some("title"));
        assert_eq!(did_you_mean("es-mx", &["es", "es_mx", "es_ar"]), Some("es_mx"));
        assert_eq!(did_you_mean("apache2", &["mit", "apache-2.0"]), Some("apache-2.0"));
        assert_eq!(did_you_mean("fr", &["es", "eu"]), None);
        assert_eq!(did_you_mean("zzzzzz", &["title", "summary"]), None);
    }

    #[test]
    fn paragraphs_split_at_blank_lines_and_reflow() {
        assert_eq!(paragraphs("Uno\ndos.\n\n\n  Tres. \n"), vec!["Uno dos.", "Tres."]);
    }
}
