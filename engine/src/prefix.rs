//! Conversations' keys and values kept after an answer, so that the next turn — whose prompt
//! repeats the conversation so far — reads only what is new, and a new visitor's first turn
//! starts after the Space's system prompt, which every conversation shares.
//!
//! Each entry belongs to whoever's conversation it is ([`Owner`]): a visitor's prompt reuses
//! only the entries kept of that visitor's own answers and those everyone shares (the system
//! prompt read ahead). Were they shared, another visitor could send guesses of what someone
//! typed and learn from the reuse reported (`cached_tokens`), or from a first token that came
//! sooner, which guess was right. Among the entries it may use, a prompt reuses exactly the
//! longest run of tokens it shares with one, so an edited earlier question (different tokens
//! from the edit on) reuses only what comes before the edit. A reused prefix gives the
//! very tokens a cold start would, because each token's keys and values are computed the same
//! way however the batch around it was made (see [`crate::llama::Llama::forward`]).

use crate::error::Result;
use crate::model::{Model, Sequence};

/// Room allocated past a reused prefix for the rest of the prompt and the answer, so that the
/// copy is not grown again at once.
const ROOM_AHEAD: usize = 256;

/// Whose conversation a kept sequence is, and so who may continue it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Owner {
    /// What every conversation starts with, and a model only one person talks to (the
    /// browser's).
    #[default]
    Everyone,
    /// One visitor of a server (its address, or its block: see the server's `client`).
    Visitor(u128),
}

impl Owner {
    /// Whether a prompt of `self`'s may continue an entry of `entry`'s.
    fn may_use(self, entry: Owner) -> bool {
        entry == Owner::Everyone || entry == self
    }
}

pub struct PrefixCache {
    budget_bytes: usize,
    entries: Vec<Entry>,
    /// Counts lookups, to tell the least recently used entry.
    clock: u64,
}

struct Entry {
    sequence: Sequence,
    owner: Owner,
    last_used: u64,
}

/// A sequence to continue a prompt with: `reused` of the prompt's tokens are already in it.
pub struct Start {
    pub sequence: Sequence,
    pub reused: usize,
}

impl PrefixCache {
    /// Keeps at most `budget_bytes` of keys and values; 0 keeps nothing.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            entries: Vec::new(),
            clock: 0,
        }
    }

    /// Bytes held by the kept sequences.
    pub fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|entry| entry.sequence.bytes())
            .sum()
    }

    /// How many sequences are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A sequence for `owner`'s `prompt`: a copy of the longest prefix an entry it may use
    /// shares with it (the entry stays, for the other conversations that share it), or a new
    /// one. At least the prompt's last token is left to run, since its logits give the first
    /// token of the answer.
    pub fn start(&mut self, model: &mut Model, prompt: &[u32], owner: Owner) -> Result<Start> {
        self.clock += 1;
        let usable = prompt.len().saturating_sub(1);
        let best = self
            .entries
            .iter_mut()
            .filter(|entry| owner.may_use(entry.owner))
            .map(|entry| {
                let shared = common_prefix(entry.sequence.tokens(), prompt).min(usable);
                (shared, entry)
            })
            .filter(|(shared, _)| *shared > 0)
            .max_by_key(|(shared, entry)| (*shared, entry.last_used));
        if let Some((shared, entry)) = best {
            entry.last_used = self.clock;
            let ahead = prompt.len() - shared + ROOM_AHEAD;
            if let Some(sequence) = entry.sequence.copy_prefix(shared, ahead)? {
                return Ok(Start {
                    sequence,
                    reused: shared,
                });
            }
        }
        Ok(Start {
            sequence: model.new_sequence(),
            reused: 0,
        })
    }

    /// Keeps `owner`'s finished sequence (copied to its length, without the room it had
    /// grown), in place of the entries of the same owner it continues, and forgets the least
    /// recently used entries until the budget holds. A sequence the model cannot copy is not
    /// kept.
    pub fn keep(&mut self, sequence: &Sequence, owner: Owner) -> Result<()> {
        if self.budget_bytes == 0 || sequence.tokens().is_empty() {
            return Ok(());
        }
        let Some(kept) = sequence.copy_prefix(sequence.tokens().len(), 0)? else {
            return Ok(());
        };
        if kept.bytes() > self.budget_bytes {
            return Ok(());
        }
        // An entry whose every token the new one starts with serves no lookup better than it,
        // unless others may use it and not the new one.
        self.entries.retain(|entry| {
            entry.owner != owner
                || common_prefix(entry.sequence.tokens(), kept.tokens())
                    < entry.sequence.tokens().len()
        });
        self.clock += 1;
        self.entries.push(Entry {
            sequence: kept,
            owner,
            last_used: self.clock,
        });
        let mut held = self.bytes();
        while held > self.budget_bytes {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(index, _)| index)
                .expect("bytes are held by entries");
            held -= self.entries.swap_remove(oldest).sequence.bytes();
        }
        Ok(())
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(a, b)| a == b).count()
}
