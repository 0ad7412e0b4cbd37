//! Media types: which content types declare JSON or text data.

/// The content type given to data whose type nobody declared (RFC 9110 §8.3).
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";

/// Splits `type/subtype; params` into lower-cased `(type, subtype)`.
fn essence(content_type: &str) -> Option<(String, String)> {
    let media = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = media.split_once('/')?;
    Some((kind.trim().to_owned(), subtype.trim().to_owned()))
}

/// Whether `content_type` declares JSON data: subtype `json` or a `+json` suffix,
/// parameters ignored (CloudEvents JSON format §3.1.1).
pub(crate) fn is_json(content_type: &str) -> bool {
    essence(content_type).is_some_and(|(_, subtype)| subtype == "json" || subtype.ends_with("+json"))
}

/// Whether `content_type` declares text (`text/*`, XML), written as a `data` string.
pub(crate) fn is_text(content_type: &str) -> bool {
    essence(content_type).is_some_and(|(kind, subtype)| kind == "text" || subtype == "xml" || subtype.ends_with("+xml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/json",
            "application/cloudevents+json",
            "application/vnd.opsflow.order+json ; v=1",
        ] {
            assert!(is_json(json), "{json}");
        }
        for other in [
            "",
            "json",
            "application/xml",
            "application/jsonx",
            "text/plain",
            "application/protobuf",
        ] {
            assert!(!is_json(other), "{other}");
        }
    }

    #[test]
    fn text_content_types() {
        assert!(is_text("text/plain; charset=utf-8"));
        assert!(is_text("application/xml"));
        assert!(is_text("application/atom+xml"));
        assert!(!is_text("application/octet-stream"));
        assert!(!is_text("application/json"));
    }
}
