//! The checks behind `space.toml`'s newtypes (server only: see `checked_string!`).

use crate::idioma::{VARIETIES, variety_by_code};

/// Hub repository ids: `owner/name`, each part 1–96 characters of letters, digits, `-`, `_`,
/// `.`, not starting or ending with `-` or `.`, without `--` or `..` (the Hub's own rules).
pub(super) fn check_hub_id(id: &str) -> Result<(), String> {
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

pub(super) fn check_hub_user(user: &str) -> Result<(), String> {
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
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !part.starts_with(['-', '.'])
        && !part.ends_with(['-', '.'])
        && !part.contains("--")
        && !part.contains("..")
}

pub(super) fn check_idioma(code: &str) -> Result<(), String> {
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
    "apache-2.0",
    "mit",
    "openrail",
    "bigscience-openrail-m",
    "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m",
    "afl-3.0",
    "artistic-2.0",
    "bsl-1.0",
    "bsd",
    "bsd-2-clause",
    "bsd-3-clause",
    "bsd-3-clause-clear",
    "c-uda",
    "cc",
    "cc0-1.0",
    "cc-by-2.0",
    "cc-by-2.5",
    "cc-by-3.0",
    "cc-by-4.0",
    "cc-by-sa-3.0",
    "cc-by-sa-4.0",
    "cc-by-nc-2.0",
    "cc-by-nc-3.0",
    "cc-by-nc-4.0",
    "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-2.0",
    "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0",
    "cdla-permissive-1.0",
    "cdla-permissive-2.0",
    "wtfpl",
    "ecl-2.0",
    "epl-1.0",
    "epl-2.0",
    "etalab-2.0",
    "eupl-1.1",
    "eupl-1.2",
    "agpl-3.0",
    "gfdl",
    "gpl",
    "gpl-2.0",
    "gpl-3.0",
    "lgpl",
    "lgpl-2.1",
    "lgpl-3.0",
    "isc",
    "h-research",
    "intel-research",
    "lppl-1.3c",
    "ms-pl",
    "apple-ascl",
    "apple-amlr",
    "mpl-2.0",
    "odc-by",
    "odbl",
    "openrail++",
    "osl-3.0",
    "postgresql",
    "ofl-1.1",
    "ncsa",
    "unlicense",
    "zlib",
    "pddl",
    "lgpl-lr",
    "deepfloyd-if-license",
    "fair-noncommercial-research-license",
    "llama2",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "llama4",
    "gemma",
    "unknown",
    "other",
];

pub(super) fn check_license(license: &str) -> Result<(), String> {
    if HUB_LICENSES.contains(&license) {
        return Ok(());
    }
    Err(format!(
        "found {license:?}{}; allowed: a Hub license id such as \"apache-2.0\", \"mit\", \"cc-by-4.0\", \"llama3\", \"gemma\" or \"other\" (all: {})",
        did_you_mean_suffix(license, HUB_LICENSES),
        HUB_LICENSES.join(", ")
    ))
}

pub(super) fn check_web_link(link: &str) -> Result<(), String> {
    let parsed = url::Url::parse(link);
    match parsed {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(format!(
            "found {link:?}; allowed: a full http(s) address, e.g. \"https://github.com/tu-usuario\""
        )),
    }
}

pub(super) fn check_edition(year: &str) -> Result<(), String> {
    if crate::editions::edition(year).is_some() {
        return Ok(());
    }
    let years: Vec<String> = crate::editions::editions()
        .iter()
        .map(|edition| format!("{:?}", edition.year))
        .collect();
    Err(format!(
        "found {year:?}; allowed: {} (the editions in space/editions.toml)",
        years.join(", ")
    ))
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
    did_you_mean(found, candidates)
        .map(|best| format!(" (did you mean {best:?}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_follow_the_hub_rules() {
        for good in [
            "somosnlp/mi-corpus",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            "a/b_c.d",
        ] {
            assert!(check_hub_id(good).is_ok(), "{good}");
        }
        for bad in [
            "corpus",
            "a/b/c",
            "/x",
            "a/",
            "a b/c",
            "-a/b",
            "a/b.",
            "a--b/c",
            "a/b..c",
            "https://huggingface.co/a/b",
        ] {
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
        assert_eq!(
            did_you_mean("es-mx", &["es", "es_mx", "es_ar"]),
            Some("es_mx")
        );
        assert_eq!(
            did_you_mean("apache2", &["mit", "apache-2.0"]),
            Some("apache-2.0")
        );
        assert_eq!(did_you_mean("fr", &["es", "eu"]), None);
        assert_eq!(did_you_mean("zzzzzz", &["title", "summary"]), None);
    }
}
