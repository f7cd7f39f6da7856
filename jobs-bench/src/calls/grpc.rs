//! The reference: the same request and reply as a tonic gRPC unary call, client and server in
//! this process over one HTTP/2 connection on 127.0.0.1. Nothing is persisted and no broker
//! stands between them: it shows what a call costs without one.
//!
//! The service is written by hand with tonic's low-level [`tonic::server::Grpc`] and
//! [`tonic::client::Grpc`] and the prost codec, as its code generator would write it, so
//! neither `protoc` nor a build script is needed.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::ensure;
use http::uri::PathAndQuery;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::Calling;
use crate::message::BenchJob;

/// The one method: `Echo` of the service `jobs_bench.Calls`.
const PATH: &str = "/jobs_bench.Calls/Echo";

/// A running server and a client connected to it.
pub(super) struct GrpcCalls {
    client: GrpcClient,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: oneshot::Sender<()>,
}

/// The client: one channel (one HTTP/2 connection), cloned for each call as tonic's
/// generated clients are.
#[derive(Clone, Debug)]
pub(super) struct GrpcClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl GrpcCalls {
    /// Starts the server on a free port of 127.0.0.1 and connects a client.
    ///
    /// # Errors
    ///
    /// When the port cannot be bound or the client cannot connect.
    pub(super) async fn start() -> anyhow::Result<Self> {
        let incoming =
            TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?.with_nodelay(Some(true));
        let address = incoming.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(Server::builder().serve_with_incoming_shutdown(
            EchoServer,
            incoming,
            async {
                let _ = stopped.await;
            },
        ));
        let channel = Endpoint::from_shared(format!("http://{address}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(Self {
            client: GrpcClient {
                grpc: tonic::client::Grpc::new(channel),
            },
            server,
            stop,
        })
    }

    /// The client, to share between callers.
    pub(super) fn client(&self) -> std::sync::Arc<GrpcClient> {
        std::sync::Arc::new(self.client.clone())
    }

    /// Stops the server.
    pub(super) async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        // The measurement is over: how the server ended changes no figure.
        let _ = self.server.await;
    }
}

impl Calling for GrpcClient {
    async fn call(&self, seq: u64) -> anyhow::Result<()> {
        let mut grpc = self.grpc.clone();
        grpc.ready().await?;
        let reply = grpc
            .unary(
                Request::new(BenchJob::new(seq)),
                PathAndQuery::from_static(PATH),
                ProstCodec::<BenchJob, BenchJob>::default(),
            )
            .await?
            .into_inner();
        ensure!(
            reply.seq == seq,
            "call {seq} got the reply to {}",
            reply.seq
        );
        Ok(())
    }
}

/// The HTTP service: `Echo` at [`PATH`], `UNIMPLEMENTED` anywhere else.
#[derive(Clone, Copy, Debug)]
struct EchoServer;

impl tower_service::Service<http::Request<Body>> for EchoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != PATH {
                return Ok(Status::unimplemented(request.uri().path().to_owned()).into_http());
            }
            let codec = ProstCodec::<BenchJob, BenchJob>::default();
            Ok(tonic::server::Grpc::new(codec).unary(Echo, request).await)
        })
    }
}

/// The method: the request, echoed.
#[derive(Clone, Copy, Debug)]
struct Echo;

impl tonic::server::UnaryService<BenchJob> for Echo {
    type Response = BenchJob;
    type Future = Ready<Result<Response<BenchJob>, Status>>;

    fn call(&mut self, request: Request<BenchJob>) -> Self::Future {
        ready(Ok(Response::new(request.into_inner())))
    }
}
