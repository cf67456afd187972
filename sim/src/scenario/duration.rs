//! Durations in scenario files: strings with a unit, `"250ms"`, `"10s"`,
//! `"1.5s"`, `"2m"`. A bare number is refused because its unit would be a guess.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Parses `"<number><unit>"` with unit `ns`, `us` (or `µs`), `ms`, `s`, `m` or `h`;
/// the number is decimal digits with an optional fraction (`"1.5s"`). No sign,
/// no spaces. None for anything else or for a value too large for `Duration`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let unit_start = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(unit_start);
    let unit_nanos: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3_600 * NANOS_PER_SECOND,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || whole.len() > 20 || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    if number.ends_with('.') {
        return None;
    }
    let mut nanos = whole.parse::<u128>().ok()?.checked_mul(unit_nanos)?;
    // Digits past the eighteenth are below a nanosecond for every unit.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let scale = 10u128.pow(fraction.len() as u32);
        nanos = nanos.checked_add(fraction.parse::<u128>().ok()? * unit_nanos / scale)?;
    }
    let seconds = u64::try_from(nanos / NANOS_PER_SECOND).ok()?;
    Some(Duration::new(seconds, (nanos % NANOS_PER_SECOND) as u32))
}

/// Renders a duration the way a scenario file would write it.
pub(super) fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{duration:?}")
    }
}

/// A duration key as read from the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DurationText(pub Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DurationText, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

struct DurationVisitor;

fn bare_number<E: de::Error>(number: impl fmt::Display) -> E {
    E::custom(format!("durations are strings with a unit: write a string such as \"{number}s\" or \"{number}ms\", not the bare number {number}"))
}

impl Visitor<'_> for DurationVisitor {
    type Value = DurationText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"250ms\" or \"10s\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationText, E> {
        parse_duration(text).map(DurationText).ok_or_else(|| E::custom(format!("expected a duration such as \"250ms\" or \"10s\", got {text:?}")))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<DurationText, E> {
        Err(bare_number(number))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<DurationText, E> {
        Err(bare_number(number))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<DurationText, E> {
        Err(bare_number(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_fractions() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("750us"), Some(Duration::from_micros(750)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("0.001ms"), Some(Duration::from_micros(1)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in ["", "5", "5 sec", "5 s", " 5s", "5s ", "-5s", "+5s", "s", ".5s", "5.s", "1.2.3s", "5S", "5sec", "99999999999999999999999h"] {
            assert_eq!(parse_duration(text), None, "{text:?}");
        }
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1500ms");
    }
}
