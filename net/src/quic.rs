//! QUIC transport settings shared by the server, the clients and the load generator's
//! raw baseline.
//!
//! Acknowledgements: by RFC 9000's default a receiver acknowledges every second
//! ack-eliciting packet, so a stream of small requests and answers carries nearly one
//! ACK-only datagram per packet (measured: a quarter of all datagrams on loopback at
//! 100 k msgs/s). strata asks its peers, through the QUIC ACK Frequency extension, to
//! acknowledge every [`ACK_ELICITING_THRESHOLD`] packets or after [`MAX_ACK_DELAY`]; the
//! latency strata reports rides on its own responses, not on QUIC ACKs.
//!
//! Path MTU: left at quinn's discovery bound (1452). Probing higher cut loopback CPU per
//! byte (raw bulk 854 vs 520 MB/s in one session) but made a server's CONNECTION_CLOSE
//! sent right after the handshake go missing about half the time
//! (`unreachable_servers_fail_within_the_configured_times`), so it waits for a fix.

use std::time::Duration;

/// Ack-eliciting packets a peer may receive before it must acknowledge.
pub const ACK_ELICITING_THRESHOLD: u32 = 8;

/// Longest a peer may hold an acknowledgement back when fewer packets arrived.
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(2);

/// Asks the peer of a connection configured with `t` to acknowledge every
/// [`ACK_ELICITING_THRESHOLD`] packets or after [`MAX_ACK_DELAY`].
pub fn tune_acks(t: &mut quinn::TransportConfig) {
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(quinn::VarInt::from_u32(ACK_ELICITING_THRESHOLD))
        .max_ack_delay(Some(MAX_ACK_DELAY));
    t.ack_frequency_config(Some(acks));
}
