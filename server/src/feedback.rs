//! Storage of visitors' feedback in SQLite (one file in the data directory, WAL, every write
//! synced before it is acknowledged), and the exports that turn it into a corpus: liked answers
//! in the hackathon's schema, and preference data for DPO and KTO, each with the whole
//! conversation the answer's receipt covers.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use wire::feedback::{AnswerReport, Rating, StoredAnswer, WireMessage};

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

/// Where the feedback database and the receipts' key are kept, and whether they outlive a
/// restart.
pub struct DataDir {
    pub path: PathBuf,
    /// Given by the team (`--data-dir`, `VITRINA_DATA_DIR`) or a Space's persistent storage
    /// (`/data`); else `./data`, which in a Space's container is the image's writable layer,
    /// emptied at every restart.
    pub persistent: bool,
}

impl DataDir {
    /// `given`, or a Space's persistent storage (`/data`) when it is mounted, else `./data`.
    pub fn choose(given: Option<PathBuf>) -> Self {
        let persistent = Path::new("/data");
        match given {
            Some(path) => Self {
                path,
                persistent: true,
            },
            None if persistent.is_dir() => Self {
                path: persistent.to_owned(),
                persistent: true,
            },
            None => Self {
                path: PathBuf::from("data"),
                persistent: false,
            },
        }
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

fn has_column(connection: &Connection, column: &str) -> rusqlite::Result<bool> {
    connection
        .prepare("SELECT 1 FROM pragma_table_info('answers') WHERE name = ?1")?
        .exists([column])
}

/// Databases made before receipts get their column; one answer is stored once, keyed by its
/// receipt's nonce as bytes (the hex a visitor sends can be written in either case: keyed by
/// the text, one receipt was stored again under every spelling).
fn add_receipts(connection: &Connection) -> rusqlite::Result<()> {
    if !has_column(connection, "receipt")? {
        connection.execute_batch("ALTER TABLE answers ADD COLUMN receipt TEXT;")?;
    }
    if !has_column(connection, "receipt_nonce")? {
        // Rows stored twice under two spellings before keep their text; the first of each
        // nonce is the one its key names.
        connection.execute_batch(&format!(
            "ALTER TABLE answers ADD COLUMN receipt_nonce TEXT;
             UPDATE answers SET receipt_nonce = lower(substr(receipt, 1, {hex}))
             WHERE rowid IN (SELECT MIN(rowid) FROM answers WHERE receipt IS NOT NULL
                             GROUP BY lower(substr(receipt, 1, {hex})));",
            hex = crate::receipts::NONCE_BYTES * 2
        ))?;
    }
    connection.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS answers_by_receipt ON answers (receipt);
         CREATE UNIQUE INDEX IF NOT EXISTS answers_by_receipt_nonce ON answers (receipt_nonce);",
    )
}

/// Every answer is grouped with the others to the same conversation by the digest of what its
/// receipt covers ([`conversation_digest`]); rows stored before get theirs now.
fn add_conversation_digests(connection: &Connection) -> rusqlite::Result<()> {
    if !has_column(connection, "conversation_sha256")? {
        connection.execute_batch("ALTER TABLE answers ADD COLUMN conversation_sha256 TEXT;")?;
    }
    let missing: Vec<(i64, String)> = connection
        .prepare("SELECT rowid, messages FROM answers WHERE conversation_sha256 IS NULL")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (rowid, messages) in missing {
        let messages: Vec<WireMessage> = serde_json::from_str(&messages).unwrap_or_default();
        connection.execute(
            "UPDATE answers SET conversation_sha256 = ?1 WHERE rowid = ?2",
            params![conversation_digest(&messages), rowid],
        )?;
    }
    connection.execute_batch(
        "CREATE INDEX IF NOT EXISTS answers_by_conversation ON answers (conversation_sha256);",
    )
}

/// The sha256 of a conversation as the receipt covers it (its messages as JSON): answers to
/// the very same conversation are alternatives of one another, whatever the browser calls its
/// turn.
pub fn conversation_digest(messages: &[WireMessage]) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(messages).expect("messages serialise");
    hex::encode(sha2::Sha256::digest(json))
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
            add_conversation_digests(&connection)?;
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
        let receipt = report.receipt.as_deref().map(str::to_ascii_lowercase);
        let nonce = report.receipt.as_deref().and_then(crate::receipts::nonce);
        if let Some(nonce) = &nonce {
            let stored: Option<String> = connection
                .query_row(
                    "SELECT id FROM answers WHERE receipt_nonce = ?1",
                    [nonce],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(id) = stored {
                return Err(StoreError::AlreadyStored(wire::feedback::permalink(&id)));
            }
        }
        let id = new_id();
        connection.execute(
            "INSERT INTO answers (id, answer_key, conversation, turn_key, messages, pregunta, entrada, respuesta, rating, comment, provenance, created_at, updated_at, receipt, receipt_nonce, conversation_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, ?15)",
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
                receipt,
                nonce,
                conversation_digest(&report.messages),
            ],
        )?;
        Ok(id)
    }

    /// Whether an answer under `answer_key`, or with `receipt`, is stored.
    pub fn knows(&self, answer_key: &str, receipt: &str) -> Result<bool, StoreError> {
        let nonce = crate::receipts::nonce(receipt).unwrap_or_default();
        Ok(self.connection().query_row(
            "SELECT EXISTS (SELECT 1 FROM answers WHERE answer_key = ?1 OR receipt_nonce = ?2)",
            [answer_key, &nonce],
            |row| row.get(0),
        )?)
    }

    pub fn get(&self, id: &str) -> Result<Option<StoredAnswer>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare(&format!("{SELECT_ANSWER} WHERE id = ?1"))?;
        Ok(statement.query_row([id], read_answer).optional()?)
    }

    /// Hands `each` every stored answer, one at a time, in `order`, until it says to stop
    /// (its reader left): an export of any size holds one row, not the database. The rows are
    /// read on a connection of their own, so visitors' feedback is stored meanwhile.
    pub fn each(
        &self,
        order: Order,
        mut each: impl FnMut(StoredAnswer) -> bool,
    ) -> Result<(), StoreError> {
        let connection = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let order = match order {
            Order::Stored => "ORDER BY rowid",
            // A conversation's answers together, conversations in the order first answered.
            Order::ByConversation => {
                "ORDER BY MIN(rowid) OVER (PARTITION BY conversation_sha256), rowid"
            }
        };
        let mut statement = connection.prepare(&format!("{SELECT_ANSWER} {order}"))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            if !each(read_answer(row)?) {
                break;
            }
        }
        Ok(())
    }
}

