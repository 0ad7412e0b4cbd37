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

/// What is wrong with `subject` as a NATS subject (with `wildcards`, a pattern:
/// `*` for a token, `>` for the rest), if anything: nats-server refuses it, takes it
/// for another, or cannot take it with a type added (too long).
pub(crate) fn subject_problem(subject: &str, wildcards: bool) -> Option<String> {
    if subject.is_empty() {
        return Some("is empty".into());
    }
    // Room in nats-server's control line (4,096 bytes by default) for what opsflow
    // adds: `.<type>` (types are at most 128 bytes), the reply subject, sizes.
    const MAX: usize = 1_024;
    if subject.len() > MAX {
        return Some(format!("is {} bytes long, at most {MAX}", subject.len()));
    }
    if let Some(c) = subject
        .chars()
        .find(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Some(format!(
            "{subject:?} holds {c:?}: a subject has no spaces or control characters"
        ));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return Some(format!(
            "{subject:?} has an empty token: a subject is tokens between single dots, none at either end"
        ));
    }
    for (i, token) in tokens.iter().enumerate() {
        let wildcard = *token == "*" || *token == ">";
        if wildcard && !wildcards {
            return Some(format!(
                "{subject:?} has the wildcard {token:?}: a subject here names no pattern"
            ));
        }
        if *token == ">" && i + 1 < tokens.len() {
            return Some(format!(
                "{subject:?} has \">\" before its last token: \">\" stands for the rest"
            ));
        }
    }
    None
}

/// What is wrong with `name` as a JetStream stream or consumer name, if anything.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    const MAX: usize = 255;
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX {
        return Some(format!("is {} bytes long, at most {MAX}", name.len()));
    }
    name.chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        .map(|c| format!("{name:?} holds {c:?}: a JetStream name has no spaces, '.', '*', '>', '/' or '\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_names_nats_would_refuse_are_told() {
        for good in ["ops.events.>", "ops.*.x", "a", "opsflow.api.append"] {
            assert_eq!(subject_problem(good, true), None, "{good}");
        }
        assert_eq!(subject_problem("opsflow.log", false), None);
        // `*` and `>` within a longer token are plain characters, as nats-server
        // takes them.
        assert_eq!(subject_problem("ops.a*.b>", false), None);
        for (bad, wildcards, says) in [
            ("", true, "is empty"),
            ("ops events.>", true, "holds ' '"),
            ("ops..x", true, "empty token"),
            (".ops", true, "empty token"),
            ("ops.", true, "empty token"),
            ("ops.>.x", true, "before its last token"),
            (&"a".repeat(1_025), false, "at most 1024"),
            ("ops.*", false, "wildcard"),
        ] {
            let problem = subject_problem(bad, wildcards).unwrap_or_default();
            assert!(problem.contains(says), "{bad:?}: {problem}");
        }
        assert_eq!(name_problem("OPS_EVENTS"), None);
        for (bad, says) in [("", "is empty"), ("OPS.EVENTS", "'.'"), ("a b", "' '"), ("a/b", "'/'")] {
            let problem = name_problem(bad).unwrap_or_default();
            assert!(problem.contains(says), "{bad:?}: {problem}");
        }
        assert!(name_problem(&"x".repeat(256)).is_some_and(|p| p.contains("at most 255")));
    }

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
