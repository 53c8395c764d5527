//! A push subscription on its own stream, with credit granted back as it is read.

use super::connection::{READ_CHUNK, read_error, write_error};
use super::error::ClientError;
use crate::protocol::{HEADER_LEN, ProtocolError, Request, Response, split_frame};
use bytes::{Bytes, BytesMut};

/// Batches pushed to a subscription (one `DATA` frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// The partition's high watermark when the frame was sent.
    pub high_watermark: u64,
    /// Whole log batches, concatenated (the first may start before the offset asked for).
    pub batches: Bytes,
}

/// A subscription to one partition: `DATA` frames pushed by the server as batches
/// become durable.
///
/// The server never has more than the subscription's credit outstanding. The bytes of
/// each item returned by [`Subscription::next`] are granted back (in `CREDIT` frames of
/// at least half the credit) on the following call, so about `credit` bytes are
/// buffered at most. Dropping the subscription, or [`Subscription::close`], ends it.
pub struct Subscription {
    id: u64,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: BytesMut,
    out: BytesMut,
    max_frame: usize,
    /// Grant credit back once this many bytes were consumed.
    threshold: u64,
    /// Bytes of the item returned last (consumed once `next` is called again).
    handed_out: u64,
    /// Consumed bytes not granted back yet.
    to_grant: u64,
    done: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("request_id", &self.id)
            .field("done", &self.done)
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(
        id: u64,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        credit: u32,
        max_frame: usize,
    ) -> Self {
        Subscription {
            id,
            send,
            recv,
            buf: BytesMut::new(),
            out: BytesMut::with_capacity(HEADER_LEN + 4),
            max_frame,
            threshold: credit_threshold(credit),
            handed_out: 0,
            to_grant: 0,
            done: false,
        }
    }

    /// The SUBSCRIBE request id (carried by every frame of this subscription).
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// The next pushed batches.
    ///
    /// `None` once the subscription ended: after an error was returned, or when the
    /// server finished the stream without one (it is shutting down; resubscribe from
    /// the next offset). An `ERROR` frame from the server ends it with
    /// [`ClientError::Server`].
    pub async fn next(&mut self) -> Option<Result<Data, ClientError>> {
        if self.done {
            return None;
        }
        self.to_grant += std::mem::take(&mut self.handed_out);
        if self.to_grant >= self.threshold {
            let bytes = u32::try_from(self.to_grant).unwrap_or(u32::MAX);
            self.out.clear();
            Request::Credit { bytes }.encode(self.id, &mut self.out);
            if let Err(e) = self.send.write_all(&self.out).await {
                return self.end(write_error(e));
            }
            self.to_grant -= u64::from(bytes);
        }
        loop {
            match split_frame(&mut self.buf, self.max_frame) {
                Ok(Some(frame)) => {
                    if frame.request_id != self.id {
                        return self.end(
                            ProtocolError::Malformed(format!(
                                "frame for request {} on the subscription of request {}",
                                frame.request_id, self.id
                            ))
                            .into(),
                        );
                    }
                    return match Response::decode(frame.kind, frame.body) {
                        Ok(Response::Data {
                            high_watermark,
                            batches,
                        }) => {
                            self.handed_out = batches.len() as u64;
                            Some(Ok(Data {
                                high_watermark,
                                batches,
                            }))
                        }
                        Ok(Response::Error {
                            code,
                            detail,
                            message,
                        }) => self.end(ClientError::Server {
                            code,
                            detail,
                            message,
                        }),
                        Ok(other) => self.end(ClientError::unexpected("DATA", &other)),
                        Err(e) => self.end(e.into()),
                    };
                }
                Ok(None) => {}
                Err(e) => return self.end(e.into()),
            }
            match self.recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => return self.end(read_error(e)),
            }
        }
    }

    fn end(&mut self, e: ClientError) -> Option<Result<Data, ClientError>> {
        self.done = true;
        Some(Err(e))
    }

    /// Ends the subscription: finishes the send side (the server stops pushing) and
    /// stops reading.
    pub fn close(mut self) {
        let _ = self.send.finish();
        let _ = self.recv.stop(quinn::VarInt::from_u32(0));
    }
}

/// Credit is granted back in chunks of half the initial credit (at least one byte), so
/// a subscription costs one CREDIT frame per half-window rather than one per DATA frame.
///
/// This cannot stall: the server only waits when all credit is spent, and by then the
/// consumed bytes not granted back are at least the whole initial credit.
fn credit_threshold(credit: u32) -> u64 {
    (u64::from(credit) / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_granted_back_in_half_windows() {
        assert_eq!(credit_threshold(4 << 20), 2 << 20);
        assert_eq!(credit_threshold(1), 1);
        assert_eq!(credit_threshold(0), 1);
    }
}