/// The order [`FeedbackStore::each`] reads answers in.
#[derive(Clone, Copy, Debug)]
pub enum Order {
    /// As they were stored.
    Stored,
    /// Each conversation's answers together (by [`conversation_digest`]), conversations in the
    /// order they were first answered.
    ByConversation,
}

/// Everything but `answer_key`, which is never read back: it is what lets the visitor who
/// made the answer change its rating, so it leaves the database only to be compared.
const SELECT_ANSWER: &str = "SELECT id, conversation, turn_key, messages, pregunta, entrada, respuesta, rating, comment, provenance, created_at, conversation_sha256 FROM answers";

fn read_answer(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAnswer> {
    Ok(StoredAnswer {
        conversation_sha256: row.get(11)?,
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

/// A message of a conversational dataset (TRL's and the Hub's `messages` columns).
#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

/// The conversation the model read, as the receipt covers it: the system prompt (the Space's
/// or the visitor's own) and every earlier turn, not just the last question. An answer read
/// without them may say what only they asked for.
fn conversation(report: &AnswerReport) -> Vec<Message<'_>> {
    report
        .messages
        .iter()
        .map(|message| Message {
            role: &message.role,
            content: &message.content,
        })
        .collect()
}

/// The model's answer as a conversation's last turn.
fn answer_turn(answer: &str) -> [Message<'_>; 1] {
    [Message {
        role: "assistant",
        content: answer,
    }]
}

/// One row of the hackathon's corpus schema, with the whole conversation it answers
/// (`messages`, ending with the answer) beside it.
#[derive(Debug, Serialize)]
pub struct CorpusRow<'a> {
    pregunta: &'a str,
    entrada: &'a str,
    respuesta: &'a str,
    idioma: &'a str,
    messages: Vec<Message<'a>>,
}

/// A liked answer as a corpus row (one JSON line); `None` for any other.
pub fn corpus_line(answer: &StoredAnswer, idioma: &str) -> Option<String> {
    let report = &answer.report;
    if report.rating != Rating::Up {
        return None;
    }
    let mut messages = conversation(report);
    messages.extend(answer_turn(&report.respuesta));
    let row = CorpusRow {
        pregunta: &report.pregunta,
        entrada: report.entrada.as_deref().unwrap_or_default(),
        respuesta: &report.respuesta,
        idioma,
        messages,
    };
    Some(serde_json::to_string(&row).expect("a corpus row serialises") + "\n")
}

/// A preference pair in TRL's conversational form: the conversation, then the liked and the
/// other answer as assistant turns.
#[derive(Debug, Serialize)]
struct PreferencePair<'a> {
    prompt: Vec<Message<'a>>,
    chosen: [Message<'a>; 1],
    rejected: [Message<'a>; 1],
}

/// Preference pairs of one conversation's answers (all with one `conversation_sha256`, as
/// [`Order::ByConversation`] hands them): each liked answer against each alternative that was
/// disliked or not liked (the visitor asked for another one), at most `per_question` of them,
/// one JSON line each.
pub fn dpo_lines(answers: &[StoredAnswer], per_question: usize) -> Vec<String> {
    let Some(first) = answers.first() else {
        return Vec::new();
    };
    let prompt = || conversation(&first.report);
    let reports = || answers.iter().map(|answer| &answer.report);
    reports()
        .filter(|answer| answer.rating == Rating::Up)
        .flat_map(|chosen| {
            reports()
                .filter(|answer| answer.rating != Rating::Up)
                .map(move |rejected| (chosen, rejected))
        })
        .take(per_question)
        .map(|(chosen, rejected)| {
            let pair = PreferencePair {
                prompt: prompt(),
                chosen: answer_turn(&chosen.respuesta),
                rejected: answer_turn(&rejected.respuesta),
            };
            serde_json::to_string(&pair).expect("a pair serialises") + "\n"
        })
        .collect()
}

/// An unpaired preference for KTO, in TRL's conversational form.
#[derive(Debug, Serialize)]
struct RatedCompletion<'a> {
    prompt: Vec<Message<'a>>,
    completion: [Message<'a>; 1],
    label: bool,
}

/// A rated answer as a KTO line, `label` true where liked and false where disliked; `None`
/// for an answer nobody rated.
pub fn kto_line(answer: &StoredAnswer) -> Option<String> {
    let report = &answer.report;
    let label = match report.rating {
        Rating::Up => true,
        Rating::Down => false,
        Rating::None => return None,
    };
    let line = RatedCompletion {
        prompt: conversation(report),
        completion: answer_turn(&report.respuesta),
        label,
    };
    Some(serde_json::to_string(&line).expect("a rated completion serialises") + "\n")
}
