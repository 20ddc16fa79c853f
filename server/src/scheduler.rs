//! Who is answered next: one first-come, first-served line with `max_concurrent` places being
//! answered and `max_queue` places in all, per-client limits (requests, and tokens a minute),
//! and a wait estimate learnt from the answers that finished.
//!
//! Browser answers the server makes again before it stores them ([`Priority::Remake`]) take a
//! place too, at the lowest priority: they are admitted only while the line has room, at most
//! [`wire::limits::REMAKES_AT_ONCE`] of them, they never count against the chat's places, and
//! they run only while no chat request is running or waiting ([`Scheduler::chat_is_idle`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prometheus_client::metrics::gauge::Gauge;
use space::Limits;
use tokio::sync::watch;

use crate::client::{MINUTE, RecentRequests, VISITORS_KEPT};
use crate::error::ApiError;

/// How quickly the wait estimate follows the latest answers.
const SMOOTHING: f64 = 0.3;

/// What a request is for, and so whom it yields to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// A visitor waiting for an answer.
    Chat,
    /// An answer a visitor's browser made, made again before it is stored: it waits for the
    /// chat to be idle, step by step.
    Remake,
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Turn {
    /// `position` 1 is the next to be answered.
    Waiting {
        position: usize,
        estimated_wait_seconds: Option<f64>,
    },
    Started,
}

pub struct Scheduler {
    limits: Limits,
    line: Mutex<Line>,
    waiting_gauge: Gauge,
    running_gauge: Gauge,
}

#[derive(Default)]
struct Line {
    running: usize,
    waiting: VecDeque<Waiter>,
    /// Remakes admitted (running or waiting for the chat to be idle).
    remakes: usize,
    clients: HashMap<IpAddr, ClientUse>,
    next_id: u64,
    /// Smoothed seconds one request holds its place once started.
    average_seconds: Option<f64>,
}

#[derive(Default)]
struct ClientUse {
    in_flight: usize,
    recent: RecentRequests,
    tokens: SpentTokens,
}

/// The tokens one visitor's answers took in the last minute, and those reserved by the answers
/// still running.
#[derive(Default)]
struct SpentTokens {
    spent: VecDeque<(Instant, usize)>,
    reserved: usize,
}

impl SpentTokens {
    /// Forgets what is older than a minute; the tokens counted now.
    fn counted(&mut self, now: Instant) -> usize {
        while self
            .spent
            .front()
            .is_some_and(|(when, _)| now - *when >= MINUTE)
        {
            self.spent.pop_front();
        }
        self.spent.iter().map(|(_, tokens)| tokens).sum::<usize>() + self.reserved
    }

    /// Seconds until `wanted` more tokens fit in `budget` (at least 1), if they ever can
    /// without the reservations ending.
    fn retry_after(&self, wanted: usize, budget: usize, now: Instant) -> u64 {
        let mut counted =
            self.spent.iter().map(|(_, tokens)| tokens).sum::<usize>() + self.reserved;
        for (when, tokens) in &self.spent {
            counted -= tokens;
            if counted + wanted <= budget {
                return MINUTE.saturating_sub(now - *when).as_secs().max(1);
            }
        }
        MINUTE.as_secs()
    }
}

struct Waiter {
    id: u64,
    turn: watch::Sender<Turn>,
}

/// A request's place in the line; dropping it gives the place back (a client who leaves while
/// waiting or while being answered frees it at once).
pub struct Ticket {
    scheduler: Arc<Scheduler>,
    id: u64,
    client: IpAddr,
    priority: Priority,
    turn: watch::Receiver<Turn>,
    started_at: Option<Instant>,
    /// Tokens reserved against the visitor's budget ([`Ticket::reserve_tokens`]), until
    /// [`Ticket::settle`] replaces them with what the answer took; a ticket dropped unsettled
    /// is charged its reservation.
    reserved_tokens: usize,
    settled: Option<usize>,
}

