//! A SUBSCRIBE stream: batches pushed as they become durable, within the client's credit.

use super::config::Permission;
use super::session::Session;
use super::stream::{Outgoing, read_more};
use crate::protocol::{ErrorCode, ProtocolError, Request, Response, batches, split_frame};
use bytes::BytesMut;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use strata_log::Error as LogError;
use tokio::sync::{Notify, mpsc};

/// How long one push fetch parks on the shard before it is renewed.
const PARK: Duration = Duration::from_millis(500);
/// Pause before retrying when the owning shard's queue is full.
const THROTTLE_PAUSE: Duration = Duration::from_millis(2);

/// A SUBSCRIBE request.
pub struct Subscription {
    /// Its request id (carried by every DATA frame and CREDIT frame).
    pub request_id: u64,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Next offset to push.
    pub offset: u64,
    /// Initial credit in bytes.
    pub credit: u32,
}

/// Runs the subscription until the client finishes the stream, then stops pushing.
pub async fn run(
    session: &Arc<Session>,
    sub: Subscription,
    recv: &mut quinn::RecvStream,
    buf: &mut BytesMut,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<(), ProtocolError> {
    let id = sub.request_id;
    if !session.grant.allows(Permission::Consume, &sub.topic) {
        let response = Response::error(
            ErrorCode::Unauthorized,
            0,
            format!("this token may not consume from {:?}", sub.topic),
        );
        let _ = tx.send(out(id, response)).await;
        return Ok(());
    }
    let credit = Arc::new(AtomicI64::new(i64::from(sub.credit)));
    let more = Arc::new(Notify::new());
    let pusher = tokio::spawn(push(
        session.clone(),
        sub,
        credit.clone(),
        more.clone(),
        tx.clone(),
    ));
    let max_frame = session.shared.limits.max_frame_bytes;
    let result = loop {
        match split_frame(buf, max_frame) {
            Ok(Some(frame)) => match Request::decode(frame.kind, frame.body) {
                Ok(Request::Credit { bytes }) if frame.request_id == id => {
                    credit.fetch_add(i64::from(bytes), Ordering::SeqCst);
                    more.notify_one();
                }
                Ok(_) => {
                    break Err(ProtocolError::Malformed(
                        "only CREDIT frames for the subscription may follow SUBSCRIBE".into(),
                    ));
                }
                Err(e) => break Err(e),
            },
            Ok(None) => {
                if !read_more(session, recv, buf).await {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    pusher.abort();
    result
}

fn out(request_id: u64, response: Response) -> Outgoing {
    Outgoing {
        request_id,
        response,
        permit: None,
    }
}

async fn push(
    session: Arc<Session>,
    sub: Subscription,
    credit: Arc<AtomicI64>,
    more: Arc<Notify>,
    tx: mpsc::Sender<Outgoing>,
) {
    let id = sub.request_id;
    let limits = &session.shared.limits;
    let max_push = limits.max_push_bytes.min(limits.max_frame_bytes / 2);
    let mut offset = sub.offset;
    loop {
        let available = loop {
            let c = credit.load(Ordering::SeqCst);
            if c > 0 {
                break c as usize;
            }
            more.notified().await;
        };
        let fetch = match session.engine.fetch(
            &sub.topic,
            sub.partition,
            offset,
            available.min(max_push),
            Some(PARK),
        ) {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        match fetch {
            Ok(f) if f.bytes.is_empty() => {
                if tx.is_closed() {
                    return;
                }
            }
            Ok(f) => {
                let span = batches::span(&f.bytes, offset);
                let next = span.next_offset;
                if next <= offset {
                    let response = Response::error(
                        ErrorCode::Internal,
                        0,
                        format!("no progress reading from offset {offset}"),
                    );
                    let _ = tx.send(out(id, response)).await;
                    return;
                }
                offset = next;
                let len = f.bytes.len();
                credit.fetch_sub(len as i64, Ordering::SeqCst);
                session
                    .shared
                    .metrics
                    .consumed(&sub.topic, span.records, len as u64);
                let data = Response::Data {
                    high_watermark: f.high_watermark,
                    batches: f.bytes,
                };
                if tx.send(out(id, data)).await.is_err() {
                    return;
                }
            }
            Err(LogError::Overloaded { .. }) => tokio::time::sleep(THROTTLE_PAUSE).await,
            Err(e) => {
                let _ = tx.send(out(id, Response::from_log_error(&e))).await;
                return;
            }
        }
    }
}
