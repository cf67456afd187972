//! The violations one checker collects in one run, capped so that a run full of
//! one anomaly (a partition that lost ten thousand writes) stays cheap to check,
//! print and store: the first instances name the problem, the rest add nothing.

use super::{CheckerKind, Violation};

/// How many violations one checker reports per run; it stops looking after that.
pub(crate) const VIOLATIONS_PER_CHECKER_MAX: usize = 10;

pub(crate) struct Findings {
    kind: CheckerKind,
    violations: Vec<Violation>,
}

impl Findings {
    pub(crate) fn new(kind: CheckerKind) -> Findings {
        Findings { kind, violations: Vec::new() }
    }

    /// Whether the cap is reached: callers stop scanning once it is.
    pub(crate) fn is_full(&self) -> bool {
        self.violations.len() >= VIOLATIONS_PER_CHECKER_MAX
    }

    /// Records one anomaly instance; silently dropped once the cap is reached.
    pub(crate) fn report(&mut self, detail: String) {
        if !self.is_full() {
            self.violations.push(Violation::new(self.kind, detail));
        }
    }

    pub(crate) fn into_violations(self) -> Vec<Violation> {
        self.violations
    }
}

/// Simulated microseconds as `12.345s`, the form traces print.
pub(crate) fn seconds(time: u64) -> String {
    format!("{}.{:03}s", time / 1_000_000, (time / 1000) % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_stops_at_the_cap() {
        let mut findings = Findings::new(CheckerKind::LostWrite);
        for index in 0..VIOLATIONS_PER_CHECKER_MAX + 5 {
            findings.report(format!("instance {index}"));
        }
        assert!(findings.is_full());
        let violations = findings.into_violations();
        assert_eq!(violations.len(), VIOLATIONS_PER_CHECKER_MAX);
        assert_eq!(violations[0].detail, "instance 0");
    }

    #[test]
    fn seconds_prints_milliseconds() {
        assert_eq!(seconds(12_345_678), "12.345s");
        assert_eq!(seconds(7_000), "0.007s");
    }
}
