//! What a chat request may ask, checked before it takes a place in the line: a
//! [`ValidRequest`] or a [`ValidationError`] that names the field and what is allowed. The
//! bounds are `wire::limits`', the same the chat page and space.toml use.

use axum::http::StatusCode;
use engine::{ChatMessage, GenerateParams, SamplingParams};
use serde_json::{Map, Value};
use space::{ChatDefaults, Limits};
use wire::limits::{self, OutOfRange};
use wire::openai::{ChatCompletionRequest, Stop};

/// A request whose every field is within bounds.
#[derive(Debug)]
pub struct ValidRequest {
    /// The `model` it asked for (see `api::COMPARE_MODEL`).
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub params: GenerateParams,
    /// Whether `max_tokens` was sent, or came from `[chat]` (then a long conversation shortens
    /// the answer instead of being refused).
    pub max_tokens_asked: bool,
    pub stream: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("`messages` is empty; send at least one message")]
    NoMessages,
    #[error("`messages` has {0} entries; the limit is {max}", max = limits::MAX_MESSAGES)]
    TooManyMessages(usize),
    #[error("{0}")]
    OutOfRange(#[from] OutOfRange),
    #[error("`stop` has {0} strings; the limit is {max}", max = limits::MAX_STOP_STRINGS)]
    TooManyStops(usize),
    #[error(
        "a `stop` string is {0} characters long; the limit is {max}",
        max = limits::MAX_STOP_CHARS
    )]
    StopTooLong(usize),
    #[error(
        "the messages are {bytes} bytes long; this Space takes at most {max_bytes} ({per_token} bytes for each of limits.max_input_tokens = {max_input_tokens}, space.toml). Send fewer or shorter messages",
        max_bytes = max_input_tokens * limits::MESSAGE_BYTES_PER_INPUT_TOKEN,
        per_token = limits::MESSAGE_BYTES_PER_INPUT_TOKEN
    )]
    MessagesTooLarge {
        bytes: usize,
        max_input_tokens: usize,
    },
    #[error(
        "the request is {bytes} bytes long; with limits.max_input_tokens = {max_input_tokens} (space.toml) this Space reads requests of at most {max_bytes} bytes. Send fewer or shorter messages",
        max_bytes = limits::max_body_bytes(*max_input_tokens)
    )]
    BodyTooLarge {
        bytes: usize,
        max_input_tokens: usize,
    },
    #[error(
        "`ignore_eos` is taken only by a server started for a benchmark (`vitrina --bench`): it makes every answer run to max_tokens; leave it out"
    )]
    IgnoreEosRefused,
    /// An OpenAI field this server does not honour, sent with a value that asks for it.
    #[error("`{field}` is not supported by this server: {what_to_do}")]
    Unsupported {
        field: String,
        what_to_do: &'static str,
    },
    #[error(
        "the conversation is {prompt_tokens} tokens long; limits.max_input_tokens is {max_input_tokens} (space.toml). Send fewer or shorter messages"
    )]
    ConversationTooLong {
        prompt_tokens: usize,
        max_input_tokens: usize,
    },
    #[error(
        "the conversation ({prompt_tokens} tokens) plus max_tokens ({asked}) is {total} tokens; limits.max_total_tokens is {max_total_tokens} (space.toml). Ask for at most {room} tokens",
        total = prompt_tokens + asked,
        room = max_total_tokens - prompt_tokens
    )]
    AnswerTooLong {
        prompt_tokens: usize,
        asked: usize,
        max_total_tokens: usize,
    },
}

impl ValidationError {
    /// Too long for `[limits]` is 422 (the request is well formed), too large to read 413;
    /// everything else 400.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ if self.is_too_long() => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Refused by `[limits] max_input_tokens` (or a bound derived from it).
    pub fn is_too_long(&self) -> bool {
        matches!(
            self,
            Self::ConversationTooLong { .. }
                | Self::AnswerTooLong { .. }
                | Self::MessagesTooLarge { .. }
                | Self::BodyTooLarge { .. }
        )
    }
}

/// An OpenAI field Vitrina does not implement, and what a client may still send of it.
struct NeutralField {
    name: &'static str,
    /// Whether a value asks for what the server does anyway; `None`: every value does.
    neutral: Option<fn(&Value) -> bool>,
    what_to_do: &'static str,
}

