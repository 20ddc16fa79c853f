//! The Hub README cards the judges' page checks, for what `[cards]` leaves out: fetched at
//! start-up into the model cache's `cards/` folder, the copy an earlier start fetched serving
//! when the Hub cannot be reached. Cards change as teams edit them, so nothing pins them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use app::cards::CardKind;

/// A card is text; anything longer is not one.
const MAX_CARD_BYTES: u64 = 4 << 20;

/// The card (README.md at `main`) of `repo` from the Hub at `endpoint`, into `cache_dir/cards/`.
pub fn fetch_card(
    cache_dir: &Path,
    endpoint: &str,
    kind: CardKind,
    repo: &str,
) -> Result<PathBuf, String> {
    let (prefix, file_prefix) = match kind {
        CardKind::Model => ("", "model"),
        CardKind::Dataset => ("datasets/", "dataset"),
    };
    let folder = cache_dir.join("cards");
    let destination = folder.join(format!(
        "{file_prefix}--{}.md",
        engine::cache::repo_slug(repo)
    ));
    let url = format!("{endpoint}/{prefix}{repo}/resolve/main/README.md");
    let fetched = (|| -> std::io::Result<()> {
        let mut text = Vec::new();
        engine::cache::hub_read(&url)?
            .take(MAX_CARD_BYTES)
            .read_to_end(&mut text)?;
        std::fs::create_dir_all(&folder)?;
        let mut partial = tempfile::NamedTempFile::new_in(&folder)?;
        partial.write_all(&text)?;
        partial.persist(&destination).map_err(|error| error.error)?;
        Ok(())
    })();
    match fetched {
        Ok(()) => Ok(destination),
        Err(_) if destination.is_file() => Ok(destination),
        Err(error) => Err(format!(
            "README.md of {prefix}{repo} could not be fetched: {error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-request-at-a-time Hub on loopback that serves `card` at `path`; 404 elsewhere.
    fn fake_hub(path: &'static str, card: &'static str, requests: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 2048];
                let read = stream.read(&mut request).unwrap();
                let asked = String::from_utf8_lossy(&request[..read])
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let (status, body) = if asked == path {
                    ("200 OK", card)
                } else {
                    ("404 Not Found", "no")
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{address}")
    }

    #[test]
    fn cards_come_from_the_hub_and_an_earlier_copy_serves_offline() {
        let dir = tempfile::tempdir().unwrap();
        let hub = fake_hub(
            "/datasets/org/corpus/resolve/main/README.md",
            "---\nlicense: mit\n---\n# Corpus\n",
            2,
        );
        let path = fetch_card(dir.path(), &hub, CardKind::Dataset, "org/corpus").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "---\nlicense: mit\n---\n# Corpus\n"
        );
        // A model repository is asked for at its own address: this Hub has none.
        let error = fetch_card(dir.path(), &hub, CardKind::Model, "org/modelo").unwrap_err();
        assert!(
            error.contains("README.md of org/modelo")
                && error.contains("/org/modelo/resolve/main/README.md"),
            "{error}"
        );
        // Offline: the earlier copy.
        let offline = fetch_card(
            dir.path(),
            "http://127.0.0.1:9",
            CardKind::Dataset,
            "org/corpus",
        )
        .unwrap();
        assert_eq!(offline, path);
    }
}
