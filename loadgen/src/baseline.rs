//! The machine's physical limits, measured in the same run so the report can state
//! strata's throughput as a fraction of them:
//!
//! * [`disk_write`]: raw sequential write bandwidth of a directory — 1 MiB `pwrite`s to a
//!   temporary file in it, with `fdatasync` after every chunk ([`DiskSync::EachChunk`],
//!   the counterpart of acks `fsync`) or once at the end ([`DiskSync::AtEnd`], the
//!   counterpart of acks `written`/`none`). The final `fdatasync` is inside the timed
//!   interval in both modes, so the figure is sustained device bandwidth, not the speed
//!   of copying into the page cache (which strata, acknowledging from the page cache,
//!   may beat for short runs: a ratio above 1 is possible with acks `written`).
//! * [`quic_bulk`]: raw QUIC throughput of one bulk transfer over one bidirectional
//!   stream between two quinn endpoints of this process, on a given local address, with
//!   strata's transport windows ([`transport_config`]) and socket buffers, TLS 1.3 with a
//!   self-signed certificate (rustls, ring). Measured at the receiver, from the first
//!   received chunk to the end of the stream.
//!
//! MB means 10^6 bytes everywhere.

use bytes::Bytes;
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of one write of the disk baseline and one chunk of the QUIC baseline.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Stream receive window, as strata's server sets it (16 MiB).
pub const STREAM_RECEIVE_WINDOW: u32 = 16 << 20;
/// Connection receive window, as strata's server sets it (64 MiB).
pub const RECEIVE_WINDOW: u32 = 64 << 20;
/// Send window, as strata's server sets it (64 MiB).
pub const SEND_WINDOW: u64 = 64 << 20;
/// UDP socket buffer size requested, as strata's server requests it (8 MiB).
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;
/// ALPN of the bulk-transfer baseline.
pub const BULK_ALPN: &[u8] = b"strata-bulk";
/// Longest a QUIC baseline may take before it is abandoned.
pub const QUIC_TIMEOUT: Duration = Duration::from_secs(300);

/// When the disk baseline calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskSync {
    /// After every 1 MiB chunk (compare with acks `fsync`).
    EachChunk,
    /// Once, after the last chunk (compare with acks `written` or `none`).
    AtEnd,
}

/// The result of [`disk_write`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiskBaseline {
    /// Bytes written.
    pub bytes: u64,
    /// When it synced.
    pub sync: DiskSync,
    /// Seconds spent in `pwrite`.
    pub write_s: f64,
    /// Seconds spent in `fdatasync`.
    pub sync_s: f64,
    /// Bytes over write plus sync time, MB/s.
    pub mb_per_s: f64,
}

/// Fills `buf` with incompressible bytes (so no layer below can cheat by compressing).
fn fill_random(buf: &mut [u8], seed: u64) {
    let mut s = seed ^ 0x5851_f42d_4c95_7f2d;
    for chunk in buf.chunks_mut(8) {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let b = z.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Writes `mib` MiB sequentially in 1 MiB `pwrite`s to a temporary file in `dir`
/// (removed afterwards), syncing as `sync` says, and returns the bandwidth.
pub fn disk_write(dir: &Path, mib: u64, sync: DiskSync) -> io::Result<DiskBaseline> {
    let file = tempfile::tempfile_in(dir)?;
    let mut chunk = vec![0u8; CHUNK_BYTES];
    fill_random(&mut chunk, mib);
    let (mut write, mut synced) = (Duration::ZERO, Duration::ZERO);
    let mut offset = 0u64;
    for _ in 0..mib {
        let t = Instant::now();
        file.write_all_at(&chunk, offset)?;
        write += t.elapsed();
        offset += CHUNK_BYTES as u64;
        if sync == DiskSync::EachChunk {
            let t = Instant::now();
            file.sync_data()?;
            synced += t.elapsed();
        }
    }
    if sync == DiskSync::AtEnd {
        let t = Instant::now();
        file.sync_data()?;
        synced += t.elapsed();
    }
    let secs = (write + synced).as_secs_f64();
    Ok(DiskBaseline {
        bytes: offset,
        sync,
        write_s: write.as_secs_f64(),
        sync_s: synced.as_secs_f64(),
        mb_per_s: if secs > 0.0 {
            offset as f64 / secs / 1e6
        } else {
            0.0
        },
    })
}

/// The result of [`quic_bulk`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QuicBaseline {
    /// Bytes transferred.
    pub bytes: u64,
    /// Seconds from the first received chunk to the end of the stream.
    pub secs: f64,
    /// Bytes after the first chunk over that time, MB/s.
    pub mb_per_s: f64,
}

/// A QUIC baseline that could not run.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A socket or endpoint could not be set up.
    #[error("QUIC baseline: {context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The TLS or QUIC configuration failed.
    #[error("QUIC baseline: configuration: {0}")]
    Config(String),
    /// The connection or the transfer failed.
    #[error("QUIC baseline: transfer: {0}")]
    Transfer(String),
    /// The receiver got a different number of bytes than were sent.
    #[error("QUIC baseline: received {got} bytes of {sent}")]
    Short {
        /// Bytes received.
        got: u64,
        /// Bytes sent.
        sent: u64,
    },
    /// It took longer than [`QUIC_TIMEOUT`].
    #[error("QUIC baseline: no result after {0:?}")]
    Timeout(Duration),
}

