//! NATS subject patterns (`*` one token, `>` one or more at the end): whether they
//! match, overlap, or cover each other, to keep opsflow's own subjects out of what
//! it ingests.

/// Whether `subject` matches the pattern `filter`.
pub(crate) fn matches(filter: &str, subject: &str) -> bool {
    let (mut filter, mut subject) = (filter.split('.'), subject.split('.'));
    loop {
        match (filter.next(), subject.next()) {
            (Some(">"), Some(_)) | (None, None) => return true,
            (Some(f), Some(s)) if f == "*" || f == s => {}
            _ => return false,
        }
    }
}

/// Whether some subject matches both patterns.
pub(crate) fn overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (None, None) | (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            _ => return false,
        }
    }
}

/// Whether every subject matching `narrow` matches `wide`.
pub(crate) fn covers(wide: &str, narrow: &str) -> bool {
    let (mut wide, mut narrow) = (wide.split('.'), narrow.split('.'));
    loop {
        match (wide.next(), narrow.next()) {
            (None, None) | (Some(">"), Some(_)) => return true,
            // `*` covers one token of any kind but the rest-of-subject `>`.
            (Some("*"), Some(n)) if n != ">" => {}
            (Some(w), Some(n)) if w == n => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_filters_as_nats_does() {
        assert!(matches("ops.events.>", "ops.events.order.placed"));
        assert!(matches("ops.*.order.placed", "ops.events.order.placed"));
        assert!(!matches("ops.events.>", "ops.events"));
        assert!(!matches("ops.events.order", "ops.events.order.placed"));
        assert!(matches("ops.events.order", "ops.events.order"));
    }

    #[test]
    fn patterns_overlap_when_one_subject_matches_both() {
        assert!(overlap("ops.events.>", "ops.>"));
        assert!(overlap("opsflow.>", "opsflow.dlq.>"));
        assert!(overlap("ops.events.>", "ops.events.dlq.>"));
        assert!(overlap("ops.*.x", "ops.events.>"));
        assert!(overlap("*.api.append", "opsflow.api.append"));
        assert!(!overlap("ops.events.>", "opsflow.log.>"));
        assert!(!overlap("ops.events.>", "ops.events"));
        assert!(!overlap("a.b", "a.b.c"));
        assert!(!overlap("a.*", "a.b.c"));
    }

    #[test]
    fn a_wide_pattern_covers_a_narrow_one() {
        assert!(covers("ops.>", "ops.events.>"));
        assert!(covers("ops.events.>", "ops.events.>"));
        assert!(covers(">", "ops.events.>"));
        assert!(covers("ops.*.>", "ops.events.>"));
        assert!(!covers("ops.events.>", "ops.>"));
        assert!(!covers("ops.*", "ops.>"));
        assert!(!covers("ops.events.order.>", "ops.events.>"));
        assert!(covers("ops.*", "ops.x"));
    }
}
