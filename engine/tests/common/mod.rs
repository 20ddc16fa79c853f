//! What the engine's test files share: real models fetched through the model cache.

use std::path::PathBuf;
use std::sync::Mutex;

use engine::cache::{CachedFile, ModelCache};

/// Tests fetch the same files: one at a time, so two tests never download the same model.
static FETCHING: Mutex<()> = Mutex::new(());

/// The file on disk, fetched (and verified) first if need be; `VITRINA_MODEL_CACHE` names the
/// cache `cargo xtask test` shares between runs.
pub fn fetch(file: &CachedFile) -> PathBuf {
    let _guard = FETCHING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cache = match std::env::var_os("VITRINA_MODEL_CACHE") {
        Some(dir) => ModelCache::new(dir),
        None => ModelCache::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../model-cache")),
    };
    cache
        .get(file, &mut |_, _| {})
        .unwrap_or_else(|error| panic!("{error}"))
}
