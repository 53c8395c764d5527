//! One bidirectional stream: frames in, requests submitted in order, responses out.

use super::handler::{self, Step};
use super::session::Session;
use super::subscription;
use crate::protocol::{FrameHeader, HEADER_LEN, ProtocolError, Request, Response, split_frame};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// Responses queued per stream before the submitting side waits.
pub const OUT_QUEUE: usize = 256;
/// Largest chunk read from a stream at once.
pub const READ_CHUNK: usize = 256 * 1024;
/// Frames at least this large are read into a buffer of their own: a produced batch
/// split off the shared read buffer would have to be copied again to become the
/// mutable buffer the engine appends (it patches the base offset in place).
const OWN_BUFFER_FROM: usize = 16 * 1024;
/// Most frames gathered into one write.
const WRITE_BATCH: usize = 64;

/// A response on its way out, holding the in-flight budget of its request until written.
pub struct Outgoing {
    /// Request id it answers.
    pub request_id: u64,
    /// The response.
    pub response: Response,
    /// Budget to give back once written.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Serves one stream until the client finishes it, the connection ends, or shutdown.
///
/// `buf` holds bytes already read from it (the handshake stream's leftovers).
pub async fn run(
    session: Arc<Session>,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut buf: BytesMut,
) {
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let writer = tokio::spawn(write_loop(send, rx));
    if let Err(e) = read_loop(&session, &mut recv, &mut buf, &tx).await {
        session.violation(&e);
    }
    drop(tx);
    let _ = writer.await;
}

/// Reads more bytes into `buf`; false when the stream ended, failed or shutdown began.
pub async fn read_more(
    session: &Session,
    recv: &mut quinn::RecvStream,
    buf: &mut BytesMut,
) -> bool {
    read_up_to(session, recv, buf, READ_CHUNK).await
}

/// Reads at most `max` more bytes into `buf`; false when the stream ended, failed or
/// shutdown began.
async fn read_up_to(
    session: &Session,
    recv: &mut quinn::RecvStream,
    buf: &mut BytesMut,
    max: usize,
) -> bool {
    let mut stop = session.shared.stop_signal();
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        chunk = recv.read_chunk(max, true) => match chunk {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk.bytes);
                true
            }
            Ok(None) | Err(_) => false,
        },
        _ = stop.changed() => false,
    }
}

