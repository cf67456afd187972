//! Where on the timeline a violation belongs. Checkers describe violations in
//! prose; when the prose names a value ("value 2:0 ...") the moment that matters
//! is that value's acknowledgement, which the history holds. Otherwise the first
//! simulated time the detail names ("... at 12.345s") will do.

use crate::check::Violation;
use crate::history::{History, Op, OpBody, OpType, Value};

/// A violation's place on the timeline, and what that place is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub time: u64,
    pub reason: String,
}

pub fn locate(history: &History, violation: &Violation) -> Option<Located> {
    if let Some(send) = value_in(&violation.detail).and_then(|value| send_of(history, value)) {
        let OpBody::Send { value, .. } = &send.body else { unreachable!("send_of returns only sends") };
        let what = if send.kind == OpType::Ok { "acknowledgement" } else { "send" };
        return Some(Located { time: send.time, reason: format!("{what} of {value} to {}", send.node) });
    }
    let time = time_in(&violation.detail)?;
    Some(Located { time, reason: "the time the detail names".to_string() })
}

/// The value after the first "value " in `detail`.
fn value_in(detail: &str) -> Option<Value> {
    let (_, rest) = detail.split_once("value ")?;
    let token = rest.split(|c: char| !(c.is_ascii_digit() || c == ':')).next()?;
    Value::decode(token.as_bytes())
}

/// The value's acknowledgement, or its first send record when it was never acknowledged.
fn send_of(history: &History, wanted: Value) -> Option<&Op> {
    let sends = || history.ops.iter().filter(move |op| matches!(&op.body, OpBody::Send { value, .. } if *value == wanted));
    sends().find(|op| op.kind == OpType::Ok).or_else(|| sends().next())
}

/// The first `12.345s` in `detail`, in simulated microseconds.
fn time_in(detail: &str) -> Option<u64> {
    detail.split(|c: char| c.is_whitespace() || "(),;:".contains(c)).find_map(parse_seconds)
}

fn parse_seconds(token: &str) -> Option<u64> {
    let (whole, millis) = token.strip_suffix('s')?.split_once('.')?;
    let all_digits = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    if !all_digits(whole) || millis.len() != 3 || !all_digits(millis) {
        return None;
    }
    Some(whole.parse::<u64>().ok()? * 1_000_000 + millis.parse::<u64>().ok()? * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::{value, HistoryBuilder};
    use crate::check::CheckerKind;

    fn violation(detail: &str) -> Violation {
        Violation::new(CheckerKind::LostWrite, detail.to_string())
    }

    #[test]
    fn a_named_value_is_placed_at_its_acknowledgement() {
        let mut history = HistoryBuilder::new();
        history.acked_send(10, "producer-2", value(2, 0), 0, 1).acked_send(20, "producer-2", value(2, 1), 0, 2);
        let detail = "value 2:1 acknowledged at events/0@2 by producer-2 at 0.021s is absent from the committed log";
        let located = locate(&history.build(), &violation(detail));
        assert_eq!(located, Some(Located { time: 21_000, reason: "acknowledgement of 2:1 to producer-2".to_string() }));
    }

    #[test]
    fn without_a_known_value_the_first_time_named_is_used() {
        let history = HistoryBuilder::new().build();
        let detail = "producer-1 sent 1:0 then 1:1 to events/0, but they were acknowledged at offsets 5 then 4 (at 12.020s)";
        assert_eq!(locate(&history, &violation(detail)).map(|located| located.time), Some(12_020_000));
        assert_eq!(locate(&history, &violation("value 9:9 at 0.5s and 1.000s")).map(|located| located.time), Some(1_000_000));
        assert_eq!(locate(&history, &violation("events/0: replicas differ at offset 1 (2:9 vs 1:1)")), None);
    }
}
