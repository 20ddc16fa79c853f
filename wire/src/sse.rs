//! Server-sent events, read as they arrive over the network: bytes are split into lines
//! before they are decoded as UTF-8, so a character cut in two by the network (ñ, á, ¿) is
//! whole again when its line is complete.

/// Collects a stream's bytes and hands out each complete event's `data`.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// The unfinished line.
    line: Vec<u8>,
    /// The `data:` lines of the unfinished event.
    data: Option<String>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes; returns the data of every event they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &byte in bytes {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if line.is_empty() {
                events.extend(self.data.take());
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let value = String::from_utf8_lossy(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                }
            }
            // Comments (`:`), `event:`, `id:` and `retry:` lines: nothing Vitrina reads.
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_between_reads_arrives_whole() {
        let stream = "data: {\"t\":\"¿Añadió?\"}\n\n".as_bytes();
        let split = stream.iter().position(|&byte| byte == 0xc3).unwrap() + 1;
        let mut decoder = SseDecoder::new();
        assert!(decoder.push(&stream[..split]).is_empty());
        assert_eq!(decoder.push(&stream[split..]), ["{\"t\":\"¿Añadió?\"}"]);
    }

    #[test]
    fn events_lines_and_line_endings() {
        let mut decoder = SseDecoder::new();
        let events = decoder.push(b": keep-alive\r\n\r\ndata: uno\r\n\r\ndata:dos\ndata: tres\n\nevent: x\ndata: [DONE]\n\ndata: half");
        assert_eq!(events, ["uno", "dos\ntres", "[DONE]"]);
        assert_eq!(decoder.push(b"\n\n"), ["half"]);
    }
}
