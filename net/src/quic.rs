//! QUIC transport settings shared by the server, the clients and the load generator's
//! raw baseline: acknowledgement frequency, datagram size and the initial congestion
//! window.
//!
//! Acknowledgements: by RFC 9000's default a receiver acknowledges every second
//! ack-eliciting packet, so a stream of small requests and answers carries nearly one
//! ACK-only datagram per packet (measured: a quarter of all datagrams on loopback at
//! 100 k msgs/s). strata asks its peers, through the QUIC ACK Frequency extension, to
//! acknowledge every [`ACK_ELICITING_THRESHOLD`] packets or after [`MAX_ACK_DELAY`]; the
//! latency strata reports rides on its own responses, not on QUIC ACKs.
//!
//! Datagram size: QUIC starts a path at 1200-byte datagrams and raises that by path MTU
//! discovery (DPLPMTUD, RFC 9000 §14.3) up to a bound, 1452 (Ethernet) in quinn. Loopback
//! and jumbo-frame networks carry far more, and every datagram costs a share of a
//! syscall, a header, an AEAD seal and open and an ACK range. strata probes up to
//! [`MTU_UPPER_BOUND`]: probes that are too large are lost and the search settles on what
//! the path carries (a later black hole drops the size back to 1200 and searches again).
//! The bound is not the 65527-byte protocol maximum because quinn hands the kernel up to
//! [`GSO_SEGMENTS`] datagrams of one size in one segmentation-offload send, and Linux
//! refuses a send whose total exceeds one IPv4 UDP payload.
//!
//! Initial window: quinn lets congestion control hold back a CONNECTION_CLOSE whose
//! packet counts as ack-eliciting, and counts a whole datagram of the current size
//! against the window. With 6.5 KB datagrams, the RFC 9002 initial window (14720 bytes)
//! is full after two of them, so a connection closed in its first milliseconds (MTU
//! probes in flight) never sent its CONNECTION_CLOSE and the peer waited for its request
//! timeout (seen in about half the runs of `unreachable_servers_fail_within_the_configured_times`).
//! strata starts the window at [`INITIAL_WINDOW`], ten datagrams of the largest size, the
//! same ten-packet start as TCP's and RFC 9002's rule without its 14720-byte cap.

use std::sync::Arc;
use std::time::Duration;

/// Ack-eliciting packets a peer may receive before it must acknowledge.
pub const ACK_ELICITING_THRESHOLD: u32 = 8;

/// Longest a peer may hold an acknowledgement back when fewer packets arrived.
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(2);

/// Largest UDP payload strata accepts from peers (the protocol maximum).
pub const MAX_UDP_PAYLOAD: u16 = 65_527;

/// Datagrams quinn puts in one segmentation-offload send (quinn's `MAX_TRANSMIT_SEGMENTS`).
pub const GSO_SEGMENTS: u16 = 10;

/// Largest UDP payload of one IPv4 send (65535 less the IP and UDP headers).
const MAX_IPV4_UDP_PAYLOAD: u16 = 65_507;

/// Largest datagram MTU discovery probes for (6550 bytes): a full offload batch of them
/// still fits one send.
pub const MTU_UPPER_BOUND: u16 = MAX_IPV4_UDP_PAYLOAD / GSO_SEGMENTS;

/// Initial congestion window, bytes: ten datagrams of [`MTU_UPPER_BOUND`].
pub const INITIAL_WINDOW: u64 = 10 * MTU_UPPER_BOUND as u64;

// A full offload batch of the largest datagrams fits one IPv4 send; the bound is above
// quinn's default; the initial window holds the probes in flight and a close besides.
const _: () = assert!(MTU_UPPER_BOUND as u32 * GSO_SEGMENTS as u32 <= MAX_IPV4_UDP_PAYLOAD as u32);
const _: () = assert!(MTU_UPPER_BOUND > 1452 && MTU_UPPER_BOUND <= MAX_UDP_PAYLOAD);
const _: () = assert!(INITIAL_WINDOW >= 2 * MTU_UPPER_BOUND as u64 + 14_720);

/// How long MTU discovery waits after a black hole before searching again.
const BLACK_HOLE_COOLDOWN: Duration = Duration::from_secs(10);

/// An endpoint configuration that accepts datagrams up to [`MAX_UDP_PAYLOAD`].
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .expect("MAX_UDP_PAYLOAD is within QUIC's bounds");
    config
}

/// Applies strata's acknowledgement frequency, datagram size and initial window to `t`.
pub fn tune(t: &mut quinn::TransportConfig) {
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(quinn::VarInt::from_u32(ACK_ELICITING_THRESHOLD))
        .max_ack_delay(Some(MAX_ACK_DELAY));
    t.ack_frequency_config(Some(acks));
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND)
        .black_hole_cooldown(BLACK_HOLE_COOLDOWN);
    t.mtu_discovery_config(Some(mtu));
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(INITIAL_WINDOW);
    t.congestion_controller_factory(Arc::new(cubic));
}

/// A client-only endpoint on `bind` that accepts datagrams up to [`MAX_UDP_PAYLOAD`]
/// (must be called inside a tokio runtime).
pub fn client_endpoint(bind: std::net::SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime (call from inside tokio)"))?;
    let socket = std::net::UdpSocket::bind(bind)?;
    quinn::Endpoint::new(endpoint_config(), None, socket, runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_the_largest_datagrams() {
        assert_eq!(
            endpoint_config().get_max_udp_payload_size(),
            u64::from(MAX_UDP_PAYLOAD)
        );
    }
}
