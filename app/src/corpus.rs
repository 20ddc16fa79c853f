//! The team's corpus (`[dataset] file`), read on the server and described for the corpus page:
//! how well it follows the hackathon's schema, how its rows spread over languages, countries,
//! domains and tasks, and a page of rows.

use serde::{Deserialize, Serialize};

/// The hackathon's corpus columns, in their order.
pub const COLUMNS: [&str; 10] = [
    "pregunta",
    "entrada",
    "respuesta",
    "idioma",
    "epoca",
    "nivel",
    "registro",
    "dominio",
    "tarea",
    "país",
];
/// Columns every row needs; the others are known when the team recorded them.
pub const REQUIRED: [&str; 4] = ["pregunta", "entrada", "respuesta", "idioma"];
/// The columns charted, by their index in [`COLUMNS`].
pub const CHARTED: [usize; 4] = [3, 9, 7, 8];
/// Rows a sample page shows.
pub const PAGE_ROWS: usize = 20;

/// One kind of problem, how often it happens and where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// `bad_rows`, `invalid_idioma`, `empty_answers`, `duplicates`.
    pub kind: String,
    pub count: usize,
    /// A few of them, e.g. «fila 12: idioma "xx"».
    pub examples: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    pub column: String,
    /// Value and rows, most first.
    pub bars: Vec<(String, usize)>,
    /// Rows with any other value.
    pub others: usize,
}

/// What the corpus page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorpusView {
    pub file: String,
    pub rows: usize,
    pub load_ms: f64,
    pub missing_columns: Vec<String>,
    pub unknown_columns: Vec<String>,
    pub problems: Vec<Problem>,
    pub charts: Vec<Chart>,
    /// 1-based.
    pub page: usize,
    pub pages: usize,
    /// First row number (1-based) of the sample.
    pub first_row: usize,
    /// Rows of this page, each with the [`COLUMNS`] in order.
    pub sample: Vec<Vec<String>>,
}

#[cfg(feature = "ssr")]
pub use read::{Corpus, CorpusError, load, load_cached};

#[cfg(feature = "ssr")]
mod read {
    use std::collections::{HashMap, HashSet};
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use std::time::{Instant, SystemTime};

    use super::{CHARTED, COLUMNS, Chart, CorpusView, PAGE_ROWS, Problem};

    /// Bars a chart shows; the rest are added up as «otros».
    const MAX_BARS: usize = 12;
    /// Rows quoted as examples of each problem.
    const MAX_EXAMPLES: usize = 5;

