//! What crosses from JavaScript: an error thrown by a browser API, as text for the visitor.

use wasm_bindgen::JsValue;

/// A thrown string as it is, an `Error`'s message, or "error" for anything else.
pub fn text_of(error: JsValue) -> String {
    error
        .as_string()
        .or_else(|| js_sys::Error::from(error).message().as_string())
        .unwrap_or_else(|| "error".into())
}
