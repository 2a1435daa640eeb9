//! Untrusted text spliced into a page.

use maud::Render;

/// Text from a message, a queue, a worker or a request, for a
/// [`maud::html!`] splice: `(Text(&entry.queue))`.
///
/// maud escapes `&`, `<`, `>` and `"` in every splice, so plain strings
/// are already safe in text and in (double-quoted) attribute values.
/// `Text` escapes the single quote as well, as `&#39;`, so that the
/// dashboard's pages read as they always have and the text stays inert
/// even in a single-quoted attribute.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Text<'a>(pub(crate) &'a str);

impl Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        for (i, part) in self.0.split('\'').enumerate() {
            if i > 0 {
                buffer.push_str("&#39;");
            }
            part.render_to(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use maud::html;

    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped_in_text_and_attributes() {
        let hostile = "<script>alert('x')</script> & \"q\"";
        let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;";
        assert_eq!(Text(hostile).render().into_string(), escaped);
        let markup = html! { a title=(Text(hostile)) { (Text(hostile)) } };
        assert_eq!(
            markup.into_string(),
            format!("<a title=\"{escaped}\">{escaped}</a>")
        );
    }
}
