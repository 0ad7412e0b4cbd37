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
    match node {
        Node::Mapping(map) => {
            let mut kept = marked_yaml::types::MarkedMappingNode::new_empty(*map.span());
            for (k, v) in map.iter().filter(|(k, _)| !report_only.contains(&k.as_str())) {
                kept.insert(k.clone(), v.clone());
            }
            write_canonical(&Node::Mapping(kept), &mut canonical);
        }
        other => write_canonical(other, &mut canonical),
    }
    hex::encode(Sha256::digest(canonical.as_bytes()))[..16].to_string()
}

fn write_canonical(node: &Node, out: &mut String) {
    match node {
        Node::Scalar(s) => push_json_string(s.as_str(), out),
        Node::Sequence(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Node::Mapping(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(k.as_str(), out);
                out.push(':');
                write_canonical(v, out);
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

    #[test]
    fn fingerprint_ignores_layout_and_key_order() {
        let parse = |s: &str| marked_yaml::parse_yaml(0, s).expect("yaml");
        let a = fingerprint(&parse("name: x\nkind: count\non: { type: a.b }\n"), &[]);
        let b = fingerprint(&parse("# comment\nkind: count\non:\n  type: a.b\nname: x\n"), &[]);
        let c = fingerprint(&parse("name: x\nkind: count\non: { type: a.c }\n"), &[]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 16);
    }
}
