//! One logical connection to a server: the HELLO handshake, long-lived request lanes
//! (bidirectional streams) matched by request id, and reconnects with backoff.
//!
//! ```text
//!  Client::call(lane, req) ──▶ pending[lane].insert(id) ──▶ bounded mpsc ──▶ writer task
//!                                                                       (gathers frames,
//!                                                                        write_all_chunks)
//!  reader task: split_frame ──▶ Response::decode ──▶ pending[lane].remove(id) ──▶ caller
//! ```
//!
//! Lane 0 is the stream that carried HELLO. When the connection dies every request in
//! flight fails with [`ClientError::Closed`]; the next request re-dials (with backoff)
//! and redoes HELLO.

use super::config::ClientConfig;
use super::error::ClientError;
use super::subscription::Subscription;
use crate::protocol::{
    Acks, ErrorCode, ProtocolError, Request, Response, TopicInfo, VERSION, split_frame,
};
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use strata_log::OffsetQuery;
use strata_log::TopicConfig;
use strata_log::engine::{
    AssignmentStrategy, GroupSummary, Membership, PartitionState, TopicPartition,
};
use tokio::sync::{mpsc, oneshot};

/// Largest chunk read from a stream at once.
pub(crate) const READ_CHUNK: usize = 256 * 1024;
/// Most frames gathered into one stream write.
const WRITE_BATCH: usize = 64;

/// What the server said about itself in `HELLO_OK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Protocol version the server speaks.
    pub version: u16,
    /// Server software and version.
    pub server: String,
    /// Shards (cores) serving.
    pub shards: u32,
}

/// Server facts and the topics asked about (`METADATA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Shards serving.
    pub shards: u32,
    /// The topics (all visible ones when none were named).
    pub topics: Vec<TopicInfo>,
}

/// A topic's configuration and its partitions' offsets (`DESCRIBE_TOPIC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic.
    pub topic: TopicInfo,
    /// Its partitions.
    pub partitions: Vec<PartitionState>,
}

/// A fresh idempotent producer identity (`INIT_PRODUCER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// Producer id.
    pub producer_id: u64,
    /// Producer epoch.
    pub epoch: u16,
}

/// Batches read by a `FETCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Offset after the last durable record.
    pub high_watermark: u64,
    /// First retained offset.
    pub log_start_offset: u64,
    /// Whole batches (the first may start before the requested offset), possibly empty.
    pub batches: Bytes,
}

/// A request on its way to a lane's writer.
struct Outgoing {
    id: u64,
    request: Request,
}

type Reply = oneshot::Sender<Result<Response, ClientError>>;

/// The part of a connection its stream tasks share.
pub(crate) struct ConnCore {
    connection: quinn::Connection,
    /// Requests waiting for an answer, per lane.
    pending: Vec<Mutex<HashMap<u64, Reply>>>,
    dead: AtomicBool,
    failure: OnceLock<ClientError>,
    max_frame: usize,
}

impl ConnCore {
    /// False once a lane noticed the connection is gone (a lane's reader is always
    /// reading, so it notices a close at once; no lock of quinn's state per request).
    fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
    }

    /// Why the connection is gone (or a generic reason when it is not known yet).
    pub(crate) fn error(&self) -> ClientError {
        if let Some(e) = self.failure.get() {
            return e.clone();
        }
        match self.connection.close_reason() {
            Some(e) => ClientError::from_connection(&e),
            None => ClientError::Closed {
                code: None,
                reason: "connection lost".into(),
            },
        }
    }

    /// Marks the connection dead and fails every request waiting on it.
    fn fail(&self, err: ClientError) {
        let _ = self.failure.set(err);
        self.dead.store(true, Ordering::SeqCst);
        let err = self.error();
        for lane in &self.pending {
            let drained: Vec<Reply> = match lane.lock() {
                Ok(mut map) => map.drain().map(|(_, tx)| tx).collect(),
                Err(_) => Vec::new(),
            };
            for tx in drained {
                let _ = tx.send(Err(err.clone()));
            }
        }
    }

    /// Closes the connection because the server broke the protocol.
    fn violation(&self, e: ProtocolError) -> ClientError {
        // Recorded first: the other lanes see the local close as their reason.
        let _ = self.failure.set(ClientError::Protocol(e.clone()));
        let reason = e.to_string();
        self.connection.close(
            quinn::VarInt::from_u32(u32::from(e.code() as u16)),
            &reason.as_bytes()[..reason.len().min(512)],
        );
        ClientError::Protocol(e)
    }
}

