//! Errors in scenario files. Each prints as one line, `file: key: message`,
//! where key is the full dotted path of the offending key (`producers[0].rate`,
//! `cluster.config."min.insync.replicas"`) or, for a TOML syntax error, its line.

use serde_path_to_error::Segment;
use std::fmt;
use std::path::{Path, PathBuf};

/// A scenario file that cannot be read or does not validate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// The dotted key path, `line N` for a syntax error, or empty when the
    /// problem is the file as a whole (unreadable, not UTF-8).
    pub key: String,
    pub message: String,
}

impl ScenarioError {
    pub fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> ScenarioError {
        ScenarioError { file: file.to_path_buf(), key: key.into(), message: message.into() }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = one_line(&self.file.display().to_string());
        if self.key.is_empty() {
            write!(f, "{file}: {}", one_line(&self.message))
        } else {
            write!(f, "{file}: {}: {}", one_line(&self.key), one_line(&self.message))
        }
    }
}

impl std::error::Error for ScenarioError {}

pub(super) fn unreadable(path: &Path, error: &std::io::Error) -> ScenarioError {
    ScenarioError::new(path, "", format!("cannot read the file: {error}"))
}

/// A problem found in the text, before it is tied to its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { key: key.into(), message: message.into() }
    }

    pub fn in_file(self, file: &Path) -> ScenarioError {
        ScenarioError::new(file, self.key, self.message)
    }
}

/// Joins text of several lines into one, so every error stays a single line.
pub(super) fn one_line(text: &str) -> String {
    text.replace('\t', " ")
        .split(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A key as written in a dotted path: bare when TOML allows it bare, quoted
/// otherwise (`"min.insync.replicas"`).
pub(super) fn key_segment(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// `parent.child`, or just `child` at the top.
pub(super) fn child_key(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        key_segment(child)
    } else {
        format!("{parent}.{}", key_segment(child))
    }
}

/// The 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|byte| **byte == b'\n').count() + 1
}

/// A TOML syntax error, located by line.
pub(super) fn from_syntax_error(error: &toml::de::Error, text: &str) -> Problem {
    let message = one_line(error.message());
    match error.span() {
        Some(span) => Problem::new(format!("line {}", line_of(text, span.start)), format!("invalid TOML: {message}")),
        None => Problem::new("", format!("invalid TOML: {message}")),
    }
}

/// A document that is valid TOML but does not fit the scenario schema.
pub(super) fn from_data_error(error: &serde_path_to_error::Error<toml::de::Error>, text: &str) -> Problem {
    let path = format_path(error.path());
    let inner = error.inner();
    let message = inner.message();
    if let Some(field) = between(message, "missing field `", "`") {
        return Problem::new(child_key(&path, field), "this key is required");
    }
    if message.starts_with("unknown field `") {
        return Problem::new(path.clone(), unknown_key_message(&path, message));
    }
    let message = readable(message);
    match inner.span() {
        Some(span) if path.is_empty() => Problem::new(format!("line {}", line_of(text, span.start)), message),
        _ => Problem::new(path, message),
    }
}

fn format_path(path: &serde_path_to_error::Path) -> String {
    let mut text = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => text = child_key(&text, key),
            Segment::Unknown => text = child_key(&text, "?"),
        }
    }
    text
}

fn between<'a>(text: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(prefix)?;
    rest.find(suffix).map(|end| &rest[..end])
}

/// serde says "unknown field `ratee`, expected one of `count`, `topic`, ...".
fn unknown_key_message(path: &str, message: &str) -> String {
    let given = between(message, "unknown field `", "`").unwrap_or("");
    let expected_part = message.split_once(", expected ").map(|(_, rest)| rest).unwrap_or("");
    let known: Vec<&str> = expected_part.split('`').skip(1).step_by(2).collect();
    let place = if path.contains('.') || path.contains('[') { "here" } else { "at the top level" };
    if known.is_empty() {
        return format!("unknown key {given:?}; no keys are allowed {place}");
    }
    format!("unknown key {given:?}{}; the keys allowed {place} are: {}", did_you_mean(given, &known), known.join(", "))
}

/// " (did you mean \"rate\"?)" when one of the candidates is a likely misspelling.
pub(super) fn did_you_mean(given: &str, candidates: &[&str]) -> String {
    let limit = (given.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|candidate| (edit_distance(given, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| format!(" (did you mean {candidate:?}?)"))
        .unwrap_or_default()
}

/// Levenshtein distance over chars; inputs here are short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(256).collect();
    let b: Vec<char> = b.chars().take(256).collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// Rewords serde's type errors in the words of a TOML file.
fn readable(message: &str) -> String {
    let mut text = one_line(message);
    if text.contains("did not match any variant of untagged enum PropertyValue") {
        return "expected a boolean, an integer, a number or a string".to_string();
    }
    // serde names the Rust type it wanted; a user wrote TOML.
    if let Some(start) = text.find("expected struct Raw") {
        text.replace_range(start.., "expected a table");
    }
    for (rust, toml) in [
        // toml reads integers as i128 and names that type when one does not fit.
        ("` as i128, expected i64", "`, expected an integer that fits in 64 bits"),
        ("` as i128, expected an integer", "`, expected an integer that fits in 64 bits"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("invalid type: map", "invalid type: table"),
        ("invalid type: sequence", "invalid type: array"),
    ] {
        text = text.replace(rust, toml);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("a\n  b\r\n\nc\td"), "a; b; c d");
    }

    #[test]
    fn keys_are_quoted_only_when_toml_needs_it() {
        assert_eq!(child_key("cluster.config", "min.insync.replicas"), "cluster.config.\"min.insync.replicas\"");
        assert_eq!(child_key("producers[0].config", "acks"), "producers[0].config.acks");
        assert_eq!(child_key("", "name"), "name");
    }

    #[test]
    fn suggestions_catch_small_typos_only() {
        assert_eq!(did_you_mean("ratee", &["count", "rate"]), " (did you mean \"rate\"?)");
        assert_eq!(did_you_mean("zzzzzz", &["count", "rate"]), "");
    }
}
