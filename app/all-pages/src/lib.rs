//! The hydration bundle of every page (`wire::pages::ALL_PAGES_BUNDLE`): `app` built with
//! `hydrate-all-pages`. A crate of its own rather than a second build of `app` as a cdylib:
//! a cdylib's file does not carry its features, so two builds of `app` in one target folder
//! overwrote each other (each compiled again every time), and in two folders every dependency
//! was compiled twice (two minutes of a cold `cargo xtask test`).

// Links `app`, whose `#[wasm_bindgen]` exports (`hydrate` and the islands) this cdylib carries.
#[cfg(target_arch = "wasm32")]
pub use app::hydrate;
