//! Storage of visitors' feedback in SQLite (one file in the data directory, WAL, every write
//! synced before it is acknowledged), and the exports that turn it into a corpus: liked answers
//! in the hackathon's schema, and preference pairs for DPO.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use wire::feedback::{AnswerReport, Rating, StoredAnswer};

/// What the store cannot do, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the feedback database {path}: {source}; set --data-dir (or VITRINA_DATA_DIR) to a writable folder"
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "cannot create the data directory {path}: {source}; set --data-dir (or VITRINA_DATA_DIR) to a writable folder"
    )]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the feedback database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The receipt of an answer already stored, sent again under another `answer_key`.
    #[error(
        "this answer is already stored (permalink {0}); only the visitor who made it can change its rating"
    )]
    AlreadyStored(String),
}

pub struct FeedbackStore {
    path: PathBuf,
    connection: Mutex<Connection>,
}

/// The data directory when none is given: a Space's persistent storage (`/data`) when it is
/// mounted, else `./data`.
pub fn default_data_dir() -> PathBuf {
    let persistent = Path::new("/data");
    if persistent.is_dir() {
        persistent.to_owned()
    } else {
        PathBuf::from("data")
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    answer_key TEXT NOT NULL UNIQUE,
    conversation TEXT NOT NULL,
    turn_key TEXT NOT NULL,
    messages TEXT NOT NULL,
    pregunta TEXT NOT NULL,
    entrada TEXT,
    respuesta TEXT NOT NULL,
    rating INTEGER NOT NULL DEFAULT 0,
    comment TEXT,
    provenance TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_turn ON answers (turn_key);
";

/// Databases made before receipts get their column; one answer is stored once.
fn add_receipts(connection: &Connection) -> rusqlite::Result<()> {
    let has_receipts = connection
        .prepare("SELECT 1 FROM pragma_table_info('answers') WHERE name = 'receipt'")?
        .exists([])?;
    if !has_receipts {
        connection.execute_batch("ALTER TABLE answers ADD COLUMN receipt TEXT;")?;
    }
    connection
        .execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS answers_by_receipt ON answers (receipt);")
}

impl FeedbackStore {
    /// Opens (or creates) `feedback.sqlite` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("feedback.sqlite");
        let open = |path: &Path| -> rusqlite::Result<Connection> {
            let connection = Connection::open(path)?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            // FULL: an acknowledged 👍 is on disk even if the machine, not just the server, stops.
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.busy_timeout(std::time::Duration::from_secs(5))?;
            connection.execute_batch(SCHEMA)?;
            add_receipts(&connection)?;
            Ok(connection)
        };
        let connection = open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            connection: Mutex::new(connection),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores an answer, or updates its verdict and comment when the browser sent it before;
    /// returns its id. The text of a stored answer never changes.
    pub fn save(&self, report: &AnswerReport) -> Result<String, StoreError> {
        let now = now_rfc3339();
        let connection = self.connection();
        let existing: Option<String> = connection
            .query_row(
                "SELECT id FROM answers WHERE answer_key = ?1",
                [&report.answer_key],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            connection.execute(
                "UPDATE answers SET rating = ?1, comment = COALESCE(?2, comment), updated_at = ?3 WHERE id = ?4",
                params![report.rating.as_i64(), report.comment, now, id],
            )?;
            return Ok(id);
        }
        if let Some(receipt) = &report.receipt {
            let stored: Option<String> = connection
                .query_row(
                    "SELECT id FROM answers WHERE receipt = ?1",
                    [receipt],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(id) = stored {
                return Err(StoreError::AlreadyStored(wire::feedback::permalink(&id)));
            }
        }
        let id = new_id();
        connection.execute(
            "INSERT INTO answers (id, answer_key, conversation, turn_key, messages, pregunta, entrada, respuesta, rating, comment, provenance, created_at, updated_at, receipt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13)",
            params![
                id,
                report.answer_key,
                report.conversation,
                report.turn_key,
                serde_json::to_string(&report.messages).expect("messages serialise"),
                report.pregunta,
                report.entrada,
                report.respuesta,
                report.rating.as_i64(),
                report.comment,
                serde_json::to_string(&report.provenance).expect("provenance serialises"),
                now,
                report.receipt,
            ],
        )?;
        Ok(id)
    }

    /// Whether an answer under `answer_key`, or with `receipt`, is stored.
    pub fn knows(&self, answer_key: &str, receipt: &str) -> Result<bool, StoreError> {
        Ok(self.connection().query_row(
            "SELECT EXISTS (SELECT 1 FROM answers WHERE answer_key = ?1 OR receipt = ?2)",
            [answer_key, receipt],
            |row| row.get(0),
        )?)
    }

    pub fn get(&self, id: &str) -> Result<Option<StoredAnswer>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare(&format!("{SELECT_ANSWER} WHERE id = ?1"))?;
        Ok(statement.query_row([id], read_answer).optional()?)
    }

    /// Every stored answer, oldest first.
    pub fn all(&self) -> Result<Vec<StoredAnswer>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare(&format!("{SELECT_ANSWER} ORDER BY rowid"))?;
        let answers = statement
            .query_map([], read_answer)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(answers)
    }
}

/// Everything but `answer_key`, which is never read back: it is what lets the visitor who
/// made the answer change its rating, so it leaves the database only to be compared.
const SELECT_ANSWER: &str = "SELECT id, conversation, turn_key, messages, pregunta, entrada, respuesta, rating, comment, provenance, created_at FROM answers";

fn read_answer(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAnswer> {
    Ok(StoredAnswer {
        id: row.get(0)?,
        created_at: row.get(10)?,
        report: AnswerReport {
            answer_key: String::new(),
            conversation: row.get(1)?,
            turn_key: row.get(2)?,
            messages: json_column(row, 3)?,
            pregunta: row.get(4)?,
            entrada: row.get(5)?,
            respuesta: row.get(6)?,
            rating: Rating::from_i64(row.get(7)?),
            comment: row.get(8)?,
            provenance: json_column(row, 9)?,
            // Kept to refuse it a second time, never served.
            receipt: None,
        },
    })
}

fn json_column<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            Box::new(error),
        )
    })
}

