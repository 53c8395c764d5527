//! Async QUIC clients: a multiplexed [`Client`] connection, a batching idempotent
//! [`Producer`], and a [`Consumer`] with push subscriptions, consumer groups, offset
//! commits and retry / dead-letter topics.
//!
//! ```no_run
//! # async fn demo() -> Result<(), strata_net::client::ClientError> {
//! use std::time::Duration;
//! use strata_net::client::{
//!     Client, ClientConfig, Consumer, ConsumerConfig, GroupConfig, Producer, ProducerConfig,
//! };
//!
//! let config = ClientConfig::new("127.0.0.1:7171".parse().unwrap(), "cert.pem")
//!     .with_token("secret");
//! let client = Client::connect(config).await?;
//!
//! let producer = Producer::new(client.clone(), ProducerConfig::default()).await?;
//! let delivered = producer.send("events", Some(b"device-7"), b"{\"t\":21}", &[]).await?;
//! let meta = delivered.await?; // partition and offset
//! producer.close().await?;
//!
//! let mut consumer = Consumer::new(
//!     client,
//!     ConsumerConfig::new(["events"]).with_group(GroupConfig::new("readers")),
//! )
//! .await?;
//! for record in consumer.poll(Duration::from_secs(1)).await? {
//!     // process record.value ...
//! }
//! consumer.commit().await?; // at-least-once: commit after processing
//! consumer.close().await?;
//! # let _ = meta;
//! # Ok(())
//! # }
//! ```

mod config;
mod connection;
mod consumer;
mod error;
mod producer;
mod records;
mod subscription;
#[cfg(test)]
mod tests;

pub use config::{Backoff, ClientConfig};
pub use connection::{
    Client, ClusterMetadata, Fetched, PendingResponse, ProducerIdentity, ServerInfo,
    TopicDescription,
};
pub use consumer::{
    Consumer, ConsumerConfig, DLQ_SUFFIX, GroupConfig, HEADER_ATTEMPT, HEADER_ORIGINAL_OFFSET,
    HEADER_ORIGINAL_PARTITION, HEADER_ORIGINAL_TOPIC, HEADER_REASON, RETRY_SUFFIX, RetryPolicy,
    StartFrom,
};
pub use error::ClientError;
pub use producer::{DeliveryFuture, Producer, ProducerConfig, RecordMetadata};
pub use records::{ConsumedBatch, ConsumedRecord, RecordDecoder, next_offset, split_batches};
pub use subscription::{Data, Subscription};
