//! The engine in a browser Web Worker.
//!
//! When the server cannot answer (overloaded, model not loaded, Space asleep) the chat page
//! starts this worker and generates in the visitor's browser with the same `engine` crate the
//! server uses. The worker and the page talk through `wire::worker`'s messages, as JSON text;
//! the generation loop itself lives in `engine`, never here.

/// The largest model a browser is asked to hold: wasm32 addresses 4 GiB, and loading keeps the
/// file and the weights in memory at once.
pub const MAX_MODEL_BYTES: u64 = 1536 << 20;

/// The plain-words refusal for a model too large for a browser, before anything is downloaded.
pub fn too_large(bytes: u64) -> Option<String> {
    (bytes > MAX_MODEL_BYTES).then(|| {
        format!(
            "the browser model is {} MB; a browser can hold at most {} MB. Choose a smaller model or quantisation in space.toml [browser] model",
            bytes >> 20,
            MAX_MODEL_BYTES >> 20
        )
    })
}

#[cfg(target_arch = "wasm32")]
mod scope;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_too_large_for_a_browser_are_refused_by_size() {
        assert!(too_large(100 << 20).is_none());
        let message = too_large(4 << 30).unwrap();
        assert!(
            message.contains("4096 MB") && message.contains("[browser] model"),
            "{message}"
        );
    }
}
