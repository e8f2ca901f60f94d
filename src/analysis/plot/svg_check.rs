//! A small structural check of the SVG the charts produce (tests only).

/// Asserts the document is one balanced `<svg>` element and returns its text contents.
pub fn texts(svg: &str) -> Vec<String> {
    let svg = svg.trim_start();
    let body = svg
        .strip_prefix("<?xml")
        .and_then(|rest| rest.find("?>").map(|i| rest[i + 2..].trim_start()))
        .unwrap_or(svg);
    assert!(
        body.starts_with("<svg"),
        "starts with <svg: {}",
        &body[..body.len().min(80)]
    );
    let mut stack: Vec<String> = Vec::new();
    let mut texts = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let content = &rest[..open];
        if stack.last().is_some_and(|t| t == "text") && !content.trim().is_empty() {
            texts.push(unescape(content.trim()));
        }
        let close = rest[open..].find('>').expect("every tag closes") + open;
        let tag = &rest[open + 1..close];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "balanced tags");
        } else if !tag.ends_with('/') && !tag.starts_with('!') && !tag.starts_with('?') {
            let name = tag.split_whitespace().next().expect("a tag name");
            stack.push(name.to_string());
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    assert!(rest.trim().is_empty(), "nothing after </svg>");
    texts
}

/// Asserts that each of `expected` is the whole content of some text element in `texts`.
pub fn assert_texts(texts: &[String], expected: &[&str]) {
    for expected in expected {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected} in {texts:?}"
        );
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Number of `<polyline>` elements stroked with `color`.
pub fn lines_of(svg: &str, color: &plotters::style::RGBColor) -> usize {
    let hex = format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2);
    svg.lines()
        .filter(|l| l.starts_with("<polyline") && l.contains(&format!("stroke=\"{hex}\"")))
        .count()
}

/// Asserts no NaN or infinity leaked into coordinates.
pub fn no_bad_numbers(svg: &str) {
    for bad in ["NaN", "inf"] {
        assert!(
            !svg.lines()
                .any(|l| !l.starts_with("<text") && l.contains(bad)),
            "{bad} in the SVG"
        );
    }
}
