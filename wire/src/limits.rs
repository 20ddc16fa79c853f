//! Every bound and default of a chat request, written once. space.toml's `[chat]` and
//! `[limits]` are checked against this table, so are the API's requests and the engine's
//! sampling settings; the chat page clamps what a visitor types into it and its HTML inputs take
//! their `min` and `max` from it.

use std::fmt;

/// A setting's allowed range (both ends included) and the value it takes when left out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound<T> {
    /// The key, as space.toml and the API spell it.
    pub name: &'static str,
    pub min: T,
    pub max: T,
    pub default: T,
}

/// A value outside its [`Bound`], in words that say what to send instead.
#[derive(Clone, Debug, PartialEq)]
pub struct OutOfRange {
    pub name: &'static str,
    pub found: String,
    pub allowed: String,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is {}; allowed: {}",
            self.name, self.found, self.allowed
        )
    }
}

impl std::error::Error for OutOfRange {}

impl Bound<f64> {
    /// False for NaN, which no comparison admits.
    pub fn contains(&self, value: f64) -> bool {
        self.min <= value && value <= self.max
    }

    pub fn allowed(&self) -> String {
        format!("{} to {}", self.min, self.max)
    }

    pub fn check(&self, value: f64) -> Result<f64, OutOfRange> {
        if self.contains(value) {
            Ok(value)
        } else {
            Err(self.out_of_range(value))
        }
    }

    /// The nearest allowed value; the default for what is not a number.
    pub fn clamp(&self, value: f64) -> f64 {
        if value.is_finite() {
            value.clamp(self.min, self.max)
        } else {
            self.default
        }
    }

    fn out_of_range(&self, value: f64) -> OutOfRange {
        OutOfRange {
            name: self.name,
            found: value.to_string(),
            allowed: self.allowed(),
        }
    }
}

impl Bound<u32> {
    pub fn contains(&self, value: u64) -> bool {
        u64::from(self.min) <= value && value <= u64::from(self.max)
    }

    pub fn allowed(&self) -> String {
        format!("{} to {}", self.min, self.max)
    }

    pub fn check(&self, value: u64) -> Result<u32, OutOfRange> {
        match u32::try_from(value) {
            Ok(value) if self.contains(value.into()) => Ok(value),
            _ => Err(OutOfRange {
                name: self.name,
                found: value.to_string(),
                allowed: self.allowed(),
            }),
        }
    }

    pub fn clamp(&self, value: u32) -> u32 {
        value.clamp(self.min, self.max)
    }
}

/// 0 always picks the likeliest token (greedy).
pub const TEMPERATURE: Bound<f64> = Bound {
    name: "temperature",
    min: 0.0,
    max: 2.0,
    default: 0.7,
};

/// Nucleus sampling; 1 keeps every token. Above 0: an empty nucleus means nothing.
pub const TOP_P: Bound<f64> = Bound {
    name: "top_p",
    min: 0.01,
    max: 1.0,
    default: 0.9,
};

/// The browser model's threads (Web Workers): a visitor's setting; its default is the
/// device's cores but one, within these bounds.
pub const BROWSER_THREADS: Bound<u32> = Bound {
    name: "browser_threads",
    min: 1,
    max: 8,
    default: 1,
};

/// The answer's length in tokens.
pub const MAX_TOKENS: Bound<u32> = Bound {
    name: "max_tokens",
    min: 1,
    max: 4096,
    default: 512,
};

/// The most messages one request may carry (a conversation longer than this is a script).
pub const MAX_MESSAGES: usize = 256;

/// The most `stop` strings one request may send, and the longest of them in characters:
/// OpenAI's own bounds. Each is looked for after every token.
pub const MAX_STOP_STRINGS: usize = 4;
pub const MAX_STOP_CHARS: usize = 64;

/// A conversation's bytes (every message's content) may be at most this many times
/// `[limits] max_input_tokens`, checked before anything is tokenised: Spanish and English text
/// averages 3–5 bytes a token in the catalogue's tokenizers, so what this refuses would almost
/// always have been refused after tokenising, which a 2 MB body should not be made to cost.
pub const MESSAGE_BYTES_PER_INPUT_TOKEN: usize = 8;

/// The largest request body read for `max_input_tokens`: the messages' bytes written as JSON
/// may triple (`\u00e1` for `á`), and 64 KiB hold the rest of the request. Anything larger is
/// refused before it is parsed.
pub fn max_body_bytes(max_input_tokens: usize) -> usize {
    max_input_tokens
        .saturating_mul(MESSAGE_BYTES_PER_INPUT_TOKEN)
        .saturating_mul(3)
        .saturating_add(64 * 1024)
}

