//! The pages' paths, and their two hydration bundles (built by `cargo xtask`, named by the
//! server's HTML): the project page's islands (the chat, the API examples, the language switch)
//! and, apart, the judges' runner and the permalink's «reproduce», so that a visitor of `/`
//! downloads only what `/` runs.

/// The judges' page: `/jurado`. Each page's path segment is named once, here, for the router,
/// the links and [`bundle_for`].
pub const JUDGES: &str = "jurado";
/// The corpus page: `/corpus`.
pub const CORPUS: &str = "corpus";
/// An answer's permalink: `/respuesta/<id>` ([`crate::feedback::permalink`]).
pub const PERMALINK: &str = "respuesta";

/// `/pkg/vitrina.js` and `vitrina_bg.wasm`.
pub const HOME_BUNDLE: &str = "vitrina";
/// `/pkg/vitrina_pages.js` and `vitrina_pages_bg.wasm`: every island.
pub const ALL_PAGES_BUNDLE: &str = "vitrina_pages";

/// The bundle the page at `path` loads.
pub fn bundle_for(path: &str) -> &'static str {
    let first_segment = path.trim_start_matches('/').split('/').next();
    if first_segment == Some(JUDGES) || first_segment == Some(PERMALINK) {
        ALL_PAGES_BUNDLE
    } else {
        HOME_BUNDLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_judges_page_and_permalinks_load_every_island() {
        assert_eq!(bundle_for("/"), HOME_BUNDLE);
        assert_eq!(bundle_for("/corpus"), HOME_BUNDLE);
        assert_eq!(bundle_for("/no-existe"), HOME_BUNDLE);
        assert_eq!(bundle_for("/jurado"), ALL_PAGES_BUNDLE);
        assert_eq!(bundle_for("/jurados"), HOME_BUNDLE);
        assert_eq!(bundle_for("/jurado/"), ALL_PAGES_BUNDLE);
        assert_eq!(
            bundle_for(&crate::feedback::permalink("0123456789abcdef")),
            ALL_PAGES_BUNDLE
        );
    }
}
