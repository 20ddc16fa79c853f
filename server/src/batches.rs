//! The thread that owns the model: every answer admitted by the [`crate::scheduler`] joins
//! the batch between two forward steps, gets its next token from each step (one pass over the
//! weights for all of them), and leaves when it stops, reaches its length, or its visitor goes.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use engine::{Answer, ChatModel, Completion, Flow, GenerateParams};

use crate::error::ApiError;
use crate::metrics::EngineMetrics;

/// An answer to generate, as the API hands it over.
pub struct Job {
    pub prompt_ids: Vec<u32>,
    pub params: GenerateParams,
    /// Called on the model's thread with each piece of text; [`Flow::Cancel`] ends the answer.
    pub on_delta: Box<dyn FnMut(&str) -> Flow + Send>,
    pub done: tokio::sync::oneshot::Sender<Result<Completion, ApiError>>,
}

struct Running {
    answer: Answer,
    on_delta: Box<dyn FnMut(&str) -> Flow + Send>,
    done: tokio::sync::oneshot::Sender<Result<Completion, ApiError>>,
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

fn join(chat: &mut ChatModel, job: Job, running: &mut Vec<Running>) {
    match chat.start(&job.prompt_ids, &job.params) {
        Ok(answer) => running.push(Running {
            answer,
            on_delta: job.on_delta,
            done: job.done,
            leaving: false,
        }),
        Err(error) => {
            let _ = job.done.send(Err(error.into()));
        }
    }
}

/// One forward step for the batch; the answers that end leave it.
fn step(chat: &mut ChatModel, running: &mut Vec<Running>, metrics: &EngineMetrics) {
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
            && (member.on_delta)(&text) == Flow::Cancel
        {
            member.leaving = true;
        }
    }
    let mut index = 0;
    while index < running.len() {
        let member = &running[index];
        if member.leaving || member.answer.ended() {
            // In order: prompts are read oldest first.
            let member = running.remove(index);
            let completion = chat.finish(member.answer);
            let _ = member.done.send(Ok(completion));
        } else {
            index += 1;
        }
    }
}