impl Scheduler {
    pub fn new(limits: Limits, waiting_gauge: Gauge, running_gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            limits,
            line: Mutex::new(Line::default()),
            waiting_gauge,
            running_gauge,
        })
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        self.line
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a place in the line for `client`, or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, client: IpAddr, priority: Priority) -> Result<Ticket, ApiError> {
        let limits = &self.limits;
        let mut line = self.line();
        let now = Instant::now();
        if line.clients.len() > VISITORS_KEPT {
            line.clients.retain(|_, used| {
                used.in_flight > 0 || !used.recent.is_idle(now) || used.tokens.counted(now) > 0
            });
        }
        let used = line.clients.entry(client).or_default();
        if let Some(retry_after_seconds) = used
            .recent
            .retry_after(limits.requests_per_minute_per_client, now)
        {
            return Err(ApiError::ClientRateLimited {
                limit: limits.requests_per_minute_per_client,
                retry_after_seconds,
            });
        }
        if used.in_flight >= limits.max_concurrent_per_client {
            return Err(ApiError::ClientBusy {
                limit: limits.max_concurrent_per_client,
            });
        }
        // The chat counts only its own: remakes never make a visitor wait or be refused.
        let held = line.running
            + line.waiting.len()
            + if priority == Priority::Remake {
                line.remakes
            } else {
                0
            };
        if held >= limits.max_queue {
            let retry_after_seconds = self
                .estimate(&line, held)
                .map_or(5, |seconds| seconds.ceil() as u64)
                .clamp(1, 60);
            return Err(ApiError::Overloaded {
                limit: limits.max_queue,
                retry_after_seconds,
            });
        }
        if priority == Priority::Remake && line.remakes >= wire::limits::REMAKES_AT_ONCE {
            return Err(ApiError::RemakesBusy);
        }

        let used = line.clients.entry(client).or_default();
        used.recent.record(now);
        used.in_flight += 1;
        line.next_id += 1;
        let id = line.next_id;
        if priority == Priority::Remake {
            line.remakes += 1;
            self.publish(&line);
            let (_, turn) = watch::channel(Turn::Started);
            return Ok(Ticket {
                scheduler: Arc::clone(self),
                id,
                client,
                priority,
                turn,
                started_at: None,
                reserved_tokens: 0,
                settled: None,
            });
        }
        let starts_now = line.running < limits.max_concurrent && line.waiting.is_empty();
        let (sender, turn) = if starts_now {
            line.running += 1;
            watch::channel(Turn::Started)
        } else {
            let position = line.waiting.len() + 1;
            let (sender, receiver) = watch::channel(Turn::Waiting {
                position,
                estimated_wait_seconds: self.estimate(&line, position),
            });
            line.waiting.push_back(Waiter {
                id,
                turn: sender.clone(),
            });
            (sender, receiver)
        };
        drop(sender);
        self.publish(&line);
        Ok(Ticket {
            scheduler: Arc::clone(self),
            id,
            client,
            priority,
            turn,
            started_at: starts_now.then_some(now),
            reserved_tokens: 0,
            settled: None,
        })
    }

    /// No chat request is being answered or waiting: a remake may take its next step.
    pub fn chat_is_idle(&self) -> bool {
        let line = self.line();
        line.running == 0 && line.waiting.is_empty()
    }

    /// Rough seconds until the request at `position` starts: whole answers ahead of it, shared
    /// between the places being answered.
    fn estimate(&self, line: &Line, position: usize) -> Option<f64> {
        line.average_seconds
            .map(|seconds| seconds * position as f64 / self.limits.max_concurrent as f64)
    }

    /// Fills free places from the front of the line and tells the rest their new positions.
    fn advance(&self, line: &mut Line) {
        while line.running < self.limits.max_concurrent {
            let Some(next) = line.waiting.pop_front() else {
                break;
            };
            line.running += 1;
            next.turn.send_replace(Turn::Started);
        }
        for (index, waiter) in line.waiting.iter().enumerate() {
            let position = index + 1;
            waiter.turn.send_replace(Turn::Waiting {
                position,
                estimated_wait_seconds: self.estimate(line, position),
            });
        }
        self.publish(line);
    }

    fn publish(&self, line: &Line) {
        self.waiting_gauge.set(line.waiting.len() as i64);
        self.running_gauge.set(line.running as i64);
    }
}

impl Ticket {
    /// Reserves `tokens` (the prompt the model will read and the answer's `max_tokens`)
    /// against the visitor's `[limits] tokens_per_minute_per_client`, or says when they fit.
    pub fn reserve_tokens(&mut self, tokens: usize) -> Result<(), ApiError> {
        let budget = self.scheduler.limits.tokens_per_minute_per_client;
        let now = Instant::now();
        let mut line = self.scheduler.line();
        let used = line.clients.entry(self.client).or_default();
        if used.tokens.counted(now) + tokens > budget {
            return Err(ApiError::ClientTokens {
                limit: budget,
                asked: tokens,
                retry_after_seconds: used.tokens.retry_after(tokens, budget, now),
            });
        }
        used.tokens.reserved += tokens;
        self.reserved_tokens += tokens;
        Ok(())
    }

    /// What the answer really took, charged in place of its reservation when the place is
    /// given back.
    pub fn settle(&mut self, tokens: usize) {
        self.settled = Some(tokens);
    }

    /// The request's current place.
    pub fn turn(&self) -> Turn {
        *self.turn.borrow()
    }

