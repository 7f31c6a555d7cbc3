//! The go-plugin side services served next to the provider: the controller (Shutdown), the
//! stdio stream and the connection broker. All of them end their streams when the plugin
//! shuts down, so graceful shutdown is not held up by a stream that never closes.

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::proto::plugin::{
    ConnInfo, Empty, StdioData, grpc_broker_server::GrpcBroker,
    grpc_controller_server::GrpcController, grpc_stdio_server::GrpcStdio,
};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream that yields nothing and ends once `done` resolves.
fn silent_until<T: Send + 'static>(
    done: impl std::future::Future<Output = ()> + Send + 'static,
) -> BoxStream<T> {
    Box::pin(futures::stream::once(done).filter_map(|()| async { None }))
}

#[derive(Debug, Clone)]
pub(crate) struct Controller {
    pub(crate) shutdown: CancellationToken,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::debug!("the client asked the plugin to shut down");
        // Graceful shutdown still delivers this in-flight response.
        self.shutdown.cancel();
        Ok(Response::new(Empty {}))
    }
}

/// The provider writes its logs straight to stderr, which the client reads and parses, so
/// there is never anything to forward here; the stream stays open so the client's reader
/// stays quiet, and ends at shutdown.
#[derive(Debug, Clone)]
pub(crate) struct Stdio {
    pub(crate) shutdown: CancellationToken,
}

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    type StreamStdioStream = BoxStream<StdioData>;

    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        let shutdown = self.shutdown.clone();
        Ok(Response::new(silent_until(async move {
            shutdown.cancelled().await
        })))
    }
}

/// go-plugin clients always open the broker stream. Strata never asks for extra
/// connections, so it reads what the client sends and answers nothing.
#[derive(Debug, Clone)]
pub(crate) struct Broker {
    pub(crate) shutdown: CancellationToken,
}

#[tonic::async_trait]
impl GrpcBroker for Broker {
    type StartStreamStream = BoxStream<ConnInfo>;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let mut incoming = request.into_inner();
        let shutdown = self.shutdown.clone();
        let client_done = async move {
            while let Some(message) = incoming.next().await {
                match message {
                    Ok(info) => tracing::debug!(
                        service_id = info.service_id,
                        "ignoring a broker connection offer: Strata uses no brokered connections"
                    ),
                    Err(_) => break,
                }
            }
        };
        Ok(Response::new(silent_until(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = client_done => {}
            }
        })))
    }
}
