//! Text for the two parts of a digest: words cut and wrapped for the plain-text part, and
//! HTML escaped and kept ASCII for the HTML part.

/// Cuts `s` to at most `max` characters at a word boundary, adding an ellipsis when cut.
pub fn trim_at_word(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => &cut[..i],
        _ => &cut,
    };
    format!("{}…", cut.trim_end_matches([' ', ',', ';', ':', '.']))
}

/// Greedy word wrap for the text part.
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Text made safe for HTML text and attribute values, in ASCII: markup characters and
/// every non-ASCII character as references.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c if c.is_ascii() => out.push(c),
            c => push_reference(&mut out, c),
        }
    }
    out
}

/// The document with every non-ASCII character written as a character reference (`·` as
/// `&#xB7;`), which renders the same. ASCII HTML can be mailed as `7bit`, as it is; UTF-8
/// would need quoted-printable, which is larger (`=C2=B7`, and `=3D` for every `=` of the
/// markup) and costs time per message. Inside `<style>` and `<script>` references mean
/// nothing, so those are left as they are (the mail then falls back to quoted-printable).
pub fn ascii_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + html.len() / 16);
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while at < html.len() {
        let raw = ["<style", "<script"]
            .iter()
            .filter_map(|open| {
                let start = lower[at..].find(open)? + at;
                let after = lower.as_bytes().get(start + open.len()).copied();
                match after {
                    Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') | None => {
                        let close = format!("</{}", &open[1..]);
                        let end = lower[start..]
                            .find(&close)
                            .map_or(html.len(), |e| e + start);
                        Some((start, end))
                    }
                    // `<styles>` or the like: not raw text; convert up to past it.
                    Some(_) => Some((start + open.len(), start + open.len())),
                }
            })
            .min();
        let (start, end) = raw.unwrap_or((html.len(), html.len()));
        let mut rest = &html[at..start];
        while let Some(i) = rest.bytes().position(|b| !b.is_ascii()) {
            out.push_str(&rest[..i]);
            let c = rest[i..].chars().next().expect("a character starts there");
            push_reference(&mut out, c);
            rest = &rest[i + c.len_utf8()..];
        }
        out.push_str(rest);
        out.push_str(&html[start..end]);
        at = end;
    }
    out
}

fn push_reference(out: &mut String, c: char) {
    use std::fmt::Write;
    let _ = write!(out, "&#x{:X};", u32::from(c));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_html_leaves_style_and_script_alone() {
        let html = "<p title=\"é\">ü</p><STYLE>a::after { content: \"→\" }</STYLE>\
                    <styles>é</styles><script type=\"x\">\"ö\"</script>→<style>ß";
        assert_eq!(
            ascii_html(html),
            "<p title=\"&#xE9;\">&#xFC;</p><STYLE>a::after { content: \"→\" }</STYLE>\
             <styles>&#xE9;</styles><script type=\"x\">\"ö\"</script>&#x2192;<style>ß"
        );
        assert_eq!(ascii_html("plain <b>text</b>"), "plain <b>text</b>");
    }

    #[test]
    fn words_are_cut_and_wrapped_and_markup_escaped() {
        assert_eq!(trim_at_word("one two three", 8), "one two…");
        assert_eq!(trim_at_word("short", 8), "short");
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
        );
        assert_eq!(escape_html("a·b 📬"), "a&#xB7;b &#x1F4EC;");
    }
}
