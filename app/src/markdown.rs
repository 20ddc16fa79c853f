//! The model's Markdown as safe HTML: whatever the model writes, raw HTML stays text, links
//! only go to http(s) and mail addresses, images become links, and every code block gets a
//! copy button.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};

/// A model's answer as safe HTML: a reasoning model's thinking folded under «Razonamiento»
/// (`strings.reasoning`), then the answer.
pub fn answer_to_safe_html(answer: &str, strings: &crate::i18n::Strings) -> String {
    let (reasoning, content) = wire::reasoning::split(answer);
    let body = to_safe_html(&content, strings.copy_code);
    match reasoning {
        None => body,
        Some(reasoning) => format!(
            "<details class=\"reasoning\"><summary>{}</summary>{}</details>{body}",
            strings.reasoning,
            to_safe_html(&reasoning, strings.copy_code)
        ),
    }
}

/// HTML for `markdown`, safe to set as `innerHTML`; `copy_label` names the code blocks' buttons.
pub fn to_safe_html(markdown: &str, copy_label: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut links_open = Vec::new();
    let mut events = Vec::new();
    for event in Parser::new_ext(markdown, options) {
        match event {
            // Raw HTML, block or inline, is shown as the text it is.
            Event::Html(text) | Event::InlineHtml(text) => events.push(Event::Text(text)),
            // An image would load from wherever the model says: it becomes a link instead.
            Event::Start(
                Tag::Link {
                    dest_url,
                    title,
                    link_type,
                    id,
                }
                | Tag::Image {
                    dest_url,
                    title,
                    link_type,
                    id,
                },
            ) => {
                let safe = is_safe_url(&dest_url);
                links_open.push(safe);
                events.push(if safe {
                    Event::Start(Tag::Link {
                        dest_url,
                        title,
                        link_type,
                        id,
                    })
                } else {
                    Event::Text(CowStr::Borrowed(""))
                });
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                let was_safe = links_open.pop().unwrap_or(false);
                events.push(if was_safe {
                    Event::End(TagEnd::Link)
                } else {
                    Event::Text(CowStr::Borrowed(""))
                });
            }
            // Added after the filter above: the only markup not written by the parser itself.
            Event::Start(Tag::CodeBlock(kind)) => {
                let button = format!(
                    r#"<div class="code-block"><button type="button" class="copy-code">{}</button>"#,
                    escape(copy_label)
                );
                events.push(Event::Html(button.into()));
                events.push(Event::Start(Tag::CodeBlock(kind)));
            }
            Event::End(TagEnd::CodeBlock) => {
                events.push(Event::End(TagEnd::CodeBlock));
                events.push(Event::Html(CowStr::Borrowed("</div>")));
            }
            other => events.push(other),
        }
    }
    let mut out = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut out, events.into_iter());
    out
}

fn is_safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    pulldown_cmark_escape::escape_html(&mut escaped, text)
        .expect("writing to a String cannot fail");
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_from_the_model_stays_text() {
        let hostile = r#"<script>alert(1)</script> <img src=x onerror="alert(1)"> <b>negrita</b>"#;
        let html = to_safe_html(hostile, "Copiar");
        assert!(
            !html.contains("<script") && !html.contains("<img") && !html.contains("<b>"),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;") && html.contains("&lt;img"),
            "{html}"
        );
    }

    #[test]
    fn only_web_and_mail_links_survive() {
        let html = to_safe_html(
            "[clic](javascript:alert(1)) [web](https://somosnlp.org) ![foto](data:image/png;base64,AAA)",
            "Copiar",
        );
        assert!(
            !html.contains("javascript:") && !html.contains("data:") && !html.contains("<img"),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="https://somosnlp.org">web</a>"#),
            "{html}"
        );
        assert!(
            html.contains("clic") && html.contains("foto"),
            "the texts stay: {html}"
        );
    }

    #[test]
    fn code_blocks_get_a_copy_button_and_markdown_renders() {
        let html = to_safe_html(
            "**Hola** y `x`\n\n```rust\nfn main() {}\n```\n\n- uno\n- dos",
            "Copiar \"código\"",
        );
        assert!(
            html.contains("<strong>Hola</strong>")
                && html.contains("<code>x</code>")
                && html.contains("<li>uno</li>"),
            "{html}"
        );
        assert!(html.contains(r#"<div class="code-block"><button type="button" class="copy-code">Copiar &quot;código&quot;</button>"#), "{html}");
        assert!(
            html.contains(r#"<pre><code class="language-rust">fn main() {}"#),
            "{html}"
        );
        assert!(html.trim_end().ends_with("</ul>"), "{html}");
    }
}
