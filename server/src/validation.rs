//! What a chat request may ask, checked before it takes a place in the line: a
//! [`ValidRequest`] or a [`ValidationError`] that names the field and what is allowed. The
//! bounds are `wire::limits`', the same the chat page and space.toml use.

use engine::{ChatMessage, GenerateParams, SamplingParams};
use space::{ChatDefaults, Limits};
use wire::limits::{self, OutOfRange};
use wire::openai::ChatCompletionRequest;

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
    /// Too long for `[limits]` is 422 (the request is well formed); everything else 400.
    pub fn is_too_long(&self) -> bool {
        matches!(
            self,
            Self::ConversationTooLong { .. } | Self::AnswerTooLong { .. }
        )
    }
}

/// Checks a request's fields, filling what it leaves out from `[chat]`.
pub fn validate(
    request: ChatCompletionRequest,
    defaults: &ChatDefaults,
) -> Result<ValidRequest, ValidationError> {
    if request.messages.is_empty() {
        return Err(ValidationError::NoMessages);
    }
    if request.messages.len() > limits::MAX_MESSAGES {
        return Err(ValidationError::TooManyMessages(request.messages.len()));
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
            stop: request.stop.map(|stop| stop.into_vec()).unwrap_or_default(),
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
        let valid = validate(asking(|_| {}), &defaults).unwrap();
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
            validate(asking(change), &defaults).unwrap_err().to_string()
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
        let mut by_default = validate(asking(|_| {}), &ChatDefaults::default()).unwrap();
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