/// A live connection: its lanes and what the server announced.
struct Conn {
    core: Arc<ConnCore>,
    lanes: Vec<mpsc::Sender<Outgoing>>,
    info: ServerInfo,
}

struct Inner {
    config: ClientConfig,
    quic: quinn::ClientConfig,
    endpoint: quinn::Endpoint,
    current: ArcSwap<Conn>,
    /// Serialises re-dials; holds when the last failed one finished, and why.
    dial: tokio::sync::Mutex<Option<(Instant, ClientError)>>,
    next_id: AtomicU64,
    next_lane: AtomicUsize,
    closed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let conn = self.current.load();
        conn.core
            .connection
            .close(quinn::VarInt::from_u32(0), b"client dropped");
    }
}

/// A connection to a strata server, shared by cheap clones.
///
/// Requests are spread over `lanes` long-lived streams; requests sent on one lane reach
/// the engine in order. A lost connection is re-dialled on the next request.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.config.server)
            .field("lanes", &self.inner.config.lanes)
            .finish()
    }
}

/// An answer still to come for a request already queued on a lane.
///
/// Dropping it forgets the request (its answer is discarded when it arrives).
pub struct PendingResponse {
    rx: oneshot::Receiver<Result<Response, ClientError>>,
    id: u64,
    lane: usize,
    core: Arc<ConnCore>,
    deadline: Instant,
    answered: bool,
}

impl std::fmt::Debug for PendingResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingResponse")
            .field("id", &self.id)
            .field("lane", &self.lane)
            .finish()
    }
}