/// 64 random bits in hex: permalinks that cannot be guessed from one another.
fn new_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// One row of the hackathon's corpus schema.
#[derive(Debug, Serialize)]
pub struct CorpusRow<'a> {
    pub pregunta: &'a str,
    pub entrada: &'a str,
    pub respuesta: &'a str,
    pub idioma: &'a str,
}

/// Liked answers as corpus rows, one JSON line each, in the order they were given.
pub fn corpus_lines(answers: Vec<StoredAnswer>, idioma: String) -> impl Iterator<Item = String> {
    answers
        .into_iter()
        .filter(|answer| answer.report.rating == Rating::Up)
        .map(move |answer| {
            let row = CorpusRow {
                pregunta: &answer.report.pregunta,
                entrada: answer.report.entrada.as_deref().unwrap_or_default(),
                respuesta: &answer.report.respuesta,
                idioma: &idioma,
            };
            serde_json::to_string(&row).expect("a corpus row serialises") + "\n"
        })
}

/// The question as the model read it (with its context, if any): what a preference trainer
/// prompts with.
fn prompt_of(report: &AnswerReport) -> &str {
    report
        .messages
        .last()
        .map_or("", |message| message.content.as_str())
}

#[derive(Debug, Serialize)]
struct PreferencePair<'a> {
    prompt: &'a str,
    chosen: &'a str,
    rejected: &'a str,
}

/// Preference pairs: for every question, each liked answer against each alternative that was
/// disliked or not liked (the visitor asked for another one), at most `per_question` of them,
/// one JSON line each, made as they are sent. The prompt is the question as the model read it.
/// Questions come in the order they were first answered, so that the export is stable.
pub fn dpo_lines(answers: Vec<StoredAnswer>, per_question: usize) -> impl Iterator<Item = String> {
    let mut questions: Vec<Vec<usize>> = Vec::new();
    let mut by_turn: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (index, answer) in answers.iter().enumerate() {
        let question = *by_turn
            .entry(answer.report.turn_key.as_str())
            .or_insert_with(|| {
                questions.push(Vec::new());
                questions.len() - 1
            });
        questions[question].push(index);
    }
    questions.into_iter().flat_map(move |question| {
        let of = |index: &usize| &answers[*index].report;
        let prompt = prompt_of(of(&question[0]));
        let chosen = question
            .iter()
            .map(of)
            .filter(|answer| answer.rating == Rating::Up);
        let pairs: Vec<String> = chosen
            .flat_map(|chosen| {
                question
                    .iter()
                    .map(of)
                    .filter(|answer| answer.rating != Rating::Up)
                    .map(move |rejected| (chosen, rejected))
            })
            .take(per_question)
            .map(|(chosen, rejected)| {
                let pair = PreferencePair {
                    prompt,
                    chosen: &chosen.respuesta,
                    rejected: &rejected.respuesta,
                };
                serde_json::to_string(&pair).expect("a pair serialises") + "\n"
            })
            .collect();
        pairs
    })
}

#[derive(Debug, Serialize)]
struct RatedCompletion<'a> {
    prompt: &'a str,
    completion: &'a str,
    label: bool,
}

/// Unpaired preferences for KTO (TRL's `prompt`/`completion`/`label` format): one JSON line per
/// answer a visitor rated, `label` true where liked and false where disliked, in the order
/// they were given; answers nobody rated are left out.
pub fn kto_lines(answers: Vec<StoredAnswer>) -> impl Iterator<Item = String> {
    answers.into_iter().filter_map(|answer| {
        let label = match answer.report.rating {
            Rating::Up => true,
            Rating::Down => false,
            Rating::None => return None,
        };
        let line = RatedCompletion {
            prompt: prompt_of(&answer.report),
            completion: &answer.report.respuesta,
            label,
        };
        Some(serde_json::to_string(&line).expect("a rated completion serialises") + "\n")
    })
}
