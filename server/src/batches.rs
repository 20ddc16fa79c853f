//! The thread that owns the model: every answer admitted by the [`crate::scheduler`] joins
//! the batch between two forward steps, gets its next token from each step (one pass over the
//! weights for all of them), and leaves when it stops, reaches its length, or its visitor goes.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use engine::{
    Answer, ChatModel, Completion, FinishReason, Flow, GenerateParams, Owner, Timings, Usage,
};

use crate::error::ApiError;
use crate::metrics::EngineMetrics;
use crate::scheduler::Ticket;
use tokio_util::sync::CancellationToken;

/// An answer to generate, as the API hands it over.
pub struct Job {
    pub prompt_ids: Vec<u32>,
    pub params: GenerateParams,
    /// Whose conversation it is: it continues only that visitor's kept prefixes, and
    /// everyone's (see [`engine::prefix`]).
    pub owner: Owner,
    /// Called on the model's thread with each piece of text; [`Flow::Cancel`] ends the answer.
    pub on_delta: Box<dyn FnMut(&str) -> Flow + Send>,
    /// Set when the visitor has gone: looked at before the prompt is read and before every
    /// step, so that neither a prompt nor an answer runs on for nobody.
    pub cancel: CancellationToken,
    /// The request's place in the line: it is given back when the work ends, not when the
    /// visitor leaves, so that the places bound the work really being done.
    pub place: Ticket,
    pub done: tokio::sync::oneshot::Sender<Result<Completion, ApiError>>,
}

impl Job {
    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

struct Running {
    answer: Answer,
    job: Job,
    /// Its visitor left (or it ended): it leaves the batch after this step.
    leaving: bool,
}

/// Runs until every sender of `jobs` is gone.
pub fn run(mut chat: ChatModel, jobs: Receiver<Job>, metrics: &EngineMetrics) {
    let mut running: Vec<Running> = Vec::new();
    loop {
        if running.is_empty() {
            let Ok(job) = jobs.recv() else { return };
            join(&mut chat, job, &mut running);
        }
        while running.len() < chat.model.max_batch() {
            match jobs.try_recv() {
                Ok(job) => join(&mut chat, job, &mut running),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if running.is_empty() => return,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        if running.is_empty() {
            continue;
        }
        step(&mut chat, &mut running, metrics);
        metrics.prefix_cache_bytes.set(chat.prefixes.bytes() as i64);
    }
}

fn join(chat: &mut ChatModel, mut job: Job, running: &mut Vec<Running>) {
    if job.cancelled() {
        job.place.settle(0);
        let _ = job.done.send(Ok(never_begun(job.prompt_ids.len())));
        return;
    }
    match chat.start_for(&job.prompt_ids, &job.params, job.owner) {
        Ok(answer) => running.push(Running {
            answer,
            job,
            leaving: false,
        }),
        Err(error) => {
            let _ = job.done.send(Err(error.into()));
        }
    }
}

/// The answer of a visitor who left before its prompt was read.
fn never_begun(prompt_tokens: usize) -> Completion {
    Completion {
        text: String::new(),
        finish_reason: FinishReason::Cancelled,
        usage: Usage {
            prompt_tokens,
            ..Usage::default()
        },
        timings: Timings::default(),
    }
}

/// One forward step for the batch; the answers that end leave it.
fn step(chat: &mut ChatModel, running: &mut Vec<Running>, metrics: &EngineMetrics) {
    for member in running.iter_mut() {
        member.leaving |= member.job.cancelled();
    }
    leave(chat, running);
    if running.is_empty() {
        return;
    }
    let started = Instant::now();
    let generated_before: usize = running.iter().map(|r| r.answer.generated_tokens()).sum();
    let mut answers: Vec<&mut Answer> = running.iter_mut().map(|r| &mut r.answer).collect();
    // A bug in a kernel must not take the Space down: the batch fails, the next one is served.
    let stepped = std::panic::catch_unwind(AssertUnwindSafe(|| chat.step(&mut answers)));
    let pieces = match stepped {
        Ok(Ok(pieces)) => pieces,
        failed => {
            let reason = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => "the model's thread panicked (see the server log)".to_owned(),
            };
            tracing::error!(%reason, answers = running.len(), "a forward step failed");
            for gone in running.drain(..) {
                let _ = gone
                    .job
                    .done
                    .send(Err(ApiError::GenerationFailed(reason.clone())));
            }
            return;
        }
    };
    let generated: usize = running.iter().map(|r| r.answer.generated_tokens()).sum();
    metrics.batch_size.observe(running.len() as f64);
    metrics
        .engine_busy_seconds
        .inc_by(started.elapsed().as_secs_f64());
    metrics
        .engine_tokens
        .inc_by((generated - generated_before) as u64);
    for (member, piece) in running.iter_mut().zip(pieces) {
        if let Some(text) = piece
            && !text.is_empty()
            && (member.job.on_delta)(&text) == Flow::Cancel
        {
            member.leaving = true;
        }
    }
    leave(chat, running);
}

/// The answers that ended or whose visitors left leave the batch (and give back their places).
fn leave(chat: &mut ChatModel, running: &mut Vec<Running>) {
    let mut index = 0;
    while index < running.len() {
        let member = &running[index];
        if member.leaving || member.answer.ended() {
            // In order: prompts are read oldest first.
            let mut member = running.remove(index);
            let completion = chat.finish(member.answer);
            member.job.place.settle(completion.usage.tokens_spent());
            let _ = member.job.done.send(Ok(completion));
        } else {
            index += 1;
        }
    }
}