const NEUTRAL_FIELDS: &[NeutralField] = &[
    NeutralField {
        name: "n",
        neutral: Some(|value| value == 1),
        what_to_do: "this server writes one choice; send `n: 1` or leave it out",
    },
    NeutralField {
        name: "presence_penalty",
        neutral: Some(is_zero),
        what_to_do: "leave it out or send 0",
    },
    NeutralField {
        name: "frequency_penalty",
        neutral: Some(is_zero),
        what_to_do: "leave it out or send 0",
    },
    NeutralField {
        name: "logprobs",
        neutral: Some(|value| value == false),
        what_to_do: "leave it out or send false",
    },
    NeutralField {
        name: "logit_bias",
        neutral: Some(is_empty),
        what_to_do: "leave it out",
    },
    NeutralField {
        name: "tools",
        neutral: Some(is_empty),
        what_to_do: "this model is not given tools; leave `tools` out",
    },
    NeutralField {
        name: "tool_choice",
        neutral: Some(|value| value == "none"),
        what_to_do: "leave it out",
    },
    NeutralField {
        name: "functions",
        neutral: Some(is_empty),
        what_to_do: "leave it out",
    },
    NeutralField {
        name: "response_format",
        neutral: Some(|value| value.get("type").is_some_and(|kind| kind == "text")),
        what_to_do: "answers are plain text; leave it out or send {\"type\": \"text\"}",
    },
    // An end-user id for the provider's abuse checks: this server counts visitors itself.
    NeutralField {
        name: "user",
        neutral: None,
        what_to_do: "",
    },
];

fn is_zero(value: &Value) -> bool {
    value.as_f64() == Some(0.0)
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

/// Refuses every field sent that would ask for what this server does not do; `null` is a field
/// left unset, as clients write it.
fn check_other_fields(other: &Map<String, Value>) -> Result<(), ValidationError> {
    for (field, value) in other.iter().filter(|(_, value)| !value.is_null()) {
        let known = NEUTRAL_FIELDS.iter().find(|known| known.name == field);
        let what_to_do = match known {
            Some(known) if known.neutral.is_none_or(|neutral| neutral(value)) => continue,
            Some(known) => known.what_to_do,
            None => "leave it out (see the README's API section for the fields this server takes)",
        };
        return Err(ValidationError::Unsupported {
            field: field.clone(),
            what_to_do,
        });
    }
    Ok(())
}

/// Refuses a POST whose body is not declared JSON. A page on another site can make its
/// visitors' browsers send a `text/plain` (or form) POST here without asking first; with
/// `application/json` the browser asks this server (a CORS preflight), which allows no other
/// site, so no other page can spend this Space's model through its visitors.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), crate::error::ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let is_json = declared.as_deref().is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    });
    if is_json {
        Ok(())
    } else {
        Err(crate::error::ApiError::NotJson(declared.map_or_else(
            || "no Content-Type".to_owned(),
            |value| format!("{value:?}"),
        )))
    }
}

/// Refuses a body too large for `[limits]` before it is parsed.
pub fn check_body_size(bytes: usize, space_limits: &Limits) -> Result<(), ValidationError> {
    let max_input_tokens = space_limits.max_input_tokens;
    if bytes > limits::max_body_bytes(max_input_tokens) {
        return Err(ValidationError::BodyTooLarge {
            bytes,
            max_input_tokens,
        });
    }
    Ok(())
}

/// Checks a request's fields, filling what it leaves out from `[chat]`.
pub fn validate(
    mut request: ChatCompletionRequest,
    defaults: &ChatDefaults,
    space_limits: &Limits,
) -> Result<ValidRequest, ValidationError> {
    if request.messages.is_empty() {
        return Err(ValidationError::NoMessages);
    }
    if request.messages.len() > limits::MAX_MESSAGES {
        return Err(ValidationError::TooManyMessages(request.messages.len()));
    }
    let bytes: usize = request
        .messages
        .iter()
        .map(|message| message.content.len())
        .sum();
    let max_input_tokens = space_limits.max_input_tokens;
    if bytes > max_input_tokens.saturating_mul(limits::MESSAGE_BYTES_PER_INPUT_TOKEN) {
        return Err(ValidationError::MessagesTooLarge {
            bytes,
            max_input_tokens,
        });
    }
    // OpenAI's newer name for `max_tokens`; its own clients send either.
    if let Some(asked) = request.other.remove("max_completion_tokens")
        && !asked.is_null()
    {
        request.max_tokens = Some(asked.as_u64().ok_or_else(|| OutOfRange {
            name: "max_completion_tokens",
            found: asked.to_string(),
            allowed: limits::MAX_TOKENS.allowed(),
        })?);
    }
    check_other_fields(&request.other)?;
    if request.ignore_eos && !space_limits.allow_ignore_eos {
        return Err(ValidationError::IgnoreEosRefused);
    }
    let stop = request.stop.map(Stop::into_vec).unwrap_or_default();
    if stop.len() > limits::MAX_STOP_STRINGS {
        return Err(ValidationError::TooManyStops(stop.len()));
    }
    if let Some(long) = stop
        .iter()
        .map(|stop| stop.chars().count())
        .find(|&chars| chars > limits::MAX_STOP_CHARS)
    {
        return Err(ValidationError::StopTooLong(long));
    }
    let max_tokens = match request.max_tokens {
        Some(asked) => limits::MAX_TOKENS.check(asked)?,
        None => defaults.max_tokens,
    };
    let sampling = SamplingParams {
        temperature: request.temperature.unwrap_or(defaults.temperature),
        top_p: request.top_p.unwrap_or(defaults.top_p),
        seed: request.seed.unwrap_or(SamplingParams::default().seed),
        ..SamplingParams::default()
    };
    // The table's temperature and top_p bounds, and the engine's own for the rest.
    sampling.validate()?;
    Ok(ValidRequest {
        model: request.model,
        messages: request.messages,
        params: GenerateParams {
            sampling,
            max_tokens: max_tokens as usize,
            stop,
            ignore_eos: request.ignore_eos,
            ..GenerateParams::default()
        },
        max_tokens_asked: request.max_tokens.is_some(),
        stream: request.stream,
    })
}

