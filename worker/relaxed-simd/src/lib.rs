//! The browser worker's bundle for browsers with relaxed SIMD (`public/worker.js` picks it):
//! `worker` built with `relaxed-simd`. A crate of its own rather than a second build of
//! `worker` as a cdylib, for the reason `app-all-pages` gives: a cdylib's file does not carry
//! its features, so the two builds of `worker` in one target folder overwrote each other, and
//! each was compiled again every time (two minutes of every `cargo xtask` build).

// Links `worker`, whose `#[wasm_bindgen]` exports (`start`, `initThreadPool`) this cdylib
// carries; built with atomics only, as the threads bundle it stands in for.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub use worker::init_thread_pool;
