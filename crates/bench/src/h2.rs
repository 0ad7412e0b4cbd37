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
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// One HTTP/2 connection; clones multiplex their calls over it.
#[derive(Clone)]
pub struct H2Channel {
    send: SendRequest<tonic::body::Body>,
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

type ResponseFuture = Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, hyper::Error>> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for H2Channel {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> ResponseFuture {
        Box::pin(self.send.send_request(request))
    }
}