    #[derive(Debug, thiserror::Error)]
    pub enum CorpusError {
        #[error("cannot read {path} ({source}); fix `[dataset] file` in space.toml")]
        Read {
            path: PathBuf,
            source: std::io::Error,
        },
        #[error(
            "{path}: {reason}; fix `[dataset] file` in space.toml (allowed: a .jsonl, .json, .csv or .parquet file)"
        )]
        Format { path: PathBuf, reason: String },
    }

    /// A corpus as read, with its report.
    pub struct Corpus {
        pub file: String,
        pub rows: Vec<[String; 10]>,
        pub load_ms: f64,
        pub missing_columns: Vec<String>,
        pub unknown_columns: Vec<String>,
        pub problems: Vec<Problem>,
        pub charts: Vec<Chart>,
    }

    /// Rows as read, before they are checked; `Err` is a row that cannot be read.
    type RawRow = Result<HashMap<String, String>, String>;

    fn read_jsonl(text: &str) -> Vec<RawRow> {
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(
                |line| match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(serde_json::Value::Object(object)) => Ok(object
                        .into_iter()
                        .map(|(key, value)| {
                            let text = match value {
                                serde_json::Value::String(text) => text,
                                serde_json::Value::Null => String::new(),
                                other => other.to_string(),
                            };
                            (key, text)
                        })
                        .collect()),
                    Ok(_) => Err("not a JSON object".to_owned()),
                    Err(error) => Err(format!("not JSON ({error})")),
                },
            )
            .collect()
    }

    fn read_csv(path: &Path) -> Result<Vec<RawRow>, String> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(path)
            .map_err(|error| error.to_string())?;
        let headers: Vec<String> = reader
            .headers()
            .map_err(|error| error.to_string())?
            .iter()
            .map(str::to_owned)
            .collect();
        Ok(reader
            .records()
            .map(|record| {
                let record = record.map_err(|error| error.to_string())?;
                Ok(headers
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_owned))
                    .collect())
            })
            .collect())
    }

    /// Columns of any type are read as text (numbers, dates), nulls as empty.
    fn read_parquet(path: &Path) -> Result<Vec<RawRow>, String> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::Field;
        let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
        let reader = SerializedFileReader::new(file).map_err(|error| error.to_string())?;
        let rows = reader
            .get_row_iter(None)
            .map_err(|error| error.to_string())?;
        Ok(rows
            .map(|row| {
                let row = row.map_err(|error| error.to_string())?;
                Ok(row
                    .get_column_iter()
                    .map(|(name, field)| {
                        let text = match field {
                            Field::Str(text) => text.clone(),
                            Field::Null => String::new(),
                            other => other.to_string(),
                        };
                        (name.clone(), text)
                    })
                    .collect())
            })
            .collect())
    }

    /// Reads and checks the corpus at `path`.
    pub fn load(path: &Path) -> Result<Corpus, CorpusError> {
        let started = Instant::now();
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .unwrap_or_default()
            .to_lowercase();
        let format_error = |reason: String| CorpusError::Format {
            path: path.to_owned(),
            reason,
        };
        let raw = match extension.as_str() {
            "jsonl" | "json" => {
                read_jsonl(
                    &std::fs::read_to_string(path).map_err(|source| CorpusError::Read {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            "csv" => read_csv(path).map_err(format_error)?,
            "parquet" => read_parquet(path).map_err(format_error)?,
            other => {
                return Err(format_error(format!(
                    "the extension {other:?} is not a corpus format Vitrina reads"
                )));
            }
        };
        let mut corpus = check(raw);
        corpus.file = path.display().to_string();
        corpus.load_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(corpus)
    }

    fn problem(kind: &str, found: Vec<String>) -> Problem {
        Problem {
            kind: kind.to_owned(),
            count: found.len(),
            examples: found.into_iter().take(MAX_EXAMPLES).collect(),
        }
    }

    /// The report of rows as read; row numbers count from 1, as a spreadsheet does.
    fn check(raw: Vec<RawRow>) -> Corpus {
        let mut seen_columns = HashSet::new();
        let (mut bad_rows, mut invalid_idioma, mut empty_answers, mut duplicates) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut first_seen: HashMap<(String, String, String), usize> = HashMap::new();
        let mut rows = Vec::with_capacity(raw.len());
        for (index, row) in raw.into_iter().enumerate() {
            let number = index + 1;
            let mut row = match row {
                Ok(row) => row,
                Err(reason) => {
                    bad_rows.push(format!("{number}: {reason}"));
                    continue;
                }
            };
            seen_columns.extend(row.keys().cloned());
            let values: [String; 10] = COLUMNS.map(|column| row.remove(column).unwrap_or_default());
            let idioma = values[3].trim();
            if crate::idioma::variety_by_code(idioma).is_none() {
                invalid_idioma.push(format!("{number}: {idioma:?}"));
            }
            if values[2].trim().is_empty() {
                empty_answers.push(number.to_string());
            }
            let key = (values[0].clone(), values[1].clone(), values[2].clone());
            match first_seen.get(&key) {
                Some(first) => duplicates.push(format!("{number} = {first}")),
                None => {
                    first_seen.insert(key, number);
                }
            }
            rows.push(values);
        }
        let missing_columns = COLUMNS
            .iter()
            .filter(|column| !seen_columns.contains(**column))
            .map(|column| (*column).to_owned())
            .collect();
        let mut unknown_columns: Vec<String> = seen_columns
            .into_iter()
            .filter(|column| !COLUMNS.contains(&column.as_str()))
            .collect();
        unknown_columns.sort();
        let charts = CHARTED.iter().map(|&column| chart(&rows, column)).collect();
        Corpus {
            file: String::new(),
            rows,
            load_ms: 0.0,
            missing_columns,
            unknown_columns,
            problems: vec![
                problem("bad_rows", bad_rows),
                problem("invalid_idioma", invalid_idioma),
                problem("empty_answers", empty_answers),
                problem("duplicates", duplicates),
            ],
            charts,
        }
    }

    fn chart(rows: &[[String; 10]], column: usize) -> Chart {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for row in rows {
            let value = row[column].trim();
            *counts
                .entry(if value.is_empty() { "(vacío)" } else { value })
                .or_default() += 1;
        }
        let mut bars: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(value, count)| (value.to_owned(), count))
            .collect();
        bars.sort_by(|(a_value, a_count), (b_value, b_count)| {
            b_count.cmp(a_count).then(a_value.cmp(b_value))
        });
        let others = bars.iter().skip(MAX_BARS).map(|(_, count)| count).sum();
        bars.truncate(MAX_BARS);
        Chart {
            column: COLUMNS[column].to_owned(),
            bars,
            others,
        }
    }

    impl Corpus {
        /// The report and the rows of `page` (1-based; clamped to the pages there are).
        pub fn view(&self, page: usize) -> CorpusView {
            let pages = self.rows.len().div_ceil(PAGE_ROWS).max(1);
            let page = page.clamp(1, pages);
            let start = (page - 1) * PAGE_ROWS;
            CorpusView {
                file: self.file.clone(),
                rows: self.rows.len(),
                load_ms: self.load_ms,
                missing_columns: self.missing_columns.clone(),
                unknown_columns: self.unknown_columns.clone(),
                problems: self.problems.clone(),
                charts: self.charts.clone(),
                page,
                pages,
                first_row: start + 1,
                sample: self
                    .rows
                    .iter()
                    .skip(start)
                    .take(PAGE_ROWS)
                    .map(|row| row.to_vec())
                    .collect(),
            }
        }
    }

    /// A corpus read, and the version of its file it was read from.
    type ReadCorpus = (PathBuf, Option<SystemTime>, Arc<Corpus>);

    /// Corpora already read, by path, kept while the file does not change.
    static CACHE: Mutex<Vec<ReadCorpus>> = Mutex::new(Vec::new());

    /// The corpus at `path`, read once per version of the file.
    pub fn load_cached(path: &Path) -> Result<Arc<Corpus>, CorpusError> {
        let modified = std::fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .ok();
        let mut cache = CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, _, corpus)) = cache
            .iter()
            .find(|(cached, when, _)| cached == path && *when == modified)
        {
            return Ok(Arc::clone(corpus));
        }
        let corpus = Arc::new(load(path)?);
        cache.retain(|(cached, _, _)| cached != path);
        cache.push((path.to_owned(), modified, Arc::clone(&corpus)));
        Ok(corpus)
    }
}
