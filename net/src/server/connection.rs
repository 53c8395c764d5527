//! One QUIC connection: the HELLO handshake, then a task per stream.

use super::session::{ConnectionSlot, Session, Shared, close};
use super::stream;
use crate::protocol::{ErrorCode, ProtocolError, Request, Response, VERSION, split_frame};
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use strata_log::Engine;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Longest a client may take to send HELLO.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest shutdown waits for a connection's in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest HELLO frame accepted (tokens and client names are short).
pub const MAX_HELLO_FRAME: usize = 64 * 1024;

/// Longest a refused handshake waits for its ERROR frame to be acknowledged.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// Name and version the server announces in HELLO_OK.
pub const SERVER_NAME: &str = concat!("strata/", env!("CARGO_PKG_VERSION"));

struct Refusal {
    code: ErrorCode,
    message: String,
}

impl From<ProtocolError> for Refusal {
    fn from(e: ProtocolError) -> Self {
        Refusal {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// Serves one incoming connection until it closes or the server stops.
pub async fn run(shared: Arc<Shared>, engine: Engine, incoming: quinn::Incoming) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "connection failed during the QUIC handshake");
            return;
        }
    };
    let Some(_slot) = ConnectionSlot::take(&shared) else {
        close(
            &conn,
            ErrorCode::Throttled,
            "the server is at its connection limit",
        );
        return;
    };
    let remote = conn.remote_address();
    let (grant, send, recv, buf) = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&shared, &engine, &conn),
    )
    .await
    {
        Ok(Ok(v)) => v,
        Ok(Err(refusal)) => {
            tracing::info!(%remote, code = %refusal.code, message = %refusal.message, "connection refused");
            close(&conn, refusal.code, &refusal.message);
            return;
        }
        Err(_) => {
            close(
                &conn,
                ErrorCode::MalformedFrame,
                "no HELLO within the handshake timeout",
            );
            return;
        }
    };
    tracing::debug!(%remote, "connection open");
    let session = Arc::new(Session {
        inflight: Arc::new(Semaphore::new(shared.limits.max_inflight_bytes)),
        shared: shared.clone(),
        engine,
        grant,
        conn: conn.clone(),
    });
    let mut streams = JoinSet::new();
    streams.spawn(stream::run(session.clone(), send, recv, buf));
    let mut stop = shared.stop_signal();
    let stopping = loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(stream::run(session.clone(), send, recv, BytesMut::new()));
                }
                Err(_) => break false,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            _ = stop.wait_for(|s| *s) => break true,
        }
    };
    if stopping {
        // Let requests already received finish and their answers go out, then close.
        let drained = async { while streams.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
        close(
            &conn,
            ErrorCode::ShuttingDown,
            "the server is shutting down",
        );
    }
    streams.abort_all();
    tracing::debug!(%remote, "connection closed");
}

type Accepted = (
    Arc<super::auth::Grant>,
    quinn::SendStream,
    quinn::RecvStream,
    BytesMut,
);

async fn handshake(
    shared: &Shared,
    engine: &Engine,
    conn: &quinn::Connection,
) -> Result<Accepted, Refusal> {
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| Refusal {
        code: ErrorCode::MalformedFrame,
        message: format!("no stream opened: {e}"),
    })?;
    // Before authentication a peer may make the server buffer only a small HELLO.
    let max_frame = shared.limits.max_frame_bytes.min(MAX_HELLO_FRAME);
    let mut buf = BytesMut::new();
    let frame = loop {
        if let Some(frame) = split_frame(&mut buf, max_frame)? {
            break frame;
        }
        match recv.read_chunk(stream::READ_CHUNK, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            _ => {
                return Err(Refusal {
                    code: ErrorCode::MalformedFrame,
                    message: "stream ended before HELLO".into(),
                });
            }
        }
    };
    let request_id = frame.request_id;
    let Request::Hello { version, token, .. } = Request::decode(frame.kind, frame.body)? else {
        return Err(Refusal {
            code: ErrorCode::MalformedFrame,
            message: "the first frame must be HELLO".into(),
        });
    };
    let refuse = |code, message: String| Refusal { code, message };
    if version != VERSION {
        let e = ProtocolError::UnsupportedVersion(version);
        let _ = reply(
            &mut send,
            request_id,
            Response::error(e.code(), 0, e.to_string()),
        )
        .await;
        return Err(e.into());
    }
    let Some(grant) = shared.auth.authenticate(&token) else {
        let message = if token.is_empty() {
            "this server requires a token".to_owned()
        } else {
            "unknown token".to_owned()
        };
        let _ = reply(
            &mut send,
            request_id,
            Response::error(ErrorCode::Unauthorized, 0, message.clone()),
        )
        .await;
        return Err(refuse(ErrorCode::Unauthorized, message));
    };
    let ok = Response::HelloOk {
        version: VERSION,
        server: SERVER_NAME.to_owned(),
        shards: engine.shard_count() as u32,
    };
    reply(&mut send, request_id, ok)
        .await
        .map_err(|e| Refusal {
            code: ErrorCode::Internal,
            message: format!("cannot answer HELLO: {e}"),
        })?;
    Ok((grant, send, recv, buf))
}

async fn reply(
    send: &mut quinn::SendStream,
    request_id: u64,
    response: Response,
) -> Result<(), quinn::WriteError> {
    let refusal = matches!(response, Response::Error { .. });
    let mut out = BytesMut::new();
    response.encode(request_id, &mut out);
    send.write_all(&out).await?;
    if refusal {
        // Give the ERROR frame a chance to arrive before the connection is closed.
        let _ = send.finish();
        let _ = tokio::time::timeout(REFUSAL_GRACE, send.stopped()).await;
    }
    Ok(())
}
