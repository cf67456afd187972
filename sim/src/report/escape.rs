//! Text made safe for HTML, for every part of the report that writes markup.

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(character),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_replaces_every_markup_character() {
        assert_eq!(escape(r#"<script>alert("x & 'y'")</script>"#), "&lt;script&gt;alert(&quot;x &amp; &#39;y&#39;&quot;)&lt;/script&gt;");
        assert_eq!(escape("broker-1 → 2:0"), "broker-1 → 2:0");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }
}
