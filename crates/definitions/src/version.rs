//! The definitions version and per-definition fingerprints.

use marked_yaml::types::Node;
use sha2::{Digest, Sha256};

/// `sha256:` + the first 16 hex digits of SHA-256 over the files sorted by name,
/// each name and content length-prefixed (u64 little-endian) so no two different
/// sets of files hash alike.
pub fn version_of<N: AsRef<str>, C: AsRef<str>>(files: &[(N, C)]) -> String {
    let mut sorted: Vec<(&str, &str)> = files.iter().map(|(n, c)| (n.as_ref(), c.as_ref())).collect();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    for (name, content) in sorted {
        for part in [name, content] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    format!("sha256:{}", &hex::encode(hasher.finalize())[..16])
}

/// 16 hex digits of SHA-256 over the definition's canonical form: its YAML as JSON
/// with sorted keys, every scalar a string, without its top-level keys `report_only`
/// (what only reports read, such as a KPI's `target`: its view's state does not
/// depend on them, so a change to them needs no rebuild). Comments, layout, key
/// order and the rest of the file do not change it.
pub(crate) fn fingerprint(node: &Node, report_only: &[&str]) -> String {
    let mut canonical = String::new();
    write_canonical(node, true, report_only, &mut canonical);
    hex::encode(Sha256::digest(canonical.as_bytes()))[..16].to_string()
}

/// Mappings whose order is meaning: `group_by`'s labels make a group in the order
/// written (`a=1,b=2`), so reordering them changes the view's groups.
const ORDERED: &[&str] = &["group_by"];

/// `sorted`: whether this node's own mapping keys are sorted (its children's are,
/// unless they are `ORDERED`); `skip`: its own keys left out.
fn write_canonical(node: &Node, sorted: bool, skip: &[&str], out: &mut String) {
    match node {
        Node::Scalar(s) => push_json_string(s.as_str(), out),
        Node::Sequence(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, true, &[], out);
            }
            out.push(']');
        }
        Node::Mapping(map) => {
            let mut entries: Vec<_> = map.iter().filter(|(k, _)| !skip.contains(&k.as_str())).collect();
            if sorted {
                entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            } else {
                // In order, and marked so as never to read like a sorted mapping.
                out.push('~');
            }
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(k.as_str(), out);
                out.push(':');
                write_canonical(v, !ORDERED.contains(&k.as_str()), &[], out);
            }
            out.push('}');
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    // Serializing a string to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_depends_on_names_and_contents_not_order() {
        let a = version_of(&[("a.yaml", "x: 1"), ("b.yaml", "y: 2")]);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 16, "{a}");
        assert_eq!(a, version_of(&[("b.yaml", "y: 2"), ("a.yaml", "x: 1")]));
        assert_ne!(a, version_of(&[("a.yaml", "x: 1"), ("b.yaml", "y: 3")]));
        assert_ne!(a, version_of(&[("a.yaml", "x: 1"), ("c.yaml", "y: 2")]));
        // Length prefixes: moving bytes between name and content changes the hash.
        assert_ne!(version_of(&[("ab", "c")]), version_of(&[("a", "bc")]));
    }

    fn parse(s: &str) -> Node {
        marked_yaml::parse_yaml(0, s).expect("yaml")
    }

    #[test]
    fn the_order_of_group_by_labels_is_in_the_fingerprint() {
        let ab = fingerprint(&parse("name: x\ngroup_by: { a: event.data.a, b: event.data.b }\n"), &[]);
        let ba = fingerprint(&parse("group_by: { b: event.data.b, a: event.data.a }\nname: x\n"), &[]);
        assert_ne!(ab, ba, "groups are `a=..,b=..` or `b=..,a=..`");
        let again = fingerprint(
            &parse("group_by:\n  a: event.data.a\n  b: event.data.b\nname: x\n"),
            &[],
        );
        assert_eq!(ab, again);
    }

    #[test]
    fn fingerprint_ignores_layout_and_key_order() {
        let a = fingerprint(&parse("name: x\nkind: count\non: { type: a.b }\n"), &[]);
        let b = fingerprint(&parse("# comment\nkind: count\non:\n  type: a.b\nname: x\n"), &[]);
        let c = fingerprint(&parse("name: x\nkind: count\non: { type: a.c }\n"), &[]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 16);
    }
}