/// `[limits] max_concurrent`: answers generated at once, decoded together in one batch.
pub const MAX_CONCURRENT: Bound<u32> = Bound {
    name: "max_concurrent",
    min: 1,
    max: 64,
    default: 4,
};

/// `[limits] prefix_cache_mb`: keys and values kept of finished answers, so that a
/// conversation's next turn (and every conversation's system prompt) is not read again; 0 keeps
/// none. Qwen2.5-0.5B takes 24 KiB a token, a 7B model with grouped attention about 128 KiB.
pub const PREFIX_CACHE_MB: Bound<u32> = Bound {
    name: "prefix_cache_mb",
    min: 0,
    max: 65_536,
    default: 1024,
};

/// `[limits] max_queue`: requests answered or waiting, beyond which visitors get 429.
pub const MAX_QUEUE: Bound<u32> = Bound {
    name: "max_queue",
    min: 1,
    max: 1024,
    default: 8,
};

/// `[limits] max_input_tokens`: the longest conversation a request may send.
pub const MAX_INPUT_TOKENS: Bound<u32> = Bound {
    name: "max_input_tokens",
    min: 1,
    max: 131_072,
    default: 2048,
};

/// `[limits] max_total_tokens`: conversation and answer together.
pub const MAX_TOTAL_TOKENS: Bound<u32> = Bound {
    name: "max_total_tokens",
    min: 2,
    max: 131_072,
    default: 3072,
};

/// `[limits] max_concurrent_per_client`: one visitor's requests answered or waiting at once.
pub const MAX_CONCURRENT_PER_CLIENT: Bound<u32> = Bound {
    name: "max_concurrent_per_client",
    min: 1,
    max: 64,
    default: 2,
};

/// `[limits] requests_per_minute_per_client`.
pub const REQUESTS_PER_MINUTE_PER_CLIENT: Bound<u32> = Bound {
    name: "requests_per_minute_per_client",
    min: 1,
    max: 10_000,
    default: 30,
};

/// `[limits] tokens_per_minute_per_client`: the tokens one visitor may have the model read
/// and write in a minute. An answer reserves its prompt (what is not reused from the
/// visitor's own earlier turns) and its `max_tokens` when it starts and is charged what it
/// really took when it ends, so a visitor with long answers running cannot start more of them:
/// four visitors asking for 3,000-token answers each are no longer a way to hold every place
/// for minutes at the price of four requests. At least `max_total_tokens`, so that one
/// request of the largest size is always possible.
pub const TOKENS_PER_MINUTE_PER_CLIENT: Bound<u32> = Bound {
    name: "tokens_per_minute_per_client",
    min: 2,
    max: 10_000_000,
    default: 8192,
};

/// Answers made in visitors' browsers that the server may be making again, or waiting to, at
/// once (see the server's `browser_model`): each may read a conversation of `max_input_tokens`.
pub const REMAKES_AT_ONCE: usize = 4;

/// Connections the server holds open at once; more wait to be accepted. Each costs a task
/// and a socket, and without a bound enough idle ones exhaust the process's files.
pub const MAX_CONNECTIONS: usize = 1024;

/// Seconds a connection may take to send a request's headers: a client that sends them a byte
/// at a time (slowloris) is let go, rather than holding its connection for ever.
pub const HEADER_READ_TIMEOUT_S: u64 = 10;

/// The feedback routes' largest request body: a conversation of `max_input_tokens` as JSON is
/// bounded apart ([`max_body_bytes`]); this is the most any feedback body is read.
pub const MAX_FEEDBACK_BODY_BYTES: usize = 512 * 1024;

/// The longest comment a visitor may leave on an answer, in characters.
pub const MAX_COMMENT_CHARS: usize = 2000;

/// The longest answer stored, in bytes: `max_tokens`' bound at 16 bytes a token (no tokenizer
/// of the catalogue has a token longer than 16 bytes of text in practice; a longer answer
/// was not written by a model with these limits).
pub const MAX_ANSWER_BYTES: usize = MAX_TOKENS.max as usize * 16;

/// The longest key a browser names its conversation, question or answer with, and the
/// shortest: enough random digits not to be guessed.
pub const KEY_CHARS: std::ops::RangeInclusive<usize> = 8..=64;

