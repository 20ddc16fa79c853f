//! The one generation loop, shared by the server and the browser worker: prefill the prompt,
//! then decode token by token, streaming text deltas until a stop token, a stop string,
//! `max_tokens`, or the caller says stop.

use std::sync::Arc;

use web_time::Instant;

use crate::error::{EngineError, Result};
use crate::model::{Model, Sequence, Step};
use crate::prefix::{Owner, PrefixCache};
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
    /// See [`crate::LoadOptions::control_tokens_in_messages`].
    pub control_tokens_in_messages: bool,
}

/// Private-use characters (plane 15) that stand in for the special tokens of messages while
/// the template renders them, so that they can be told apart from the template's own.
const STAND_INS: std::ops::RangeInclusive<u32> = 0xF_0000..=0xF_FFFD;

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
            control_tokens_in_messages: false,
        }
    }

    pub fn prompt(&self, messages: &[ChatMessage]) -> Result<String> {
        self.template.render(messages, true)
    }

    /// The ids of `messages` rendered through the chat template. The special tokens the
    /// messages themselves write are read as text unless `control_tokens_in_messages`.
    pub fn encode(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let written: Vec<Vec<std::ops::Range<usize>>> = messages
            .iter()
            .map(|message| self.tokenizer.special_tokens_in(&message.content))
            .collect();
        if self.control_tokens_in_messages || written.iter().all(Vec::is_empty) {
            let prompt = self.template.render(messages, add_generation_prompt)?;
            return self.tokenizer.encode(&prompt);
        }
        // Each special token a message writes becomes a character no message and no template
        // holds; after rendering, every such character is one of theirs, wherever the template
        // put the message.
        let taken = |candidate: char| {
            self.template.source().contains(candidate)
                || messages
                    .iter()
                    .any(|message| message.content.contains(candidate))
        };
        let mut free = STAND_INS
            .filter_map(char::from_u32)
            .filter(|&candidate| !taken(candidate));
        let mut stand_ins: Vec<(char, String)> = Vec::new();
        let mut stood_in = Vec::with_capacity(messages.len());
        for (message, ranges) in messages.iter().zip(&written) {
            let mut content = String::with_capacity(message.content.len());
            let mut copied = 0;
            for range in ranges {
                let token = &message.content[range.clone()];
                let stand_in = match stand_ins.iter().find(|(_, written)| written == token) {
                    Some((stand_in, _)) => *stand_in,
                    None => {
                        let stand_in = free.next().ok_or_else(|| {
                            EngineError::Template(
                                "the messages use every private-use character".into(),
                            )
                        })?;
                        stand_ins.push((stand_in, token.to_owned()));
                        stand_in
                    }
                };
                content.push_str(&message.content[copied..range.start]);
                content.push(stand_in);
                copied = range.end;
            }
            content.push_str(&message.content[copied..]);
            stood_in.push(ChatMessage::new(message.role, content));
        }
        let rendered = self.template.render(&stood_in, add_generation_prompt)?;
        let mut prompt = String::with_capacity(rendered.len());
        let mut as_text = Vec::new();
        for character in rendered.chars() {
            match stand_ins
                .iter()
                .find(|(stand_in, _)| *stand_in == character)
            {
                Some((_, token)) => {
                    as_text.push(prompt.len()..prompt.len() + token.len());
                    prompt.push_str(token);
                }
                None => prompt.push(character),
            }
        }
        self.tokenizer.encode_with_text_at(&prompt, &as_text)
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
            let ids = self.encode(&kept, true)?;
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

/// Prompt tokens read in one step beside answers being decoded: every decoding answer waits
/// for them, so they are few enough to keep its tokens flowing, and enough that a newcomer's
/// prompt is not read one sliver at a time.
pub const PROMPT_CHUNK_BESIDE_ANSWERS: usize = 64;
/// Prompt tokens read in one step when nothing is being decoded: bounds the step's memory
/// (activations grow with the rows) and lets a caller check for a stop between steps.
pub const PROMPT_CHUNK_ALONE: usize = 512;

/// A model with everything needed to chat, and the conversations it keeps for their next turn.
pub struct ChatModel {
    pub info: ModelInfo,
    pub model: Model,
    pub prompter: Arc<Prompter>,
    pub prefixes: PrefixCache,
}

impl ChatModel {
    /// Keeps no conversations; see [`ChatModel::keep_prefixes`].
    pub fn new(info: ModelInfo, model: Model, prompter: Prompter) -> Self {
        Self {
            info,
            model,
            prompter: Arc::new(prompter),
            prefixes: PrefixCache::new(0),
        }
    }

    /// Keeps finished answers' keys and values, up to `budget_bytes`, for the prompts that
    /// start the same way.
    pub fn keep_prefixes(&mut self, budget_bytes: usize) {
        self.prefixes = PrefixCache::new(budget_bytes);
    }

    /// Reads `messages` (what every conversation starts with: the system prompt) before anyone
    /// asks, and keeps them; returns how many tokens they are.
    pub fn read_ahead(&mut self, messages: &[ChatMessage]) -> Result<usize> {
        let ids = self.prompter.encode(messages, false)?;
        let params = GenerateParams {
            sampling: crate::SamplingParams::greedy(),
            max_tokens: 1,
            ..GenerateParams::default()
        };
        let mut answer = self.start(&ids, &params)?;
        while self.next(&mut answer)?.is_some() {}
        self.finish(answer);
        Ok(ids.len())
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
        let mut answer = self.start(prompt_ids, params)?;
        while let Some(piece) = self.next(&mut answer)? {
            if !piece.is_empty() && on_delta(&piece) == Flow::Cancel {
                break;
            }
        }
        Ok(self.finish(answer))
    }

    /// An answer to `prompt_ids` of a model everyone shares the conversations of (see
    /// [`ChatModel::start_for`]).
    pub fn start(&mut self, prompt_ids: &[u32], params: &GenerateParams) -> Result<Answer> {
        self.start_for(prompt_ids, params, Owner::Everyone)
    }

    /// An answer to `owner`'s `prompt_ids`, ready to be stepped ([`ChatModel::step`] or
    /// [`ChatModel::next`]); it starts from the longest prefix kept of an earlier prompt of
    /// `owner`'s or everyone's, and is kept as `owner`'s when it finishes.
    pub fn start_for(
        &mut self,
        prompt_ids: &[u32],
        params: &GenerateParams,
        owner: Owner,
    ) -> Result<Answer> {
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
        let start = self.prefixes.start(&mut self.model, prompt_ids, owner)?;
        Ok(Answer {
            sequence: start.sequence,
            owner,
            prompt: prompt_ids.to_vec(),
            reused_tokens: start.reused,
            max_tokens: params.max_tokens.min(context_length - prompt_ids.len()),
            ignore_eos: params.ignore_eos,
            sampler,
            stops: StopStrings::new(params.stop.clone()),
            text_stream: TextStream::new(),
            generated: Vec::new(),
            text: String::new(),
            finish_reason: None,
            started: Instant::now(),
            first_token: None,
        })
    }

    /// One step for the whole batch: one forward pass gives every decoding answer its next
    /// token and reads a chunk of the prompts still being read (oldest first). Returns, for each
    /// answer, the text it makes ready (often empty: a character or a possible stop string may
    /// be incomplete), or `None` once it has ended.
    pub fn step(&mut self, answers: &mut [&mut Answer]) -> Result<Vec<Option<String>>> {
        let decoding = answers
            .iter()
            .any(|answer| answer.running() && !answer.reading_prompt());
        let prompt_budget = if decoding {
            PROMPT_CHUNK_BESIDE_ANSWERS
        } else {
            PROMPT_CHUNK_ALONE
        };
        self.step_reading(answers, prompt_budget)
    }

    /// [`ChatModel::step`], reading at most `prompt_budget` prompt tokens in it: a caller that
    /// must be able to stop between steps soon (work that yields to others) takes smaller ones.
    pub fn step_reading(
        &mut self,
        answers: &mut [&mut Answer],
        mut prompt_budget: usize,
    ) -> Result<Vec<Option<String>>> {
        let mut pieces: Vec<Option<String>> = vec![None; answers.len()];
        for (piece, answer) in pieces.iter_mut().zip(answers.iter_mut()) {
            if answer.finish_reason.is_none() && answer.generated.len() >= answer.max_tokens {
                *piece = Some(answer.end(FinishReason::Length));
            }
        }
        let batch = self.model.max_batch();
        let mut inputs: Vec<(usize, Vec<u32>, bool)> = Vec::new();
        for (index, answer) in answers.iter().enumerate() {
            if inputs.len() == batch || !answer.running() {
                continue;
            }
            if answer.reading_prompt() {
                if prompt_budget == 0 {
                    continue;
                }
                let read = answer.sequence.tokens().len();
                let chunk = &answer.prompt[read..(read + prompt_budget).min(answer.prompt.len())];
                prompt_budget -= chunk.len();
                inputs.push((
                    index,
                    chunk.to_vec(),
                    read + chunk.len() == answer.prompt.len(),
                ));
            } else {
                let last = *answer
                    .generated
                    .last()
                    .expect("an answer past its prompt has a token");
                inputs.push((index, vec![last], true));
            }
        }
        if inputs.is_empty() {
            return Ok(pieces);
        }
        let logits = {
            let mut chosen: Vec<Option<&mut Answer>> = answers
                .iter_mut()
                .map(|answer| Some(&mut **answer))
                .collect();
            let mut steps = Vec::with_capacity(inputs.len());
            for (index, tokens, logits) in &inputs {
                let answer = chosen[*index].take().expect("an answer is chosen once");
                steps.push(Step {
                    sequence: &mut answer.sequence,
                    tokens,
                    logits: *logits,
                });
            }
            self.model.forward(&mut steps)?
        };
        for ((index, _, _), logits) in inputs.iter().zip(logits) {
            if let Some(logits) = logits {
                pieces[*index] = Some(answers[*index].take_token(&self.prompter, &logits)?);
            }
        }
        Ok(pieces)
    }

    /// [`ChatModel::step`] for one answer: what its next step makes ready, `None` at its end.
    pub fn next(&mut self, answer: &mut Answer) -> Result<Option<String>> {
        loop {
            if !answer.running() {
                return Ok(None);
            }
            let [piece] = <[Option<String>; 1]>::try_from(self.step(&mut [&mut *answer])?)
                .expect("one answer, one piece");
            if piece.is_some() || !answer.running() {
                return Ok(piece);
            }
        }
    }

    /// Ends the answer (as cancelled if it had not ended by itself) and keeps its sequence for
    /// the prompts that will start the same way.
    pub fn finish(&mut self, answer: Answer) -> Completion {
        // Keeping is an optimisation: a copy that fails (out of memory) costs only the reuse.
        let _ = self.prefixes.keep(&answer.sequence, answer.owner);
        answer.completion(FinishReason::Cancelled)
    }
}

/// One answer being written: its sequence's keys and values, its sampler and what it has said.
pub struct Answer {
    sequence: Sequence,
    /// Whose conversation it is, for the prefix cache.
    owner: Owner,
    prompt: Vec<u32>,
    /// Prompt tokens found already computed (kept from an earlier turn or another
    /// conversation that starts the same way).
    reused_tokens: usize,
    max_tokens: usize,
    ignore_eos: bool,
    sampler: Sampler,
    stops: StopStrings,
    text_stream: TextStream,
    generated: Vec<u32>,
    text: String,
    finish_reason: Option<FinishReason>,
    started: Instant,
    /// When the first token was chosen.
    first_token: Option<Instant>,
}

impl Answer {
    fn running(&self) -> bool {
        self.finish_reason.is_none()
    }

    fn reading_prompt(&self) -> bool {
        self.generated.is_empty()
    }

    /// Whether it has stopped, reached its length or the context's end.
    pub fn ended(&self) -> bool {
        !self.running()
    }

    /// Tokens chosen so far.
    pub fn generated_tokens(&self) -> usize {
        self.generated.len()
    }

    /// Chooses the next token from `logits` and returns the text it makes ready.
    fn take_token(&mut self, prompter: &Prompter, logits: &candle_core::Tensor) -> Result<String> {
        let token = self.sampler.next_token(logits, &self.generated)?;
        self.first_token.get_or_insert_with(Instant::now);
        self.generated.push(token);
        if !self.ignore_eos && prompter.stop_ids.contains(&token) {
            return Ok(self.end(FinishReason::Stop));
        }
        let piece = self.text_stream.push(&prompter.tokenizer, token)?;
        let (ready, hit_stop) = self.stops.push(&piece);
        self.text.push_str(&ready);
        if hit_stop {
            self.finish_reason = Some(FinishReason::Stop);
        }
        Ok(ready)
    }

    /// Ends the answer; text held back as a possible stop string turned out not to be one.
    fn end(&mut self, reason: FinishReason) -> String {
        self.finish_reason = Some(reason);
        let rest = self.stops.finish();
        self.text.push_str(&rest);
        rest
    }

    /// The answer so far; `unfinished` is its reason if it has not ended by itself.
    fn completion(self, unfinished: FinishReason) -> Completion {
        let first_token = self.first_token.unwrap_or_else(Instant::now);
        let prefill_seconds = (first_token - self.started).as_secs_f64();
        let decode_seconds = first_token.elapsed().as_secs_f64();
        let generated = self.generated.len();
        Completion {
            text: self.text,
            finish_reason: self.finish_reason.unwrap_or(unfinished),
            usage: Usage {
                prompt_tokens: self.prompt.len(),
                completion_tokens: generated,
                cached_tokens: self.reused_tokens,
            },
            timings: Timings {
                prefill_ms: prefill_seconds * 1000.0,
                prefill_tokens_per_second: rate(
                    self.prompt.len() - self.reused_tokens,
                    prefill_seconds,
                ),
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
