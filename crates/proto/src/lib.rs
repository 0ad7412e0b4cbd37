//! The opsflow wire contract, generated from `proto/opsflow/v1/*.proto`.
//!
//! ```
//! use opsflow_proto::v1::{AppendRequest, ProposedEvent};
//! let request = AppendRequest {
//!     stream: "order/PO-1001".into(),
//!     events: vec![ProposedEvent { r#type: "order.placed".into(), ..Default::default() }],
//!     ..Default::default()
//! };
//! assert_eq!(request.events.len(), 1);
//! ```

/// Package `opsflow.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("opsflow.v1");
}

/// Package `io.cloudevents.v1`: the CloudEvents Protobuf Event Format, from the
/// CloudEvents specification (`proto/io/cloudevents/v1/cloudevents.proto`).
#[allow(clippy::all, missing_docs)]
pub mod cloudevents {
    tonic::include_proto!("io.cloudevents.v1");
}

/// Conversions to and from the log's types.
#[cfg(feature = "log")]
pub mod convert;

/// Encoded `FileDescriptorSet` of every opsflow proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/opsflow_descriptor.bin"));