impl PendingResponse {
    /// The request id the answer will carry.
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// Waits for the answer; an `ERROR` answer becomes [`ClientError::Server`].
    pub async fn wait(mut self) -> Result<Response, ClientError> {
        let outcome = tokio::time::timeout_at(self.deadline.into(), &mut self.rx).await;
        match outcome {
            Ok(Ok(result)) => {
                self.answered = true;
                match result? {
                    Response::Error {
                        code,
                        detail,
                        message,
                    } => Err(ClientError::Server {
                        code,
                        detail,
                        message,
                    }),
                    other => Ok(other),
                }
            }
            Ok(Err(_)) => {
                self.answered = true;
                Err(self.core.error())
            }
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

impl Drop for PendingResponse {
    fn drop(&mut self) {
        if !self.answered {
            if let Ok(mut map) = self.core.pending[self.lane].lock() {
                map.remove(&self.id);
            }
        }
    }
}

pub(crate) fn read_error(e: quinn::ReadError) -> ClientError {
    match e {
        quinn::ReadError::ConnectionLost(c) => ClientError::from_connection(&c),
        quinn::ReadError::Reset(code) => ClientError::Closed {
            code: u16::try_from(code.into_inner())
                .ok()
                .and_then(ErrorCode::from_u16),
            reason: "stream reset by the server".into(),
        },
        other => ClientError::Closed {
            code: None,
            reason: other.to_string(),
        },
    }
}

pub(crate) fn write_error(e: quinn::WriteError) -> ClientError {
    match e {
        quinn::WriteError::ConnectionLost(c) => ClientError::from_connection(&c),
        quinn::WriteError::Stopped(code) => ClientError::Closed {
            code: u16::try_from(code.into_inner())
                .ok()
                .and_then(ErrorCode::from_u16),
            reason: "stream stopped by the server".into(),
        },
        other => ClientError::Closed {
            code: None,
            reason: other.to_string(),
        },
    }
}

/// Writes a lane's requests, gathering up to [`WRITE_BATCH`] frames per write; produce
/// batches go out as their own `Bytes`, never copied.
async fn write_lane(
    core: Arc<ConnCore>,
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let mut head = BytesMut::with_capacity(16 * 1024);
    let mut chunks: Vec<Bytes> = Vec::with_capacity(2 * WRITE_BATCH + 1);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut gathered = 0;
        while let Some(out) = next.take() {
            if let Some(tail) = out.request.encode(out.id, &mut head) {
                chunks.push(head.split().freeze());
                if !tail.is_empty() {
                    chunks.push(tail);
                }
            }
            gathered += 1;
            if gathered < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !head.is_empty() {
            chunks.push(head.split().freeze());
        }
        if let Err(e) = send.write_all_chunks(&mut chunks).await {
            core.fail(write_error(e));
            return;
        }
        chunks.clear();
    }
    let _ = send.finish();
}

/// Reads a lane's answers and hands each to the request waiting for it.
async fn read_lane(core: Arc<ConnCore>, lane: usize, mut recv: quinn::RecvStream, buf: BytesMut) {
    let mut buf = buf;
    let err = 'read: loop {
        loop {
            match split_frame(&mut buf, core.max_frame) {
                Ok(Some(frame)) => match Response::decode(frame.kind, frame.body) {
                    Ok(response) => {
                        let waiter = core.pending[lane]
                            .lock()
                            .ok()
                            .and_then(|mut m| m.remove(&frame.request_id));
                        if let Some(tx) = waiter {
                            let _ = tx.send(Ok(response));
                        }
                    }
                    Err(e) => break 'read core.violation(e),
                },
                Ok(None) => break,
                Err(e) => break 'read core.violation(e),
            }
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                break ClientError::Closed {
                    code: None,
                    reason: "the server ended a request stream".into(),
                };
            }
            Err(e) => break read_error(e),
        }
    };
    core.fail(err);
}

/// Dials once: QUIC handshake, HELLO on the first stream, then the other lanes.
async fn dial(
    config: &ClientConfig,
    quic: &quinn::ClientConfig,
    endpoint: &quinn::Endpoint,
    next_id: &AtomicU64,
) -> Result<Conn, ClientError> {
    let connect_err = |reason: String| ClientError::Connect {
        addr: config.server,
        reason,
    };
    let handshake = async {
        let connecting = endpoint
            .connect_with(quic.clone(), config.server, &config.server_name)
            .map_err(|e| connect_err(e.to_string()))?;
        let connection = connecting.await.map_err(|e| match e {
            quinn::ConnectionError::ApplicationClosed(_) => ClientError::from_connection(&e),
            other => connect_err(other.to_string()),
        })?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| ClientError::from_connection(&e))?;
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let mut out = BytesMut::new();
        Request::Hello {
            version: VERSION,
            token: config.token.clone().unwrap_or_default(),
            client: config.client_name.clone(),
        }
        .encode(id, &mut out);
        send.write_all(&out).await.map_err(write_error)?;
        let mut buf = BytesMut::new();
        let frame = loop {
            if let Some(frame) = split_frame(&mut buf, config.max_frame)? {
                break frame;
            }
            match recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                Ok(None) => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: "the server ended the stream before answering HELLO".into(),
                    });
                }
                Err(e) => return Err(read_error(e)),
            }
        };
        if frame.request_id != id {
            return Err(ProtocolError::Malformed(format!(
                "HELLO answered with request id {} instead of {id}",
                frame.request_id
            ))
            .into());
        }
        let info = match Response::decode(frame.kind, frame.body)? {
            Response::HelloOk {
                version,
                server,
                shards,
            } => {
                if version != VERSION {
                    return Err(ProtocolError::UnsupportedVersion(version).into());
                }
                ServerInfo {
                    version,
                    server,
                    shards,
                }
            }
            Response::Error {
                code,
                detail,
                message,
            } => {
                return Err(ClientError::Server {
                    code,
                    detail,
                    message,
                });
            }
            other => return Err(ClientError::unexpected("HELLO_OK", &other)),
        };
        let mut streams = vec![(send, recv)];
        for _ in 1..config.lanes {
            streams.push(
                connection
                    .open_bi()
                    .await
                    .map_err(|e| ClientError::from_connection(&e))?,
            );
        }
        Ok((connection, streams, buf, info))
    };
    let (connection, streams, leftover, info) =
        match tokio::time::timeout(config.connect_timeout, handshake).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(connect_err(format!(
                    "no answer within {:?}",
                    config.connect_timeout
                )));
            }
        };
    let core = Arc::new(ConnCore {
        connection,
        pending: (0..streams.len())
            .map(|_| Mutex::new(HashMap::new()))
            .collect(),
        dead: AtomicBool::new(false),
        failure: OnceLock::new(),
        max_frame: config.max_frame,
    });
    let mut lanes = Vec::with_capacity(streams.len());
    let mut leftover = Some(leftover);
    for (lane, (send, recv)) in streams.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(config.lane_queue);
        lanes.push(tx);
        tokio::spawn(write_lane(core.clone(), send, rx));
        let buf = leftover.take().unwrap_or_default();
        tokio::spawn(read_lane(core.clone(), lane, recv, buf));
    }
    tracing::debug!(server = %config.server, version = info.version, shards = info.shards, "connected");
    Ok(Conn { core, lanes, info })
}

