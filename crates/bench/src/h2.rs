//! A lean gRPC channel for the load generator: one hyper HTTP/2 connection used
//! directly, without the buffer, reconnect and balancing layers of
//! `tonic::transport::Channel`. The load generator shares the machine's cores
//! with the server under test, so every microsecond it spends per call is taken
//! from the server; this keeps its share small. Requests are ordinary gRPC over
//! HTTP/2 (tonic's codec and framing).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// One HTTP/2 connection; clones multiplex their calls over it.
#[derive(Clone)]
pub struct H2Channel {
    send: SendRequest<Full<Bytes>>,
}

impl H2Channel {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<H2Channel> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tcp))
            .await
            .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("bench HTTP/2 connection ended: {e}");
            }
        });
        Ok(H2Channel { send })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResponseFuture = Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, BoxError>> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for H2Channel {
    type Response = http::Response<Incoming>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.send.poll_ready(cx).map_err(Into::into)
    }

    /// Unary calls only: the request body is collected before it is sent (a
    /// client-streaming call would wait for ever). The request goes out with its
    /// whole message as one body, so that HTTP/2
    /// sends its headers and data together (tonic's streaming body is sent in
    /// pieces, each flushed on its own: twice the writes of the server).
    fn call(&mut self, request: http::Request<tonic::body::Body>) -> ResponseFuture {
        let mut send = self.send.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let message = body.collect().await?.to_bytes();
            Ok(send
                .send_request(http::Request::from_parts(parts, Full::new(message)))
                .await?)
        })
    }
}
