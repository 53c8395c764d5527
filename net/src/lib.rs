//! strata-net: the QUIC protocol, server, producer and consumer clients (not built yet; see issue 4).