/// FNV-1a of a topic name: a stable, cheap spread of topics over lanes.
fn topic_hash(topic: &str) -> u64 {
    topic.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Client {
    /// Connects to the server in `config` and completes the HELLO handshake (one attempt).
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let quic = config.quic_config()?;
        let bind: SocketAddr = if config.server.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = crate::quic::client_endpoint(bind).map_err(|e| ClientError::Connect {
            addr: config.server,
            reason: format!("cannot bind a UDP socket: {e}"),
        })?;
        let next_id = AtomicU64::new(1);
        let conn = dial(&config, &quic, &endpoint, &next_id).await?;
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                quic,
                endpoint,
                current: ArcSwap::from_pointee(conn),
                dial: tokio::sync::Mutex::new(None),
                next_id,
                next_lane: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// What the server announced on the current connection.
    pub fn server_info(&self) -> ServerInfo {
        self.inner.current.load().info.clone()
    }

    /// Number of request lanes.
    pub fn lanes(&self) -> usize {
        self.inner.config.lanes
    }

    /// The lane that carries the appends of one partition (stable for a given topic,
    /// so the appends of a partition keep their order).
    pub fn lane_for(&self, topic: &str, partition: u32) -> usize {
        (topic_hash(topic).wrapping_add(u64::from(partition)) % self.lanes() as u64) as usize
    }

    /// Whether the current connection is up (false after a loss, until the next request).
    pub fn is_connected(&self) -> bool {
        self.inner.current.load().core.is_alive()
    }

    /// The next lane in turn, for requests without ordering needs.
    pub fn next_lane(&self) -> usize {
        self.inner.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes()
    }

    /// The current connection, re-dialled first if it was lost.
    async fn live(&self) -> Result<Arc<Conn>, ClientError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(ClientError::ClientClosed);
        }
        let conn = self.inner.current.load_full();
        if conn.core.is_alive() {
            return Ok(conn);
        }
        self.redial(&conn).await
    }

    /// Re-dials the server if the connection is lost (no-op while it is up).
    ///
    /// Tries with exponential backoff until `backoff.give_up`; requests in flight on the
    /// lost connection have already failed with [`ClientError::Closed`].
    pub async fn reconnect(&self) -> Result<(), ClientError> {
        self.live().await.map(|_| ())
    }

    async fn redial(&self, dead: &Arc<Conn>) -> Result<Arc<Conn>, ClientError> {
        let asked = Instant::now();
        let mut last_failure = self.inner.dial.lock().await;
        let current = self.inner.current.load_full();
        if !Arc::ptr_eq(&current, dead) && current.core.is_alive() {
            return Ok(current);
        }
        if let Some((at, e)) = last_failure.as_ref() {
            // Someone re-dialled (and gave up) while this caller waited: share the outcome.
            if *at >= asked {
                return Err(e.clone());
            }
        }
        current.core.fail(current.core.error());
        current
            .core
            .connection
            .close(quinn::VarInt::from_u32(0), b"reconnecting");
        let config = &self.inner.config;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            if self.inner.closed.load(Ordering::SeqCst) {
                return Err(ClientError::ClientClosed);
            }
            match dial(
                config,
                &self.inner.quic,
                &self.inner.endpoint,
                &self.inner.next_id,
            )
            .await
            {
                Ok(conn) => {
                    let conn = Arc::new(conn);
                    self.inner.current.store(conn.clone());
                    *last_failure = None;
                    tracing::info!(server = %config.server, attempts = attempt + 1, "reconnected");
                    return Ok(conn);
                }
                Err(e) => {
                    let give_up = !e.is_retriable() || started.elapsed() >= config.backoff.give_up;
                    if give_up {
                        tracing::warn!(server = %config.server, error = %e, "reconnect failed");
                        *last_failure = Some((Instant::now(), e.clone()));
                        return Err(e);
                    }
                    tracing::debug!(server = %config.server, error = %e, attempt, "reconnect attempt failed");
                    tokio::time::sleep(config.backoff.delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Queues `request` on lane `lane % lanes` and returns a handle on its answer.
    ///
    /// Waits only for room in the lane's bounded queue; requests queued one after the
    /// other on a lane are written, and reach the engine, in that order.
    pub async fn submit(
        &self,
        lane: usize,
        request: Request,
    ) -> Result<PendingResponse, ClientError> {
        self.submit_within(lane, request, self.inner.config.request_timeout)
            .await
    }

    async fn submit_within(
        &self,
        lane: usize,
        request: Request,
        timeout: Duration,
    ) -> Result<PendingResponse, ClientError> {
        if matches!(
            request,
            Request::Hello { .. } | Request::Subscribe { .. } | Request::Credit { .. }
        ) {
            return Err(ClientError::InvalidInput(
                "HELLO, SUBSCRIBE and CREDIT cannot be sent on a request lane".into(),
            ));
        }
        let conn = self.live().await?;
        let lane = lane % conn.lanes.len();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut map) = conn.core.pending[lane].lock() {
            map.insert(id, tx);
        }
        let pending = PendingResponse {
            rx,
            id,
            lane,
            core: conn.core.clone(),
            deadline: Instant::now() + timeout,
            answered: false,
        };
        // Checked after registering: a failure that drained the map before the insert
        // has set `dead` first, so the request cannot be left waiting.
        if conn.core.dead.load(Ordering::SeqCst) {
            return Err(conn.core.error());
        }
        if conn.lanes[lane]
            .send(Outgoing { id, request })
            .await
            .is_err()
        {
            return Err(conn.core.error());
        }
        Ok(pending)
    }

    /// Sends `request` on lane `lane % lanes` and waits for its answer (within the
    /// request timeout); an `ERROR` answer becomes [`ClientError::Server`].
    pub async fn call(&self, lane: usize, request: Request) -> Result<Response, ClientError> {
        self.submit(lane, request).await?.wait().await
    }

    async fn request(&self, request: Request) -> Result<Response, ClientError> {
        self.call(self.next_lane(), request).await
    }

    /// Closes the connection; every clone of this client stops working.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let conn = self.inner.current.load_full();
        conn.core.fail(ClientError::ClientClosed);
        conn.core
            .connection
            .close(quinn::VarInt::from_u32(0), b"client closed");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }

    /// Opens a push subscription on a dedicated stream: batches from `offset`, with at
    /// most `credit` bytes outstanding (the subscription grants more as it is read).
    pub async fn subscribe(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        credit: u32,
    ) -> Result<Subscription, ClientError> {
        if credit == 0 {
            return Err(ClientError::InvalidInput(
                "a subscription needs a credit above zero".into(),
            ));
        }
        let conn = self.live().await?;
        let (mut send, recv) = conn
            .core
            .connection
            .open_bi()
            .await
            .map_err(|e| ClientError::from_connection(&e))?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut out = BytesMut::new();
        Request::Subscribe {
            topic: topic.to_owned(),
            partition,
            offset,
            credit,
        }
        .encode(id, &mut out);
        send.write_all(&out).await.map_err(write_error)?;
        Ok(Subscription::new(
            id,
            send,
            recv,
            credit,
            self.inner.config.max_frame,
        ))
    }

    /// Drops the connection as a network failure would (requests in flight fail with
    /// a retriable [`ClientError::Closed`]).
    #[cfg(test)]
    pub(crate) fn break_connection(&self) {
        let conn = self.inner.current.load();
        let _ = conn.core.failure.set(ClientError::Closed {
            code: None,
            reason: "broken by a test".into(),
        });
        conn.core
            .connection
            .close(quinn::VarInt::from_u32(0), b"broken by a test");
    }

    /// Creates a topic.
    pub async fn create_topic(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<TopicInfo, ClientError> {
        match self
            .request(Request::CreateTopic {
                name: name.to_owned(),
                config,
            })
            .await?
        {
            Response::Topic(t) => Ok(t),
            other => Err(ClientError::unexpected("TOPIC", &other)),
        }
    }

    /// Creates a topic unless one with this name exists; returns the topic either way.
    pub async fn ensure_topic(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<TopicInfo, ClientError> {
        match self.create_topic(name, config).await {
            Err(ClientError::Server {
                code: ErrorCode::TopicExists,
                ..
            }) => Ok(self.describe_topic(name).await?.topic),
            other => other,
        }
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        match self
            .request(Request::DeleteTopic {
                name: name.to_owned(),
            })
            .await?
        {
            Response::Ok => Ok(()),
            other => Err(ClientError::unexpected("OK", &other)),
        }
    }

    /// Lists every topic this client may see.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        match self.request(Request::ListTopics).await? {
            Response::Topics(t) => Ok(t),
            other => Err(ClientError::unexpected("TOPICS", &other)),
        }
    }

    /// Describes one topic and its partitions.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        match self
            .request(Request::DescribeTopic {
                name: name.to_owned(),
            })
            .await?
        {
            Response::TopicDescription { topic, partitions } => {
                Ok(TopicDescription { topic, partitions })
            }
            other => Err(ClientError::unexpected("TOPIC_DESCRIPTION", &other)),
        }
    }

    /// Server facts and the named topics (every visible topic when `topics` is empty).
    pub async fn metadata(&self, topics: &[&str]) -> Result<ClusterMetadata, ClientError> {
        let topics = topics.iter().map(|t| (*t).to_owned()).collect();
        match self.request(Request::Metadata { topics }).await? {
            Response::Metadata { shards, topics } => Ok(ClusterMetadata { shards, topics }),
            other => Err(ClientError::unexpected("METADATA_RESULT", &other)),
        }
    }

    /// The partition count of a topic.
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        Ok(self.topic_config(topic).await?.partitions)
    }

    /// A topic's configuration (partitions, durability, compression, ...).
    pub async fn topic_config(&self, topic: &str) -> Result<TopicConfig, ClientError> {
        let meta = self.metadata(&[topic]).await?;
        meta.topics
            .into_iter()
            .find(|t| t.name == topic)
            .map(|t| t.config)
            .ok_or_else(|| ClientError::Server {
                code: ErrorCode::UnknownTopic,
                detail: 0,
                message: format!("unknown topic {topic:?}"),
            })
    }

    /// Asks for a fresh idempotent producer id.
    pub async fn init_producer(&self) -> Result<ProducerIdentity, ClientError> {
        match self.request(Request::InitProducer).await? {
            Response::ProducerId { producer_id, epoch } => {
                Ok(ProducerIdentity { producer_id, epoch })
            }
            other => Err(ClientError::unexpected("PRODUCER_ID", &other)),
        }
    }

    /// Appends one batch (built with `BatchBuilder`) on the partition's lane; returns
    /// `(base offset, last offset)`, or none when `acks` is [`Acks::None`].
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        acks: Acks,
        expected_offset: Option<u64>,
        batch: Bytes,
    ) -> Result<Option<(u64, u64)>, ClientError> {
        let lane = self.lane_for(topic, partition);
        let request = Request::Produce {
            topic: topic.to_owned(),
            partition,
            acks,
            expected_offset,
            batch,
        };
        match self.call(lane, request).await? {
            Response::Produced { offsets } => Ok(offsets),
            other => Err(ClientError::unexpected("PRODUCED", &other)),
        }
    }

    /// Reads whole batches from `offset` (at least one batch when there is data),
    /// waiting up to `max_wait` for data at the high watermark.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait: Duration,
    ) -> Result<Fetched, ClientError> {
        let max_wait_ms = u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX);
        let request = Request::Fetch {
            topic: topic.to_owned(),
            partition,
            offset,
            max_bytes,
            max_wait_ms,
        };
        let timeout = self.inner.config.request_timeout + max_wait;
        let pending = self
            .submit_within(self.next_lane(), request, timeout)
            .await?;
        match pending.wait().await? {
            Response::Fetched {
                high_watermark,
                log_start_offset,
                batches,
            } => Ok(Fetched {
                high_watermark,
                log_start_offset,
                batches,
            }),
            other => Err(ClientError::unexpected("FETCHED", &other)),
        }
    }

    /// Looks up the earliest, the latest (high watermark) or a by-timestamp offset.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        query: OffsetQuery,
    ) -> Result<Option<u64>, ClientError> {
        match self
            .request(Request::ListOffset {
                topic: topic.to_owned(),
                partition,
                query,
            })
            .await?
        {
            Response::Offset(o) => Ok(o),
            other => Err(ClientError::unexpected("OFFSET", &other)),
        }
    }

    /// Joins (or, with `member_id`, re-joins) a consumer group.
    pub async fn join_group(
        &self,
        group: &str,
        member_id: Option<&str>,
        strategy: AssignmentStrategy,
        session_timeout: Duration,
        topics: &[String],
    ) -> Result<Membership, ClientError> {
        let session_timeout_ms = u32::try_from(session_timeout.as_millis()).unwrap_or(u32::MAX);
        let request = Request::JoinGroup {
            group: group.to_owned(),
            member_id: member_id.map(str::to_owned),
            strategy,
            session_timeout_ms,
            topics: topics.to_vec(),
        };
        membership(self.request(request).await?)
    }

    /// Keeps a member alive; returns the group's current generation and its partitions.
    pub async fn heartbeat(&self, group: &str, member_id: &str) -> Result<Membership, ClientError> {
        let request = Request::Heartbeat {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
        };
        membership(self.request(request).await?)
    }

    /// Leaves a group (its partitions go to the other members).
    pub async fn leave_group(&self, group: &str, member_id: &str) -> Result<(), ClientError> {
        let request = Request::LeaveGroup {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
        };
        match self.request(request).await? {
            Response::Ok => Ok(()),
            other => Err(ClientError::unexpected("OK", &other)),
        }
    }

    /// Commits the next offsets to consume, as `(member id, generation)` or, for offsets
    /// managed by hand in a group without members, with no member.
    pub async fn commit_offsets(
        &self,
        group: &str,
        member: Option<(&str, u32)>,
        offsets: Vec<(TopicPartition, u64)>,
    ) -> Result<(), ClientError> {
        let request = Request::CommitOffsets {
            group: group.to_owned(),
            member: member.map(|(m, g)| (m.to_owned(), g)),
            offsets,
        };
        match self.request(request).await? {
            Response::Ok => Ok(()),
            other => Err(ClientError::unexpected("OK", &other)),
        }
    }

    /// Reads committed offsets, in the order asked.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<Option<u64>>, ClientError> {
        let request = Request::FetchOffsets {
            group: group.to_owned(),
            partitions,
        };
        match self.request(request).await? {
            Response::Offsets(o) => Ok(o),
            other => Err(ClientError::unexpected("OFFSETS", &other)),
        }
    }

    /// Lists consumer groups.
    pub async fn list_groups(&self) -> Result<Vec<String>, ClientError> {
        match self.request(Request::ListGroups).await? {
            Response::Groups(g) => Ok(g),
            other => Err(ClientError::unexpected("GROUPS", &other)),
        }
    }

    /// Describes one consumer group (none when it does not exist).
    pub async fn describe_group(&self, group: &str) -> Result<Option<GroupSummary>, ClientError> {
        let request = Request::DescribeGroup {
            group: group.to_owned(),
        };
        match self.request(request).await? {
            Response::GroupDescription(g) => Ok(g),
            other => Err(ClientError::unexpected("GROUP_DESCRIPTION", &other)),
        }
    }
}

fn membership(response: Response) -> Result<Membership, ClientError> {
    match response {
        Response::Membership {
            member_id,
            generation,
            assignment,
        } => Ok(Membership {
            member_id,
            generation,
            assignment,
        }),
        other => Err(ClientError::unexpected("MEMBERSHIP", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_spread_partitions_and_are_stable() {
        assert_eq!(topic_hash("orders"), topic_hash("orders"));
        assert_ne!(topic_hash("orders"), topic_hash("orders2"));
        let lanes: std::collections::HashSet<u64> = (0..8u64)
            .map(|p| (topic_hash("t").wrapping_add(p)) % 4)
            .collect();
        assert_eq!(lanes.len(), 4, "consecutive partitions use every lane");
    }
}