/// The transport settings strata's server uses that matter for bulk throughput: stream
/// receive window 16 MiB, connection receive window 64 MiB, send window 64 MiB.
pub fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(quinn::VarInt::from_u32(RECEIVE_WINDOW))
        .send_window(SEND_WINDOW);
    strata_net::quic::tune(&mut t);
    t
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A UDP socket on `addr` with strata's buffer sizes (the kernel may cap them).
fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Server and client QUIC configurations sharing a fresh self-signed certificate.
fn configs() -> Result<(quinn::ServerConfig, quinn::ClientConfig), BaselineError> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let cfg = |e: &dyn std::fmt::Display| BaselineError::Config(e.to_string());
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).map_err(|e| cfg(&e))?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));

    let mut server_tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| cfg(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .map_err(|e| cfg(&e))?;
    server_tls.alpn_protocols = vec![BULK_ALPN.to_vec()];
    let server_crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).map_err(|e| cfg(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(Arc::new(transport_config()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(|e| cfg(&e))?;
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| cfg(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![BULK_ALPN.to_vec()];
    let client_crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).map_err(|e| cfg(&e))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(Arc::new(transport_config()));
    Ok((server, client))
}

/// Receives one bidirectional stream to its end; returns (bytes, bytes after the first
/// chunk, time from the first chunk to the end).
async fn receive(incoming: quinn::Incoming) -> Result<(u64, u64, Duration), BaselineError> {
    let tr = |e: &dyn std::fmt::Display| BaselineError::Transfer(e.to_string());
    let conn = incoming.await.map_err(|e| tr(&e))?;
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| tr(&e))?;
    let (mut total, mut first_len, mut first_at) = (0u64, 0u64, None);
    while let Some(chunk) = recv
        .read_chunk(usize::MAX, true)
        .await
        .map_err(|e| tr(&e))?
    {
        let len = chunk.bytes.len() as u64;
        if first_at.is_none() {
            first_at = Some(Instant::now());
            first_len = len;
        }
        total += len;
    }
    let elapsed = first_at.map_or(Duration::ZERO, |t| t.elapsed());
    // Tell the sender how much arrived, which is also its signal that we are done.
    send.write_all(&total.to_le_bytes())
        .await
        .map_err(|e| tr(&e))?;
    send.finish().map_err(|e| tr(&e))?;
    let _ = send.stopped().await;
    Ok((total, total - first_len, elapsed))
}

/// Sends `mib` MiB over one bidirectional stream to `addr`; returns what the receiver
/// reported receiving.
async fn send(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    mib: u64,
) -> Result<u64, BaselineError> {
    let tr = |e: &dyn std::fmt::Display| BaselineError::Transfer(e.to_string());
    let conn = endpoint
        .connect(addr, "localhost")
        .map_err(|e| tr(&e))?
        .await
        .map_err(|e| tr(&e))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| tr(&e))?;
    let mut chunk = vec![0u8; CHUNK_BYTES];
    fill_random(&mut chunk, 7);
    let chunk = Bytes::from(chunk);
    for _ in 0..mib {
        send.write_chunk(chunk.clone()).await.map_err(|e| tr(&e))?;
    }
    send.finish().map_err(|e| tr(&e))?;
    let reply = recv.read_to_end(8).await.map_err(|e| tr(&e))?;
    let got = <[u8; 8]>::try_from(reply.as_slice())
        .map(u64::from_le_bytes)
        .map_err(|_| BaselineError::Transfer("malformed receiver report".to_owned()))?;
    conn.close(0u32.into(), b"done");
    Ok(got)
}

/// Measures raw QUIC throughput: a server and a client endpoint on `ip` (port chosen by
/// the system), `mib` MiB over one bidirectional stream. Must run inside a tokio runtime
/// with the time and I/O drivers enabled (a multi-threaded one lets sender and receiver
/// use separate cores).
pub async fn quic_bulk(ip: IpAddr, mib: u64) -> Result<QuicBaseline, BaselineError> {
    let io = |context: &'static str| move |source| BaselineError::Io { context, source };
    let (server_config, client_config) = configs()?;
    let runtime = quinn::default_runtime().ok_or_else(|| {
        BaselineError::Config("no async runtime (call from inside tokio)".to_owned())
    })?;
    let server = quinn::Endpoint::new(
        strata_net::quic::endpoint_config(),
        Some(server_config),
        udp_socket(SocketAddr::new(ip, 0)).map_err(io("binding the server socket"))?,
        runtime.clone(),
    )
    .map_err(io("creating the server endpoint"))?;
    let addr = server
        .local_addr()
        .map_err(io("reading the server address"))?;
    let mut client = quinn::Endpoint::new(
        strata_net::quic::endpoint_config(),
        None,
        udp_socket(SocketAddr::new(ip, 0)).map_err(io("binding the client socket"))?,
        runtime,
    )
    .map_err(io("creating the client endpoint"))?;
    client.set_default_client_config(client_config);

    let accept = server.clone();
    let receiver = tokio::spawn(async move {
        match accept.accept().await {
            Some(incoming) => receive(incoming).await,
            None => Err(BaselineError::Transfer("server endpoint closed".to_owned())),
        }
    });
    let run = async {
        let reported = send(&client, addr, mib).await?;
        let (got, timed_bytes, elapsed) = receiver
            .await
            .map_err(|e| BaselineError::Transfer(e.to_string()))??;
        Ok::<_, BaselineError>((reported, got, timed_bytes, elapsed))
    };
    let result = tokio::time::timeout(QUIC_TIMEOUT, run).await;
    client.close(0u32.into(), b"done");
    server.close(0u32.into(), b"done");
    let (reported, got, timed_bytes, elapsed) =
        result.map_err(|_| BaselineError::Timeout(QUIC_TIMEOUT))??;
    let sent = mib * CHUNK_BYTES as u64;
    if got != sent || reported != sent {
        return Err(BaselineError::Short { got, sent });
    }
    let secs = elapsed.as_secs_f64();
    Ok(QuicBaseline {
        bytes: got,
        secs,
        mb_per_s: if secs > 0.0 {
            timed_bytes as f64 / secs / 1e6
        } else {
            0.0
        },
    })
}

/// [`quic_bulk`] on a runtime of its own (two worker threads: sender and receiver).
pub fn quic_bulk_blocking(ip: IpAddr, mib: u64) -> Result<QuicBaseline, BaselineError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| BaselineError::Io {
            context: "starting a runtime",
            source,
        })?;
    rt.block_on(quic_bulk(ip, mib))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn disk_baseline_writes_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        for sync in [DiskSync::EachChunk, DiskSync::AtEnd] {
            let b = disk_write(dir.path(), 4, sync).unwrap();
            assert_eq!(b.bytes, 4 << 20);
            assert_eq!(b.sync, sync);
            assert!(b.mb_per_s > 0.0 && b.write_s > 0.0, "{b:?}");
        }
        // The temporary file is gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(disk_write(&dir.path().join("missing"), 1, DiskSync::AtEnd).is_err());
    }

    #[test]
    fn quic_baseline_transfers_everything() {
        let b = quic_bulk_blocking(IpAddr::V4(Ipv4Addr::LOCALHOST), 8).unwrap();
        assert_eq!(b.bytes, 8 << 20);
        assert!(b.mb_per_s > 0.0 && b.secs > 0.0, "{b:?}");
    }

    #[test]
    fn transport_uses_strata_windows() {
        // The windows are what strata's server sets (net/src/server/mod.rs).
        assert_eq!(STREAM_RECEIVE_WINDOW, 16 << 20);
        assert_eq!(RECEIVE_WINDOW, 64 << 20);
        assert_eq!(SEND_WINDOW, 64 << 20);
        let _ = transport_config();
        assert!(configs().is_ok());
    }

    #[test]
    fn random_fill_is_not_constant() {
        let mut b = [0u8; 64];
        fill_random(&mut b, 1);
        assert!(b.windows(8).skip(1).all(|w| w != &b[..8]));
    }
}
