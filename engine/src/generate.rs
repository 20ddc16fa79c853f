//! The one generation loop, shared by the server and the browser worker: prefill the prompt,
//! then decode token by token, streaming text deltas until a stop token, a stop string,
//! `max_tokens`, or the caller says stop.

use std::sync::Arc;

use web_time::Instant;

use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::sampling::Sampler;
use crate::template::ChatTemplate;
use crate::tokenizer::{TextStream, Tokenizer};
use wire::chat::{ChatMessage, Role};
pub use wire::generation::{
    Completion, FinishReason, GenerateParams, ModelInfo, Overflow, Timings, Usage,
};

/// What to do after a delta has been handed to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Cancel,
}

/// Turns a conversation into prompt ids: tokenizer, chat template, stop tokens and the context
/// window. It is shared apart from the weights so that a server can measure a request while
/// the model is busy answering another.
pub struct Prompter {
    pub tokenizer: Tokenizer,
    template: ChatTemplate,
    stop_ids: Vec<u32>,
    pub context_length: usize,
}

/// End-of-turn markers of the common chat formats; those the tokenizer knows also stop.
const END_OF_TURN_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<end_of_turn>",
    "<|eot_id|>",
    "<|end|>",
    "<|endoftext|>",
    "</s>",
];

impl Prompter {
    pub fn new(
        tokenizer: Tokenizer,
        template: ChatTemplate,
        eos_id: Option<u32>,
        context_length: usize,
    ) -> Self {
        let mut stop_ids: Vec<u32> = END_OF_TURN_TOKENS
            .iter()
            .filter_map(|token| tokenizer.token_id(token))
            .collect();
        stop_ids.extend(eos_id);
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Self {
            tokenizer,
            template,
            stop_ids,
            context_length,
        }
    }

    pub fn prompt(&self, messages: &[ChatMessage]) -> Result<String> {
        self.template.render(messages, true)
    }

    /// The prompt's ids, after the overflow policy has made the conversation fit.
    pub fn prompt_ids(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
    ) -> Result<Vec<u32>> {
        let context_length = self.context_length;
        let budget = context_length - params.max_tokens.min(context_length / 2);
        let mut kept = messages.to_vec();
        loop {
            let ids = self.tokenizer.encode(&self.prompt(&kept)?)?;
            if ids.len() <= budget || params.overflow == Overflow::Error {
                return Ok(ids);
            }
            let oldest_turn = kept.iter().position(|message| message.role != Role::System);
            match oldest_turn {
                Some(index) if index + 1 < kept.len() => {
                    kept.remove(index);
                }
                _ => return Ok(ids),
            }
        }
    }
}

/// A model with everything needed to chat.
pub struct ChatModel {
    pub info: ModelInfo,
    pub model: Model,
    pub prompter: Arc<Prompter>,
}

impl ChatModel {
    pub fn new(info: ModelInfo, model: Model, prompter: Prompter) -> Self {
        Self {
            info,
            model,
            prompter: Arc::new(prompter),
        }
    }

    /// Answers the conversation, calling `on_delta` with each new piece of text.
    pub fn generate(
        &mut self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        on_delta: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<Completion> {
        let prompt_ids = self.prompter.prompt_ids(messages, params)?;
        self.generate_from_ids(&prompt_ids, params, on_delta)
    }

    pub fn generate_from_ids(
        &mut self,
        prompt_ids: &[u32],
        params: &GenerateParams,
        on_delta: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<Completion> {
        let mut generation = self.start(prompt_ids, params)?;
        while let Some(piece) = generation.step()? {
            if !piece.is_empty() && on_delta(&piece) == Flow::Cancel {
                return Ok(generation.completion(FinishReason::Cancelled));
            }
        }
        Ok(generation.completion(FinishReason::Cancelled))
    }

    /// Reads the prompt (prefill) and returns the generation, ready to decode token by token:
    /// for callers that must do other work between tokens (a browser worker answering a stop).
    pub fn start(&mut self, prompt_ids: &[u32], params: &GenerateParams) -> Result<Generation<'_>> {
        let context_length = self.prompter.context_length;
        if prompt_ids.is_empty() {
            return Err(EngineError::InvalidParameter {
                name: "messages",
                problem: "the prompt is empty".into(),
            });
        }
        if prompt_ids.len() >= context_length {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: prompt_ids.len(),
                context_length,
            });
        }
        let sampler = Sampler::new(params.sampling.clone())?;
        let prefill_started = Instant::now();
        let logits = self.model.forward(prompt_ids, 0)?;
        let prefill = prefill_started.elapsed();
        Ok(Generation {
            prompt_tokens: prompt_ids.len(),
            max_tokens: params.max_tokens.min(context_length - prompt_ids.len()),
            ignore_eos: params.ignore_eos,
            sampler,
            stops: StopStrings::new(params.stop.clone()),
            text_stream: TextStream::new(),
            generated: Vec::new(),
            text: String::new(),
            logits: Some(logits),
            finish_reason: None,
            prefill_seconds: prefill.as_secs_f64(),
            decode_started: Instant::now(),
            chat: self,
        })
    }
}

