//! Conversations' keys and values kept after an answer, so that the next turn — whose prompt
//! repeats the conversation so far — reads only what is new, and a new visitor's first turn
//! starts after the Space's system prompt, which every conversation shares.
//!
//! Entries are looked up by their tokens, never by who asked: a prompt reuses exactly the
//! longest run of tokens it shares with an entry, so an edited earlier question (different
//! tokens from the edit on) reuses only what comes before the edit. A reused prefix gives the
//! very tokens a cold start would, because each token's keys and values are computed the same
//! way however the batch around it was made (see [`crate::llama::Llama::forward`]).

use crate::error::Result;
use crate::model::{Model, Sequence};

/// Room allocated past a reused prefix for the rest of the prompt and the answer, so that the
/// copy is not grown again at once.
const ROOM_AHEAD: usize = 256;

pub struct PrefixCache {
    budget_bytes: usize,
    entries: Vec<Entry>,
    /// Counts lookups, to tell the least recently used entry.
    clock: u64,
}

struct Entry {
    sequence: Sequence,
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

    /// A sequence for `prompt`: a copy of the longest prefix any entry shares with it (the entry
    /// stays, for the other conversations that share it), or a new one. At least the prompt's
    /// last token is left to run, since its logits give the first token of the answer.
    pub fn start(&mut self, model: &mut Model, prompt: &[u32]) -> Result<Start> {
        self.clock += 1;
        let usable = prompt.len().saturating_sub(1);
        let best = self
            .entries
            .iter_mut()
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

    /// Keeps a finished sequence (copied to its length, without the room it had grown), in
    /// place of the entries it continues, and forgets the least recently used entries until
    /// the budget holds. A sequence the model cannot copy is not kept.
    pub fn keep(&mut self, sequence: &Sequence) -> Result<()> {
        if self.budget_bytes == 0 || sequence.tokens().is_empty() {
            return Ok(());
        }
        let Some(kept) = sequence.copy_prefix(sequence.tokens().len(), 0)? else {
            return Ok(());
        };
        if kept.bytes() > self.budget_bytes {
            return Ok(());
        }
        // An entry whose every token the new one starts with serves no lookup better than it.
        self.entries.retain(|entry| {
            common_prefix(entry.sequence.tokens(), kept.tokens()) < entry.sequence.tokens().len()
        });
        self.clock += 1;
        self.entries.push(Entry {
            sequence: kept,
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
