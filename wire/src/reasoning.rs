//! A reasoning model's thinking (`<think>…</think>` at the start of its answer, as Qwen3 and
//! DeepSeek-R1 write it) told apart from the answer: API clients get it as
//! `reasoning_content` (llama-server's field), the page shows it folded. The answer as
//! generated — what receipts sign and the corpus keeps — is always
//! `OPEN + reasoning + CLOSE + content`, so it can be put back together from the stream.

pub const OPEN: &str = "<think>";
pub const CLOSE: &str = "</think>";

/// A piece of a streamed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Reasoning(String),
    /// The thinking ended (`CLOSE`); what follows is the answer.
    Closed,
    Content(String),
}

/// Splits a stream of text deltas into [`Piece`]s, holding back what may be the start of a
/// tag until it is known.
#[derive(Debug, Default)]
pub struct Splitter {
    state: State,
    held: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum State {
    /// Nothing seen yet: it may open with `OPEN`.
    #[default]
    Start,
    Thinking,
    Answering,
}

impl Splitter {
    pub fn push(&mut self, delta: &str) -> Vec<Piece> {
        self.held.push_str(delta);
        let mut pieces = Vec::new();
        loop {
            match self.state {
                State::Start => {
                    if let Some(rest) = self.held.strip_prefix(OPEN) {
                        self.held = rest.to_owned();
                        self.state = State::Thinking;
                        pieces.push(Piece::Reasoning(String::new()));
                    } else if OPEN.starts_with(self.held.as_str()) {
                        return pieces;
                    } else {
                        self.state = State::Answering;
                    }
                }
                State::Thinking => {
                    if let Some(end) = self.held.find(CLOSE) {
                        let reasoning: String = self.held[..end].to_owned();
                        self.held = self.held[end + CLOSE.len()..].to_owned();
                        if !reasoning.is_empty() {
                            pieces.push(Piece::Reasoning(reasoning));
                        }
                        pieces.push(Piece::Closed);
                        self.state = State::Answering;
                    } else {
                        let keep = partial_tag_len(&self.held, CLOSE);
                        let ready = self.held.len() - keep;
                        if ready > 0 {
                            pieces.push(Piece::Reasoning(self.held[..ready].to_owned()));
                            self.held.drain(..ready);
                        }
                        return pieces;
                    }
                }
                State::Answering => {
                    if !self.held.is_empty() {
                        pieces.push(Piece::Content(std::mem::take(&mut self.held)));
                    }
                    return pieces;
                }
            }
        }
    }

    /// What is still held back, once the answer has ended.
    pub fn finish(&mut self) -> Vec<Piece> {
        let held = std::mem::take(&mut self.held);
        match self.state {
            _ if held.is_empty() => Vec::new(),
            State::Thinking => vec![Piece::Reasoning(held)],
            State::Start | State::Answering => vec![Piece::Content(held)],
        }
    }
}

/// How many bytes at the end of `text` may begin `tag`.
fn partial_tag_len(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&len| {
            text.is_char_boundary(text.len() - len) && tag.starts_with(&text[text.len() - len..])
        })
        .unwrap_or(0)
}

/// A whole answer's thinking (`None` when it did not think) and its answer, as the
/// [`Splitter`] splits its stream (the test holds them to it). Written out rather than run
/// through the splitter: the page needs only this, and every byte of it is downloaded.
pub fn split(answer: &str) -> (Option<String>, String) {
    let Some(thinking) = answer.strip_prefix(OPEN) else {
        return (None, answer.to_owned());
    };
    match thinking.find(CLOSE) {
        Some(end) => (
            Some(thinking[..end].to_owned()),
            thinking[end + CLOSE.len()..].to_owned(),
        ),
        None => (Some(thinking.to_owned()), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_is_told_apart_however_the_stream_cuts_the_tags() {
        let answer = "<think>\nPienso en Madrid.\n</think>\n\nLa capital es Madrid.";
        for size in 1..=answer.len() {
            let mut splitter = Splitter::default();
            let mut rebuilt = String::new();
            let (mut reasoning, mut content) = (String::new(), String::new());
            let mut pieces = Vec::new();
            let mut rest = answer;
            while !rest.is_empty() {
                let mut cut = size.min(rest.len());
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                pieces.extend(splitter.push(&rest[..cut]));
                rest = &rest[cut..];
            }
            pieces.extend(splitter.finish());
            for piece in pieces {
                match piece {
                    Piece::Reasoning(text) if rebuilt.is_empty() => {
                        rebuilt.push_str(OPEN);
                        rebuilt.push_str(&text);
                        reasoning.push_str(&text);
                    }
                    Piece::Reasoning(text) => {
                        rebuilt.push_str(&text);
                        reasoning.push_str(&text);
                    }
                    Piece::Closed => rebuilt.push_str(CLOSE),
                    Piece::Content(text) => {
                        rebuilt.push_str(&text);
                        content.push_str(&text);
                    }
                }
            }
            assert_eq!(rebuilt, answer, "cut every {size} bytes");
            assert_eq!(reasoning, "\nPienso en Madrid.\n");
            assert_eq!(content, "\n\nLa capital es Madrid.");
            assert_eq!(split(answer), (Some(reasoning), content));
        }
        assert_eq!(split("Sin pensar."), (None, "Sin pensar.".into()));
        assert_eq!(split("<thin"), (None, "<thin".into()));
        assert_eq!(
            split("<think>a medias"),
            (Some("a medias".into()), String::new())
        );
        assert_eq!(
            split("Hola <think>x</think>"),
            (None, "Hola <think>x</think>".into())
        );
    }
}
