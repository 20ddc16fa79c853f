//! Reading `space.toml` from disk, with errors a team can act on.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Space, did_you_mean};

#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error(
        "cannot read {}: {source}. Pass the team's file with --config FILE (default: space.toml in the working directory)",
        path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<InvalidSpace>),
}

/// Where and why `space.toml` is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpace {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending key, e.g. `project.ods[1]`.
    pub key: String,
    /// What was found and what is allowed.
    pub problem: String,
    source_line: String,
}

impl fmt::Display for InvalidSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            file,
            line,
            column,
            key,
            problem,
            source_line,
        } = self;
        writeln!(f, "{file}:{line}:{column}: key `{key}`: {problem}")?;
        writeln!(f, "{line:>5} | {source_line}")?;
        write!(f, "{:>5} | {}^", "", " ".repeat(column.saturating_sub(1)))
    }
}

pub fn load(path: &Path) -> Result<Space, SpaceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpaceError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses the text of a `space.toml`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Space, SpaceError> {
    let invalid = |error: &toml::de::Error, path: String| {
        SpaceError::Invalid(Box::new(describe(text, file, error, path)))
    };
    // A syntax error has no key yet: name the grammar instead.
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|error| invalid(&error, "(TOML syntax)".to_owned()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        invalid(error.inner(), path)
    })
}

fn describe(text: &str, file: &str, error: &toml::de::Error, path: String) -> InvalidSpace {
    let offset = error.span().map_or(0, |span| span.start).min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = text[line_start..offset].chars().count() + 1;
    let source_line = text[line_start..].lines().next().unwrap_or("").to_owned();
    let path = if path == "." { String::new() } else { path };
    let (key, problem) = explain(error.message().trim(), path);
    InvalidSpace {
        file: file.to_owned(),
        line,
        column,
        key,
        problem,
        source_line,
    }
}

/// Turns serde's wording into the key that is wrong and what to do about it.
fn explain(message: &str, path: String) -> (String, String) {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names = backticked(rest);
        let (found, allowed) = names
            .split_first()
            .map_or(("", &[][..]), |(found, allowed)| (*found, allowed));
        // The path may already end with the unknown key; the table is what holds it.
        let table_path = path
            .strip_suffix(found)
            .map_or(path.as_str(), |parent| parent.trim_end_matches('.'));
        let suggestion = did_you_mean(found, allowed)
            .map(|best| format!(" (did you mean `{best}`?)"))
            .unwrap_or_default();
        let problem = format!(
            "unknown key `{found}` in {}{suggestion}; allowed: {}",
            table_name(table_path),
            allowed.join(", ")
        );
        return (join(table_path, found), problem);
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let missing = backticked(rest).first().copied().unwrap_or(rest);
        let problem = format!(
            "missing key `{missing}` in {}; add it (see README, \"space.toml\")",
            table_name(&path)
        );
        return (join(&path, missing), problem);
    }
    let key = if path.is_empty() {
        "(file)".to_owned()
    } else {
        path
    };
    (key, message.to_owned())
}

fn table_name(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("[{path}]")
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}