    /// Waits for this request's turn, calling `on_wait` with each new place in the line.
    pub async fn wait_for_turn(&mut self, mut on_wait: impl FnMut(usize, Option<f64>)) {
        loop {
            match *self.turn.borrow_and_update() {
                Turn::Started => break,
                Turn::Waiting {
                    position,
                    estimated_wait_seconds,
                } => on_wait(position, estimated_wait_seconds),
            }
            if self.turn.changed().await.is_err() {
                // The sender lives as long as the place in the line; its end means it started.
                break;
            }
        }
        self.started_at.get_or_insert_with(Instant::now);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let scheduler = &self.scheduler;
        let mut line = scheduler.line();
        let line = &mut *line;
        if let Some(used) = line.clients.get_mut(&self.client) {
            used.in_flight -= 1;
            used.tokens.reserved -= self.reserved_tokens;
            let spent = self.settled.unwrap_or(self.reserved_tokens);
            if spent > 0 {
                used.tokens.spent.push_back((Instant::now(), spent));
            }
        }
        if self.priority == Priority::Remake {
            line.remakes -= 1;
            scheduler.publish(line);
            return;
        }
        if let Some(index) = line.waiting.iter().position(|waiter| waiter.id == self.id) {
            line.waiting.remove(index);
        } else {
            line.running -= 1;
            if let Some(started_at) = self.started_at {
                let seconds = started_at.elapsed().as_secs_f64();
                line.average_seconds = Some(match line.average_seconds {
                    Some(average) => average + SMOOTHING * (seconds - average),
                    None => seconds,
                });
            }
        }
        scheduler.advance(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scheduler(
        max_concurrent: usize,
        max_queue: usize,
        per_client: usize,
        per_minute: usize,
    ) -> Arc<Scheduler> {
        let limits = Limits {
            max_concurrent,
            max_queue,
            max_concurrent_per_client: per_client,
            requests_per_minute_per_client: per_minute,
            ..Limits::default()
        };
        Scheduler::new(limits, Gauge::default(), Gauge::default())
    }

    fn client(n: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, n])
    }

    fn position(ticket: &Ticket) -> Option<usize> {
        match ticket.turn() {
            Turn::Waiting { position, .. } => Some(position),
            Turn::Started => None,
        }
    }

    #[test]
    fn first_come_first_served_with_positions_that_move_up() {
        let line = scheduler(1, 4, 4, 100);
        let first = line.admit(client(1), Priority::Chat).unwrap();
        let second = line.admit(client(2), Priority::Chat).unwrap();
        let third = line.admit(client(3), Priority::Chat).unwrap();
        let fourth = line.admit(client(4), Priority::Chat).unwrap();
        assert_eq!(
            [
                position(&first),
                position(&second),
                position(&third),
                position(&fourth)
            ],
            [None, Some(1), Some(2), Some(3)]
        );
        assert!(matches!(
            line.admit(client(5), Priority::Chat),
            Err(ApiError::Overloaded { limit: 4, .. })
        ));

        // The second leaves while waiting: everyone behind moves up, nobody is skipped.
        drop(second);
        assert_eq!([position(&third), position(&fourth)], [Some(1), Some(2)]);
        drop(first);
        assert_eq!([position(&third), position(&fourth)], [None, Some(1)]);
    }

    #[test]
    fn per_client_limits_name_the_limit() {
        let line = scheduler(1, 8, 2, 3);
        let (_a, _b) = (
            line.admit(client(1), Priority::Chat).unwrap(),
            line.admit(client(1), Priority::Chat).unwrap(),
        );
        let busy = line.admit(client(1), Priority::Chat).err().unwrap();
        assert!(
            busy.to_string().contains("max_concurrent_per_client = 2"),
            "{busy}"
        );
        drop((_a, _b));
        let _third = line.admit(client(1), Priority::Chat).unwrap();
        let limited = line
            .admit(client(1), Priority::Chat)
            .and_then(|_| line.admit(client(1), Priority::Chat))
            .err()
            .unwrap();
        assert!(
            limited
                .to_string()
                .contains("requests_per_minute_per_client = 3"),
            "{limited}"
        );
        assert!(
            line.admit(client(2), Priority::Chat).is_ok(),
            "other clients are not affected"
        );
    }

    #[tokio::test]
    async fn a_waiting_request_starts_when_the_one_ahead_finishes() {
        let line = scheduler(1, 2, 2, 100);
        let running = line.admit(client(1), Priority::Chat).unwrap();
        let mut waiting = line.admit(client(2), Priority::Chat).unwrap();
        let mut positions = Vec::new();
        let finish = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(running);
        });
        waiting
            .wait_for_turn(|position, _| positions.push(position))
            .await;
        finish.await.unwrap();
        assert_eq!(positions, [1]);
        assert_eq!(waiting.turn(), Turn::Started);
        let estimate = match line.admit(client(3), Priority::Chat).unwrap().turn() {
            Turn::Waiting {
                estimated_wait_seconds,
                ..
            } => estimated_wait_seconds,
            Turn::Started => None,
        };
        assert!(
            estimate.is_some_and(|seconds| seconds > 0.0),
            "learnt from the first answer: {estimate:?}"
        );
    }
}
