//! strata-net: the QUIC front end of strata — the wire protocol, the server, and the
//! async producer and consumer clients.

pub mod cli;
pub mod client;
pub mod protocol;
pub mod quic;
pub mod server;
