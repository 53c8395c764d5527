//! The server through raw protocol frames: handshake, requests, every error code,
//! subscriptions with credit, limits, restart and metrics.

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_log::format::{BatchBuilder, BatchIter, BuilderOptions};
use strata_log::{Durability, OffsetQuery, TopicConfig};
use strata_net::protocol::{Acks, ErrorCode, HEADER_LEN, Request, Response, VERSION, split_frame};
use strata_net::server::{Permission, Server, ServerConfig, TokenConfig};

fn config(dir: &Path) -> ServerConfig {
    ServerConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        pin_threads: false,
        ..ServerConfig::default()
    }
}

fn client_endpoint(cert: &Path) -> quinn::Endpoint {
    client_endpoint_with(cert, None)
}

/// A client endpoint trusting only `cert`, presenting `identity` (cert PEM, key PEM) if any.
fn client_endpoint_with(cert: &Path, identity: Option<(&Path, &Path)>) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    for c in strata_net::server::tls::load_certs(cert, "cert").unwrap() {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(strata_net::server::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some((c, k)) => builder
            .with_client_auth_cert(
                strata_net::server::tls::load_certs(c, "client cert").unwrap(),
                strata_net::server::tls::load_key(k).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![strata_net::protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep
}

/// A connection speaking raw frames on one stream.
struct Raw {
    _ep: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: BytesMut,
    next_id: u64,
}

impl Raw {
    async fn open(addr: SocketAddr, cert: &Path) -> Raw {
        let ep = client_endpoint(cert);
        let conn = ep.connect(addr, "localhost").unwrap().await.unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        Raw {
            _ep: ep,
            conn,
            send,
            recv,
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    /// Opens a connection and completes HELLO with `token`.
    async fn connect(server: &Server, token: &str) -> Raw {
        let mut raw = Raw::open(server.local_addr(), server.cert_path()).await;
        let hello = raw.hello(token).await;
        assert!(
            matches!(
                hello,
                Response::HelloOk {
                    version: VERSION,
                    shards: 2,
                    ..
                }
            ),
            "{hello:?}"
        );
        raw
    }

    async fn hello(&mut self, token: &str) -> Response {
        self.call(Request::Hello {
            version: VERSION,
            token: token.into(),
            client: "test".into(),
        })
        .await
    }

    async fn write(&mut self, req: &Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = BytesMut::new();
        let tail = req.encode(id, &mut out);
        self.send.write_all(&out).await.unwrap();
        if let Some(t) = tail {
            self.send.write_all(&t).await.unwrap();
        }
        id
    }

    async fn read(&mut self) -> (u64, Response) {
        loop {
            if let Some(f) = split_frame(&mut self.buf, 64 << 20).unwrap() {
                return (f.request_id, Response::decode(f.kind, f.body).unwrap());
            }
            let chunk = self
                .recv
                .read_chunk(1 << 20, true)
                .await
                .unwrap()
                .expect("stream ended while waiting for a response");
            self.buf.extend_from_slice(&chunk.bytes);
        }
    }

    async fn call(&mut self, req: Request) -> Response {
        let id = self.write(&req).await;
        let (got, resp) = self.read().await;
        assert_eq!(got, id);
        resp
    }

    /// Waits for the server to close the connection; returns (code, reason).
    async fn closed(&self) -> (u64, String) {
        match self.conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(c) => (
                c.error_code.into_inner(),
                String::from_utf8_lossy(&c.reason).into_owned(),
            ),
            other => panic!("closed without an application code: {other:?}"),
        }
    }
}

fn topic(partitions: u32, durability: Durability) -> TopicConfig {
    TopicConfig {
        partitions,
        segment_bytes: 1 << 20,
        durability,
        ..TopicConfig::default()
    }
}

fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(BuilderOptions::default());
    for (i, v) in values.iter().enumerate() {
        b.push(i as i64, None, Some(v.as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap().freeze()
}

fn values(batches: &[u8], from: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for b in BatchIter::new(batches) {
        let b = b.unwrap();
        let base = b.header().base_offset;
        for (i, r) in b.records(&mut scratch).unwrap().enumerate() {
            let r = r.unwrap();
            let offset = base + i as u64;
            if offset >= from {
                out.push((
                    offset,
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                ));
            }
        }
    }
    out
}

fn error_code(r: &Response) -> ErrorCode {
    match r {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn admin(server: &Server) -> String {
    server
        .admin_token()
        .expect("generated admin token")
        .1
        .to_owned()
}

fn produce(topic: &str, partition: u32, acks: Acks, b: Bytes) -> Request {
    Request::Produce {
        topic: topic.into(),
        partition,
        acks,
        expected_offset: None,
        batch: b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_and_admin_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).unwrap();
    let mut c = Raw::connect(&server, &admin(&server)).await;

    let created = c
        .call(Request::CreateTopic {
            name: "orders".into(),
            config: topic(2, Durability::Written),
        })
        .await;
    assert!(
        matches!(&created, Response::Topic(t) if t.name == "orders" && t.config.partitions == 2)
    );
    assert_eq!(
        error_code(
            &c.call(Request::CreateTopic {
                name: "orders".into(),
                config: topic(1, Durability::Written)
            })
            .await
        ),
        ErrorCode::TopicExists
    );

    for p in 0..2 {
        let r = c
            .call(produce("orders", p, Acks::Written, batch(&["a", "b"])))
            .await;
        assert_eq!(
            r,
            Response::Produced {
                offsets: Some((0, 1))
            }
        );
        let r = c
            .call(produce("orders", p, Acks::Written, batch(&["c"])))
            .await;
        assert_eq!(
            r,
            Response::Produced {
                offsets: Some((2, 2))
            }
        );
    }
    let r = c
        .call(Request::Fetch {
            topic: "orders".into(),
            partition: 1,
            offset: 1,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        })
        .await;
    let Response::Fetched {
        high_watermark,
        log_start_offset,
        batches,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!((high_watermark, log_start_offset), (3, 0));
    assert_eq!(values(&batches, 1), vec![(1, "b".into()), (2, "c".into())]);

    let r = c
        .call(Request::ListOffset {
            topic: "orders".into(),
            partition: 0,
            query: OffsetQuery::Latest,
        })
        .await;
    assert_eq!(r, Response::Offset(Some(3)));

    let Response::TopicDescription { partitions, .. } = c
        .call(Request::DescribeTopic {
            name: "orders".into(),
        })
        .await
    else {
        panic!()
    };
    assert_eq!(
        partitions
            .iter()
            .map(|p| p.high_watermark)
            .collect::<Vec<_>>(),
        vec![3, 3]
    );
    let Response::Metadata { shards, topics } = c.call(Request::Metadata { topics: vec![] }).await
    else {
        panic!()
    };
    assert_eq!((shards, topics.len()), (2, 1));
    assert_eq!(
        c.call(Request::DeleteTopic {
            name: "orders".into()
        })
        .await,
        Response::Ok
    );
    assert_eq!(c.call(Request::ListTopics).await, Response::Topics(vec![]));
    drop(c);
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produces_on_one_stream_append_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).unwrap();
    let mut c = Raw::connect(&server, &admin(&server)).await;
    c.call(Request::CreateTopic {
        name: "t".into(),
        config: topic(1, Durability::Written),
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..200 {
        let v = format!("v{i}");
        ids.push(c.write(&produce("t", 0, Acks::Written, batch(&[&v]))).await);
    }
    let mut offsets = std::collections::HashMap::new();
    for _ in 0..200 {
        let (id, r) = c.read().await;
        let Response::Produced {
            offsets: Some((base, _)),
        } = r
        else {
            panic!("{r:?}")
        };
        offsets.insert(id, base);
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(offsets[id], i as u64, "request {i} appended out of order");
    }
    drop(c);
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_carry_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).unwrap();
    let mut c = Raw::connect(&server, &admin(&server)).await;
    c.call(Request::CreateTopic {
        name: "w".into(),
        config: topic(1, Durability::Written),
    })
    .await;

    // Unknown topic and partition.
    let r = c
        .call(produce("nope", 0, Acks::Written, batch(&["x"])))
        .await;
    assert_eq!(error_code(&r), ErrorCode::UnknownTopic);
    let r = c.call(produce("w", 9, Acks::Written, batch(&["x"]))).await;
    assert_eq!(error_code(&r), ErrorCode::UnknownPartition);

    // A flipped bit in the records: CRC mismatch, nothing appended.
    let mut bad = BytesMut::from(&batch(&["hello"])[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let r = c.call(produce("w", 0, Acks::Written, bad.freeze())).await;
    assert_eq!(error_code(&r), ErrorCode::CrcMismatch);

    // Acks above the topic's durability.
    let r = c.call(produce("w", 0, Acks::Fsync, batch(&["x"]))).await;
    assert_eq!(error_code(&r), ErrorCode::InvalidRequest);

    // Conditional append against the wrong offset: conflict with the actual offset.
    c.call(produce("w", 0, Acks::Written, batch(&["a", "b"])))
        .await;
    let r = c
        .call(Request::Produce {
            topic: "w".into(),
            partition: 0,
            acks: Acks::Written,
            expected_offset: Some(7),
            batch: batch(&["c"]),
        })
        .await;
    assert!(
        matches!(
            r,
            Response::Error {
                code: ErrorCode::Conflict,
                detail: 2,
                ..
            }
        ),
        "{r:?}"
    );
    // Offset out of range.
    let r = c
        .call(Request::Fetch {
            topic: "w".into(),
            partition: 0,
            offset: 99,
            max_bytes: 1024,
            max_wait_ms: 0,
        })
        .await;
    assert!(
        matches!(
            r,
            Response::Error {
                code: ErrorCode::OffsetOutOfRange,
                detail: 2,
                ..
            }
        ),
        "{r:?}"
    );
    // Acks none: answered without offsets, and the data is there.
    let r = c.call(produce("w", 0, Acks::None, batch(&["z"]))).await;
    assert_eq!(r, Response::Produced { offsets: None });
    drop(c);
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_permissions_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.auth.tokens = vec![
        TokenConfig {
            token: "root".into(),
            permissions: vec![Permission::Admin, Permission::Produce, Permission::Consume],
            topics: vec!["*".into()],
        },
        TokenConfig {
            token: "reader".into(),
            permissions: vec![Permission::Consume],
            topics: vec!["public-*".into()],
        },
    ];
    let server = Server::start(cfg).unwrap();
    assert!(
        server.admin_token().is_none(),
        "tokens configured: none generated"
    );

    // No token: refused with UNAUTHORIZED, connection closed.
    let mut anon = Raw::open(server.local_addr(), server.cert_path()).await;
    let r = anon.hello("").await;
    assert_eq!(error_code(&r), ErrorCode::Unauthorized);
    let (code, _) = anon.closed().await;
    assert_eq!(code, ErrorCode::Unauthorized as u64);
    // Wrong token likewise.
    let mut wrong = Raw::open(server.local_addr(), server.cert_path()).await;
    assert_eq!(
        error_code(&wrong.hello("guess").await),
        ErrorCode::Unauthorized
    );

    let mut root = Raw::connect(&server, "root").await;
    for name in ["public-news", "private"] {
        root.call(Request::CreateTopic {
            name: name.into(),
            config: topic(1, Durability::Written),
        })
        .await;
        root.call(produce(name, 0, Acks::Written, batch(&["x"])))
            .await;
    }
    let mut reader = Raw::connect(&server, "reader").await;
    let fetch = |t: &str| Request::Fetch {
        topic: t.into(),
        partition: 0,
        offset: 0,
        max_bytes: 1024,
        max_wait_ms: 0,
    };
    assert!(matches!(
        reader.call(fetch("public-news")).await,
        Response::Fetched { .. }
    ));
    assert_eq!(
        error_code(&reader.call(fetch("private")).await),
        ErrorCode::Unauthorized
    );
    let r = reader
        .call(produce("public-news", 0, Acks::Written, batch(&["y"])))
        .await;
    assert_eq!(error_code(&r), ErrorCode::Unauthorized);
    let r = reader
        .call(Request::CreateTopic {
            name: "public-x".into(),
            config: topic(1, Durability::Written),
        })
        .await;
    assert_eq!(error_code(&r), ErrorCode::Unauthorized);
    let Response::Topics(visible) = reader.call(Request::ListTopics).await else {
        panic!()
    };
    assert_eq!(
        visible.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["public-news"]
    );
    drop((root, reader));
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_only_the_offending_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_frame_bytes = 64 * 1024;
    cfg.limits.max_inflight_bytes = 1 << 20;
    let server = Server::start(cfg).unwrap();
    let token = admin(&server);
    let mut good = Raw::connect(&server, &token).await;
    good.call(Request::CreateTopic {
        name: "t".into(),
        config: topic(1, Durability::Written),
    })
    .await;

    // Garbage after the handshake: malformed frame.
    let mut bad = Raw::connect(&server, &token).await;
    let mut junk = vec![0u8; HEADER_LEN];
    junk[4] = 0x7e; // unknown request kind, empty body
    bad.send.write_all(&junk).await.unwrap();
    let (code, reason) = bad.closed().await;
    assert_eq!(code, ErrorCode::MalformedFrame as u64, "{reason}");

    // Nonzero reserved bits in the header.
    let mut bad = Raw::connect(&server, &token).await;
    let mut out = BytesMut::new();
    Request::ListTopics.encode(1, &mut out);
    out[6] = 1;
    bad.send.write_all(&out).await.unwrap();
    assert_eq!(bad.closed().await.0, ErrorCode::MalformedFrame as u64);

    // A frame over the limit: refused from its header alone.
    let mut big = Raw::connect(&server, &token).await;
    let huge = Bytes::from(vec![0u8; 100 * 1024]);
    let id = big.next_id;
    let mut out = BytesMut::new();
    produce("t", 0, Acks::Written, huge).encode(id, &mut out);
    big.send.write_all(&out).await.unwrap();
    assert_eq!(big.closed().await.0, ErrorCode::FrameTooLarge as u64);

    // The wrong protocol version.
    let mut old = Raw::open(server.local_addr(), server.cert_path()).await;
    let r = old
        .call(Request::Hello {
            version: VERSION + 1,
            token: token.clone(),
            client: "future".into(),
        })
        .await;
    assert_eq!(error_code(&r), ErrorCode::UnsupportedVersion);
    assert_eq!(old.closed().await.0, ErrorCode::UnsupportedVersion as u64);

    // A request before HELLO.
    let mut rude = Raw::open(server.local_addr(), server.cert_path()).await;
    rude.write(&Request::ListTopics).await;
    assert_eq!(rude.closed().await.0, ErrorCode::MalformedFrame as u64);

    // The well-behaved connection is untouched.
    let r = good
        .call(produce("t", 0, Acks::Written, batch(&["still fine"])))
        .await;
    assert_eq!(
        r,
        Response::Produced {
            offsets: Some((0, 0))
        }
    );
    drop(good);
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_throttles() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_connections = 1;
    let server = Server::start(cfg).unwrap();
    let token = admin(&server);
    let first = Raw::connect(&server, &token).await;
    let ep = client_endpoint(server.cert_path());
    let second = ep
        .connect(server.local_addr(), "localhost")
        .unwrap()
        .await
        .unwrap();
    match second.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                c.error_code.into_inner(),
                ErrorCode::Throttled as u64,
                "{c:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    drop(first);
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_pushes_durable_batches_within_credit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).unwrap();
    let token = admin(&server);
    let mut producer = Raw::connect(&server, &token).await;
    producer
        .call(Request::CreateTopic {
            name: "s".into(),
            config: topic(1, Durability::Written),
        })
        .await;
    let one = batch(&["0123456789"]);
    let batch_len = one.len() as u32;
    for _ in 0..3 {
        producer
            .call(produce("s", 0, Acks::Written, one.clone()))
            .await;
    }

    let mut sub = Raw::connect(&server, &token).await;
    // A fresh stream for the subscription, with credit for exactly two batches.
    let (send, recv) = sub.conn.open_bi().await.unwrap();
    sub.send = send;
    sub.recv = recv;
    sub.buf.clear();
    let id = sub
        .write(&Request::Subscribe {
            topic: "s".into(),
            partition: 0,
            offset: 0,
            credit: 2 * batch_len,
        })
        .await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let (rid, r) = sub.read().await;
        assert_eq!(rid, id);
        let Response::Data { batches, .. } = r else {
            panic!("{r:?}")
        };
        got.extend(values(&batches, got.len() as u64));
    }
    assert_eq!(got.len(), 2);
    // Out of credit: the third batch must not arrive until more is granted.
    let early = tokio::time::timeout(Duration::from_millis(300), sub.read()).await;
    assert!(early.is_err(), "pushed past the credit: {early:?}");
    let mut out = BytesMut::new();
    Request::Credit {
        bytes: 10 * batch_len,
    }
    .encode(id, &mut out);
    sub.send.write_all(&out).await.unwrap();
    let (_, r) = sub.read().await;
    let Response::Data { batches, .. } = r else {
        panic!()
    };
    assert_eq!(values(&batches, 2), vec![(2, "0123456789".to_string())]);
    // New data is pushed as it becomes durable.
    producer
        .call(produce("s", 0, Acks::Written, batch(&["live"])))
        .await;
    let (_, r) = sub.read().await;
    let Response::Data { batches, .. } = r else {
        panic!()
    };
    assert_eq!(values(&batches, 3), vec![(3, "live".to_string())]);
    drop((producer, sub));
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_a_restart_and_metrics_count_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = Server::start(cfg.clone()).unwrap();
    let token = admin(&server);
    let cert = std::fs::read(server.cert_path()).unwrap();
    let mut c = Raw::connect(&server, &token).await;
    c.call(Request::CreateTopic {
        name: "d".into(),
        config: topic(1, Durability::Fsync),
    })
    .await;
    let r = c
        .call(produce("d", 0, Acks::Fsync, batch(&["kept", "too"])))
        .await;
    assert_eq!(
        r,
        Response::Produced {
            offsets: Some((0, 1))
        }
    );

    let metrics_addr = server.metrics_addr().unwrap();
    let text = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(metrics_addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .await
    .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("strata_messages_in_total{topic=\"d\"} 2"),
        "{text}"
    );
    assert!(text.contains("strata_connections 1"), "{text}");
    assert!(
        text.contains("strata_produce_latency_seconds_count 1"),
        "{text}"
    );

    drop(c);
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
    let server = Server::start(cfg).unwrap();
    assert_eq!(
        std::fs::read(server.cert_path()).unwrap(),
        cert,
        "certificate reused"
    );
    assert_eq!(admin(&server), token, "admin token reused");
    let mut c = Raw::connect(&server, &token).await;
    let r = c
        .call(Request::Fetch {
            topic: "d".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        })
        .await;
    let Response::Fetched { batches, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        values(&batches, 0),
        vec![(0, "kept".into()), (1, "too".into())]
    );
    drop(c);
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_pin_the_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).unwrap();
    // Another server's self-signed certificate: the handshake must fail.
    let other = tempfile::tempdir().unwrap();
    let impostor = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let impostor_pem = other.path().join("other.pem");
    std::fs::write(&impostor_pem, impostor.cert.pem()).unwrap();
    let ep = client_endpoint(&impostor_pem);
    let attempt = ep.connect(server.local_addr(), "localhost").unwrap().await;
    assert!(
        attempt.is_err(),
        "connected while pinning another certificate"
    );
    // The pinned one works.
    Raw::connect(&server, &admin(&server)).await;
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        pki.path().join("ca.pem"),
        pki.path().join("client.pem"),
        pki.path().join("client.key"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, client_cert.pem()).unwrap();
    std::fs::write(&key_pem, client_key.serialize_pem()).unwrap();

    let mut cfg = config(dir.path());
    cfg.tls.client_ca = Some(ca_pem);
    let server = Server::start(cfg).unwrap();
    let token = admin(&server);

    // Without a client certificate the server refuses the TLS handshake.
    let ep = client_endpoint(server.cert_path());
    let refused = match ep.connect(server.local_addr(), "localhost").unwrap().await {
        Err(_) => true,
        // TLS 1.3 may report the refusal only once the client uses the connection.
        Ok(conn) => match conn.open_bi().await {
            Err(_) => true,
            Ok((mut send, mut recv)) => {
                let mut out = BytesMut::new();
                Request::Hello {
                    version: VERSION,
                    token: token.clone(),
                    client: "x".into(),
                }
                .encode(1, &mut out);
                let _ = send.write_all(&out).await;
                recv.read_chunk(1024, true).await.is_err()
            }
        },
    };
    assert!(refused, "served a client without a certificate");

    // With one signed by the CA it works.
    let ep = client_endpoint_with(server.cert_path(), Some((&cert_pem, &key_pem)));
    let conn = ep
        .connect(server.local_addr(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut out = BytesMut::new();
    Request::Hello {
        version: VERSION,
        token,
        client: "mtls".into(),
    }
    .encode(1, &mut out);
    send.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let frame = loop {
        if let Some(f) = split_frame(&mut buf, 1 << 20).unwrap() {
            break f;
        }
        let chunk = recv.read_chunk(1 << 16, true).await.unwrap().unwrap();
        buf.extend_from_slice(&chunk.bytes);
    };
    let r = Response::decode(frame.kind, frame.body).unwrap();
    assert!(matches!(r, Response::HelloOk { .. }), "{r:?}");
    drop((conn, ep));
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}