/// Checks a tokenised conversation against `[limits]`; an answer length left to the defaults
/// is shortened to fit instead.
pub fn fit_length(
    prompt_tokens: usize,
    request: &mut ValidRequest,
    limits: &Limits,
) -> Result<(), ValidationError> {
    let Limits {
        max_input_tokens,
        max_total_tokens,
        ..
    } = *limits;
    if prompt_tokens > max_input_tokens {
        return Err(ValidationError::ConversationTooLong {
            prompt_tokens,
            max_input_tokens,
        });
    }
    let room = max_total_tokens - prompt_tokens;
    let params = &mut request.params;
    if !request.max_tokens_asked {
        params.max_tokens = params.max_tokens.min(room);
    } else if params.max_tokens > room {
        return Err(ValidationError::AnswerTooLong {
            prompt_tokens,
            asked: params.max_tokens,
            max_total_tokens,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Role;

    fn asking(change: impl FnOnce(&mut ChatCompletionRequest)) -> ChatCompletionRequest {
        let mut request = ChatCompletionRequest {
            messages: vec![ChatMessage::new(Role::User, "Hola")],
            ..ChatCompletionRequest::default()
        };
        change(&mut request);
        request
    }

    #[test]
    fn fields_left_out_come_from_the_chat_defaults() {
        let defaults = ChatDefaults::default();
        let valid = validate(asking(|_| {}), &defaults, &Limits::default()).unwrap();
        assert_eq!(
            (
                valid.params.sampling.temperature,
                valid.params.sampling.top_p,
                valid.params.max_tokens,
                valid.max_tokens_asked
            ),
            (
                defaults.temperature,
                defaults.top_p,
                defaults.max_tokens as usize,
                false
            )
        );
    }

    #[test]
    fn each_bound_is_named_when_crossed() {
        let defaults = ChatDefaults::default();
        let refused = |change: fn(&mut ChatCompletionRequest)| {
            validate(asking(change), &defaults, &Limits::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(|request| request.temperature = Some(2.5)),
            "`temperature` is 2.5; allowed: 0 to 2"
        );
        assert_eq!(
            refused(|request| request.top_p = Some(0.0)),
            "`top_p` is 0; allowed: 0.01 to 1"
        );
        assert_eq!(
            refused(|request| request.max_tokens = Some(0)),
            "`max_tokens` is 0; allowed: 1 to 4096"
        );
        assert_eq!(
            refused(|request| request.messages.clear()),
            "`messages` is empty; send at least one message"
        );
    }

    #[test]
    fn a_long_conversation_shortens_a_default_answer_but_refuses_an_asked_one() {
        let limits = Limits::default();
        let mut by_default = validate(asking(|_| {}), &ChatDefaults::default(), &limits).unwrap();
        let prompt_tokens = limits.max_total_tokens - 10;
        assert!(
            fit_length(
                prompt_tokens.min(limits.max_input_tokens),
                &mut by_default,
                &limits
            )
            .is_ok()
        );
        let mut asked = validate(
            asking(|request| request.max_tokens = Some(4096)),
            &ChatDefaults::default(),
            &limits,
        )
        .unwrap();
        let error = fit_length(limits.max_input_tokens, &mut asked, &limits).unwrap_err();
        assert!(error.is_too_long(), "{error}");
        assert!(
            error.to_string().contains("limits.max_total_tokens"),
            "{error}"
        );
    }
}
