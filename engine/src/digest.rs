//! sha256 as model files are pinned: lower-case hex, computed the same way by the model cache
//! (natively) and by the browser worker checking its download.

pub use sha2::{Digest, Sha256};

/// The finished digest in lower-case hex.
pub fn hex(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
