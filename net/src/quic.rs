//! QUIC settings shared by the server, the clients and the load generator's raw
//! baseline: the largest UDP payload an endpoint accepts and probes for.
//!
//! QUIC starts every path at 1200-byte datagrams and raises that with path MTU discovery
//! (DPLPMTUD, RFC 9000 §14.3) up to an upper bound. quinn's default bound is 1452
//! (Ethernet), which on loopback or a jumbo-frame network leaves much of the per-packet
//! cost (a share of a syscall, a header, an AEAD seal and open, an ACK range) on the
//! table. Probing higher is safe on any path: probes that are too large are lost and the
//! search settles on what the path carries; a later black hole drops the size back to
//! 1200 and searches again.
//!
//! The bound is [`MTU_UPPER_BOUND`], not the 65527-byte protocol maximum: quinn hands the
//! kernel up to [`GSO_SEGMENTS`] datagrams of one size in one segmentation-offload send,
//! and Linux refuses (EMSGSIZE) a send whose total exceeds one IPv4 UDP payload, so
//! larger datagrams would turn every full batch into a loss.

use std::time::Duration;

/// Largest UDP payload strata accepts from peers (the protocol maximum, 65527 bytes).
pub const MAX_UDP_PAYLOAD: u16 = 65_527;

/// Datagrams quinn puts in one segmentation-offload send (quinn's `MAX_TRANSMIT_SEGMENTS`).
pub const GSO_SEGMENTS: u16 = 10;

/// Largest UDP payload of one IPv4 send (65535 less the IP and UDP headers).
const MAX_IPV4_UDP_PAYLOAD: u16 = 65_507;

/// Largest datagram MTU discovery probes for: a full offload batch of them still fits
/// one send (6550 bytes).
pub const MTU_UPPER_BOUND: u16 = MAX_IPV4_UDP_PAYLOAD / GSO_SEGMENTS;

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

/// Ack-eliciting packets a peer may receive before it must acknowledge (QUIC ACK
/// Frequency extension; the RFC 9000 default acknowledges every second packet).
pub const ACK_ELICITING_THRESHOLD: u32 = 8;

/// Longest a peer may hold an acknowledgement back when fewer packets arrived.
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(2);

/// Asks the peer of a connection configured with `t` to acknowledge every
/// [`ACK_ELICITING_THRESHOLD`] packets or after [`MAX_ACK_DELAY`] (fewer ACK-only packets;
/// strata's responses, not QUIC ACKs, carry its latency).
pub fn tune_acks(t: &mut quinn::TransportConfig) {
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(quinn::VarInt::from_u32(ACK_ELICITING_THRESHOLD))
        .max_ack_delay(Some(MAX_ACK_DELAY));
    t.ack_frequency_config(Some(acks));
}

/// Sets path MTU discovery on `t` to search up to [`MTU_UPPER_BOUND`].
pub fn tune_mtu(t: &mut quinn::TransportConfig) {
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND)
        .black_hole_cooldown(BLACK_HOLE_COOLDOWN);
    t.mtu_discovery_config(Some(mtu));
}