/// One answer being decoded: each [`Generation::step`] adds one token.
pub struct Generation<'m> {
    chat: &'m mut ChatModel,
    prompt_tokens: usize,
    max_tokens: usize,
    ignore_eos: bool,
    sampler: Sampler,
    stops: StopStrings,
    text_stream: TextStream,
    generated: Vec<u32>,
    text: String,
    /// The next token's logits; `None` until the last token has been run, which waits for the
    /// next step so that a caller who stops after a delta pays for no extra forward pass.
    logits: Option<candle_core::Tensor>,
    finish_reason: Option<FinishReason>,
    prefill_seconds: f64,
    decode_started: Instant,
}

impl Generation<'_> {
    /// Decodes one token. Returns the text it makes ready (often empty: a character or a
    /// possible stop string may still be incomplete), or `None` once the answer has ended.
    pub fn step(&mut self) -> Result<Option<String>> {
        if self.finish_reason.is_some() {
            return Ok(None);
        }
        if self.generated.len() >= self.max_tokens {
            return Ok(Some(self.end(FinishReason::Length)));
        }
        let logits = match self.logits.take() {
            Some(logits) => logits,
            None => {
                let last = *self
                    .generated
                    .last()
                    .expect("logits are only consumed by a generated token");
                self.chat
                    .model
                    .forward(&[last], self.prompt_tokens + self.generated.len() - 1)?
            }
        };
        let token = self.sampler.next_token(&logits, &self.generated)?;
        self.generated.push(token);
        let prompter = &self.chat.prompter;
        if !self.ignore_eos && prompter.stop_ids.contains(&token) {
            return Ok(Some(self.end(FinishReason::Stop)));
        }
        let piece = self.text_stream.push(&prompter.tokenizer, token)?;
        let (ready, hit_stop) = self.stops.push(&piece);
        self.text.push_str(&ready);
        if hit_stop {
            self.finish_reason = Some(FinishReason::Stop);
        }
        Ok(Some(ready))
    }

    /// Ends the answer; text held back as a possible stop string turned out not to be one.
    fn end(&mut self, reason: FinishReason) -> String {
        self.finish_reason = Some(reason);
        let rest = self.stops.finish();
        self.text.push_str(&rest);
        rest
    }

    /// The answer so far; `unfinished` is its reason if it has not ended by itself.
    pub fn completion(self, unfinished: FinishReason) -> Completion {
        let decode_seconds = self.decode_started.elapsed().as_secs_f64();
        let generated = self.generated.len();
        Completion {
            text: self.text,
            finish_reason: self.finish_reason.unwrap_or(unfinished),
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: generated,
            },
            timings: Timings {
                prefill_ms: self.prefill_seconds * 1000.0,
                prefill_tokens_per_second: rate(self.prompt_tokens, self.prefill_seconds),
                decode_tokens_per_second: rate(generated.saturating_sub(1), decode_seconds),
            },
        }
    }
}

fn rate(tokens: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        tokens as f64 / seconds
    } else {
        0.0
    }
}

/// Holds back text that could be the start of a stop string, so a stop string is never
/// half-sent.
struct StopStrings {
    stops: Vec<String>,
    pending: String,
}

impl StopStrings {
    fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            pending: String::new(),
        }
    }

    /// Returns the text that is safe to send, and whether a stop string was reached.
    fn push(&mut self, piece: &str) -> (String, bool) {
        self.pending.push_str(piece);
        let first_stop = self
            .stops
            .iter()
            .filter(|stop| !stop.is_empty())
            .filter_map(|stop| self.pending.find(stop.as_str()))
            .min();
        if let Some(index) = first_stop {
            let ready = self.pending[..index].to_owned();
            self.pending.clear();
            return (ready, true);
        }
        let held = self
            .stops
            .iter()
            .map(|stop| longest_suffix_that_prefixes(&self.pending, stop))
            .max()
            .unwrap_or(0);
        let ready_len = self.pending.len() - held;
        let ready = self.pending[..ready_len].to_owned();
        self.pending.drain(..ready_len);
        (ready, false)
    }

    fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

fn longest_suffix_that_prefixes(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&len| {
            text.is_char_boundary(text.len() - len)
                && stop.is_char_boundary(len)
                && text.ends_with(&stop[..len])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_held_back_then_cut() {
        let stops = vec!["###".to_owned()];
        let mut filter = StopStrings::new(stops.clone());
        assert_eq!(filter.push("Hola #"), ("Hola ".to_owned(), false));
        assert_eq!(filter.push("#"), (String::new(), false));
        assert_eq!(filter.push("# fin"), (String::new(), true));

        let mut filter = StopStrings::new(stops.clone());
        assert_eq!(filter.push("a #b"), ("a #b".to_owned(), false));
        assert_eq!(filter.push("ñ#"), ("ñ".to_owned(), false));
        assert_eq!(filter.finish(), "#");
    }
}
