//! The engine in a browser Web Worker.
//!
//! When the server cannot answer (overloaded, model not loaded, Space asleep) the chat page
//! starts this worker and generates in the visitor's browser with the same `engine` crate the
//! server uses. The worker and the page talk through `wire::worker`'s messages, as JSON text;
//! the generation loop itself lives in `engine`, never here.

#[cfg(target_arch = "wasm32")]
mod scope;

/// `initThreadPool(n)` for `public/worker.js`: starts the Web Workers that share the module's
/// memory and become the engine's threads.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub use wasm_bindgen_rayon::init_thread_pool;