async fn read_loop(
    session: &Arc<Session>,
    recv: &mut quinn::RecvStream,
    buf: &mut BytesMut,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<(), ProtocolError> {
    let limits = &session.shared.limits;
    let max_frame = limits.max_frame_bytes;
    // Budget of the frame being received, taken as soon as its header is known so that
    // half-received frames count against the connection's in-flight bytes too.
    let mut held: Option<OwnedSemaphorePermit> = None;
    loop {
        let mut frame = None;
        if held.is_none() && buf.len() >= HEADER_LEN {
            let header = FrameHeader::decode(&buf[..HEADER_LEN], max_frame)?;
            let frame_len = HEADER_LEN + header.body_len as usize;
            let Ok(permit) = session
                .inflight
                .clone()
                .acquire_many_owned(frame_len as u32)
                .await
            else {
                return Ok(());
            };
            held = Some(permit);
            if frame_len >= OWN_BUFFER_FROM && buf.len() < frame_len {
                // Everything in `buf` belongs to this frame: move it and read the rest
                // of the frame, and no more, straight into the frame's own buffer.
                let mut own = BytesMut::with_capacity(frame_len);
                own.extend_from_slice(buf);
                buf.clear();
                while own.len() < frame_len {
                    let missing = frame_len - own.len();
                    if !read_up_to(session, recv, &mut own, missing).await {
                        return Ok(());
                    }
                }
                frame = split_frame(&mut own, max_frame)?;
                debug_assert!(frame.is_some() && own.is_empty());
            }
        }
        if frame.is_none() {
            frame = split_frame(buf, max_frame)?;
        }
        if let Some(frame) = frame {
            let mut permit = held.take().expect("a whole frame had its header budgeted");
            let request_id = frame.request_id;
            let request = Request::decode(frame.kind, frame.body)?;
            match request {
                Request::Subscribe {
                    topic,
                    partition,
                    offset,
                    credit,
                } => {
                    drop(permit);
                    let sub = subscription::Subscription {
                        request_id,
                        topic,
                        partition,
                        offset,
                        credit,
                    };
                    return subscription::run(session, sub, recv, buf, tx).await;
                }
                Request::Hello { .. } => {
                    return Err(ProtocolError::Malformed("HELLO after the handshake".into()));
                }
                Request::Credit { .. } => {
                    return Err(ProtocolError::Malformed(
                        "CREDIT on a stream without a subscription".into(),
                    ));
                }
                request => {
                    if let Request::Fetch { max_bytes, .. } = &request {
                        // The answer's size, as the handler will clamp it.
                        // Never more than the whole budget, or it could never be granted.
                        let room = limits.max_inflight_bytes - permit.num_permits();
                        let extra = handler::fetch_budget(limits, *max_bytes).min(room) as u32;
                        let Ok(more) = session.inflight.clone().acquire_many_owned(extra).await
                        else {
                            return Ok(());
                        };
                        permit.merge(more);
                    }
                    submit(session, request_id, request, permit, tx).await;
                }
            }
            continue;
        }
        if !read_more(session, recv, buf).await {
            return Ok(());
        }
    }
}

async fn submit(
    session: &Arc<Session>,
    request_id: u64,
    request: Request,
    permit: OwnedSemaphorePermit,
    tx: &mpsc::Sender<Outgoing>,
) {
    let started = Instant::now();
    let observe = Observe::of(&request);
    match handler::submit(session, request) {
        Step::Done(response) => {
            observe.record(session, &response, started);
            let _ = tx
                .send(Outgoing {
                    request_id,
                    response,
                    permit: Some(permit),
                })
                .await;
        }
        Step::Wait(fut) => {
            let tx = tx.clone();
            let session = session.clone();
            tokio::spawn(async move {
                let response = fut.await;
                observe.record(&session, &response, started);
                let _ = tx
                    .send(Outgoing {
                        request_id,
                        response,
                        permit: Some(permit),
                    })
                    .await;
            });
        }
    }
}

/// What to count once a request is answered.
enum Observe {
    Produce {
        topic: String,
        records: u64,
        bytes: u64,
    },
    Fetch {
        topic: String,
    },
    Nothing,
}

impl Observe {
    fn of(request: &Request) -> Observe {
        match request {
            Request::Produce { topic, batch, .. } => Observe::Produce {
                topic: topic.clone(),
                records: strata_log::format::BatchHeader::parse(batch)
                    .map_or(0, |h| u64::from(h.record_count)),
                bytes: batch.len() as u64,
            },
            Request::Fetch { topic, .. } => Observe::Fetch {
                topic: topic.clone(),
            },
            _ => Observe::Nothing,
        }
    }

    fn record(self, session: &Session, response: &Response, started: Instant) {
        let m = &session.shared.metrics;
        match (self, response) {
            (
                Observe::Produce {
                    topic,
                    records,
                    bytes,
                },
                Response::Produced { .. },
            ) => {
                m.produced(&topic, records, bytes, started.elapsed());
            }
            (Observe::Fetch { topic }, Response::Fetched { batches, .. }) => {
                m.fetch_latency.observe(started.elapsed().as_secs_f64());
                m.consumed(
                    &topic,
                    crate::protocol::batches::span(batches, 0).records,
                    batches.len() as u64,
                );
            }
            _ => {}
        }
    }
}

async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Outgoing>) {
    let mut head = BytesMut::with_capacity(16 * 1024);
    let mut chunks: Vec<Bytes> = Vec::with_capacity(2 * WRITE_BATCH);
    let mut permits = Vec::with_capacity(WRITE_BATCH);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            let tail = out.response.encode(out.request_id, &mut head);
            chunks.push(head.split().freeze());
            if let Some(tail) = tail.filter(|t| !t.is_empty()) {
                chunks.push(tail);
            }
            permits.push(out.permit);
            if permits.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if send.write_all_chunks(&mut chunks).await.is_err() {
            return;
        }
        chunks.clear();
        permits.clear();
    }
    let _ = send.finish();
}
