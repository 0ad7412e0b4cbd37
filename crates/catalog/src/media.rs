//! Which content types carry JSON and which protobuf data.

/// How an event's data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    Json,
    Protobuf,
    Other,
}

/// Classifies a content type: subtype `json` or a `+json` suffix is JSON (an empty
/// content type too: the log's default), `application/protobuf` or
/// `application/x-protobuf` is protobuf; parameters and case are ignored.
pub(crate) fn media(content_type: &str) -> Media {
    // Almost every event: no parsing.
    if content_type == "application/json" {
        return Media::Json;
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.is_empty() {
        return Media::Json;
    }
    let Some((kind, subtype)) = essence.split_once('/') else {
        return Media::Other;
    };
    let (kind, subtype) = (kind.trim(), subtype.trim());
    if opsflow_log::is_json_content_type(essence) {
        Media::Json
    } else if kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("protobuf") || subtype.eq_ignore_ascii_case("x-protobuf"))
    {
        Media::Protobuf
    } else {
        Media::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for json in [
            "",
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/json",
            "application/vnd.order+json",
        ] {
            assert_eq!(media(json), Media::Json, "{json}");
        }
        for proto in ["application/protobuf", "application/x-protobuf; messageType=x"] {
            assert_eq!(media(proto), Media::Protobuf, "{proto}");
        }
        for other in ["text/plain", "application/octet-stream", "json", "application/jsonx"] {
            assert_eq!(media(other), Media::Other, "{other}");
        }
    }
}
