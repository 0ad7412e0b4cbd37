//! No input makes the parsers panic: arbitrary bytes, every truncation of a valid
//! document, and arbitrary header names and values.

use bytes::Bytes;
use opsflow_cloudevents::{parse_batch, parse_binary, parse_structured};
use proptest::prelude::*;

const VALID: &str = r#"{"specversion":"1.0","id":"e-1","source":"/shop","type":"order.placed",
"time":"2024-05-01T10:00:00Z","correlationid":"c","expectedversion":"2","tenant":"acme",
"data":{"order_id":"PO-1","lines":[{"sku":"é","qty":2}],"note":"a \"quoted\" \\ text"}}"#;

#[test]
fn every_truncation_of_a_valid_document_is_handled() {
    assert!(parse_structured(VALID.as_bytes()).is_ok());
    let batch = format!("[{VALID},{VALID}]");
    assert_eq!(parse_batch(batch.as_bytes()).map(|b| b.len()).ok(), Some(2));
    for end in 0..batch.len() {
        let _ = parse_structured(&VALID.as_bytes()[..end.min(VALID.len())]);
        let _ = parse_batch(&batch.as_bytes()[..end]);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_structured(&body);
        let _ = parse_batch(&body);
    }

    #[test]
    fn mutated_valid_documents(position in 0..VALID.len(), byte in any::<u8>()) {
        let mut body = VALID.as_bytes().to_vec();
        body[position] = byte;
        let _ = parse_structured(&body);
        let batch = [&b"["[..], &body, b"]"].concat();
        let _ = parse_batch(&batch);
    }

    #[test]
    fn arbitrary_headers(
        headers in proptest::collection::vec(("(?i)ce-[a-z0-9_é]{0,12}", proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
        content_type in proptest::option::of(".{0,30}"),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let pairs = headers.iter().map(|(name, value)| (name.as_str(), value.as_slice()));
        let _ = parse_binary(pairs, content_type.as_deref(), Bytes::from(body));
    }

    #[test]
    fn arbitrary_header_values_with_required_attributes(value in "[ -~%\"\\\\]{0,40}") {
        let headers: Vec<(&str, &[u8])> = vec![
            ("ce-specversion", b"1.0"),
            ("ce-id", value.as_bytes()),
            ("ce-source", value.as_bytes()),
            ("ce-type", value.as_bytes()),
            ("ce-subject", value.as_bytes()),
            ("ce-time", value.as_bytes()),
            ("ce-expectedversion", value.as_bytes()),
        ];
        let _ = parse_binary(headers, Some("application/json"), Bytes::from(value.clone()));
    }
}