/// The longest receipt read, in hex digits: 16 bytes of nonce and 32 of HMAC-SHA256.
pub const RECEIPT_HEX_CHARS: usize = 96;

/// `[feedback] dpo_pairs_per_question`: preference pairs the DPO export makes of one
/// question's answers (each liked one against each other), so that a question answered hundreds
/// of times does not fill the export.
pub const DPO_PAIRS_PER_QUESTION: Bound<u32> = Bound {
    name: "dpo_pairs_per_question",
    min: 1,
    max: 10_000,
    default: 16,
};

/// `[server] connect_timeout_s` (remote backend): seconds to reach the upstream.
pub const REMOTE_CONNECT_TIMEOUT_S: Bound<u32> = Bound {
    name: "connect_timeout_s",
    min: 1,
    max: 300,
    default: 10,
};

/// `[server] read_timeout_s` (remote backend): the longest silence while it answers; an
/// upstream that stalls longer frees its visitor's place.
pub const REMOTE_READ_TIMEOUT_S: Bound<u32> = Bound {
    name: "read_timeout_s",
    min: 1,
    max: 3600,
    default: 60,
};

/// `[server] timeout_s` (remote backend): one answer from start to end.
pub const REMOTE_TIMEOUT_S: Bound<u32> = Bound {
    name: "timeout_s",
    min: 1,
    max: 86_400,
    default: 600,
};

/// The largest model file a browser is asked to hold: wasm32 addresses 4 GiB, and loading
/// keeps the file and the weights in memory at once. The server picks the browser's model by it
/// and the worker refuses a larger one before downloading anything.
pub const BROWSER_MODEL_BYTES: u64 = 1536 << 20;

/// The plain-words refusal for a model file too large for a browser.
pub fn too_large_for_a_browser(bytes: u64) -> Option<String> {
    (bytes > BROWSER_MODEL_BYTES).then(|| {
        format!(
            "the browser model is {} MB; a browser can hold at most {} MB. Choose a smaller model or quantisation in space.toml [browser] model",
            bytes >> 20,
            BROWSER_MODEL_BYTES >> 20
        )
    })
}

/// The quantisations a team's converted checkpoint can get (space.toml's `[model]
/// quantization`); the first is the default.
pub const QUANTIZATIONS: [&str; 3] = ["q4_k_m", "q8_0", "f16"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_too_large_for_a_browser_are_refused_by_size() {
        assert!(too_large_for_a_browser(100 << 20).is_none());
        assert!(too_large_for_a_browser(BROWSER_MODEL_BYTES).is_none());
        let message = too_large_for_a_browser(4 << 30).unwrap();
        assert!(
            message.contains("4096 MB") && message.contains("[browser] model"),
            "{message}"
        );
    }

    #[test]
    fn every_default_lies_within_its_bound() {
        for bound in [TEMPERATURE, TOP_P] {
            assert!(bound.contains(bound.default), "{}", bound.name);
        }
        for bound in [
            MAX_TOKENS,
            MAX_CONCURRENT,
            PREFIX_CACHE_MB,
            MAX_QUEUE,
            MAX_INPUT_TOKENS,
            MAX_TOTAL_TOKENS,
            MAX_CONCURRENT_PER_CLIENT,
            REQUESTS_PER_MINUTE_PER_CLIENT,
            DPO_PAIRS_PER_QUESTION,
            TOKENS_PER_MINUTE_PER_CLIENT,
            REMOTE_CONNECT_TIMEOUT_S,
            REMOTE_READ_TIMEOUT_S,
            REMOTE_TIMEOUT_S,
            BROWSER_THREADS,
        ] {
            assert!(bound.contains(bound.default.into()), "{}", bound.name);
        }
    }

    #[test]
    fn values_are_checked_and_clamped() {
        assert_eq!(
            TEMPERATURE.check(5.0).unwrap_err().to_string(),
            "`temperature` is 5; allowed: 0 to 2"
        );
        assert!(TEMPERATURE.check(f64::NAN).is_err());
        assert_eq!(
            (TEMPERATURE.clamp(9.0), TEMPERATURE.clamp(f64::NAN)),
            (2.0, 0.7)
        );
        assert_eq!(
            MAX_TOKENS.check(1 << 40).unwrap_err().to_string(),
            "`max_tokens` is 1099511627776; allowed: 1 to 4096"
        );
        assert_eq!(MAX_TOKENS.check(7), Ok(7));
        assert_eq!(MAX_TOKENS.clamp(0), 1);
    }
}
