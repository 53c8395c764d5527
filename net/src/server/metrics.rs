//! Server metrics in Prometheus text format, served over HTTP.
//!
//! Counters are per topic (rates come from `rate()` in Prometheus); latencies are
//! histograms; consumer lag is computed from the engine when the endpoint is scraped.
//! Counter handles are looked up per request (per batch), never per message.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strata_log::Engine;
use strata_log::engine::TopicPartition;

/// Label set of per-topic series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TopicLabel {
    /// Topic name.
    pub topic: String,
}

/// Label set of consumer lag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LagLabel {
    /// Group name.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

/// Every series the server exports.
pub struct Metrics {
    registry: Registry,
    /// Records appended, per topic.
    pub messages_in: Family<TopicLabel, Counter>,
    /// Batch bytes appended, per topic.
    pub bytes_in: Family<TopicLabel, Counter>,
    /// Batch bytes sent to consumers (fetch and push), per topic.
    pub bytes_out: Family<TopicLabel, Counter>,
    /// Records sent to consumers, per topic (counted from batch headers).
    pub messages_out: Family<TopicLabel, Counter>,
    /// Time from receiving a PRODUCE to answering it.
    pub produce_latency: Histogram,
    /// Time from receiving a FETCH to answering it (including any wait for data).
    pub fetch_latency: Histogram,
    /// Open connections.
    pub connections: Gauge,
    /// Committed offset behind the high watermark, per group and partition.
    pub consumer_lag: Family<LagLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every series registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("strata");
        let m = Metrics {
            registry: Registry::default(),
            messages_in: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            messages_out: Family::default(),
            produce_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            fetch_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            connections: Gauge::default(),
            consumer_lag: Family::default(),
        };
        registry.register("messages_in", "Records appended", m.messages_in.clone());
        registry.register("bytes_in", "Batch bytes appended", m.bytes_in.clone());
        registry.register(
            "messages_out",
            "Records sent to consumers",
            m.messages_out.clone(),
        );
        registry.register(
            "bytes_out",
            "Batch bytes sent to consumers",
            m.bytes_out.clone(),
        );
        registry.register(
            "produce_latency_seconds",
            "Time from receiving a produce request to answering it",
            m.produce_latency.clone(),
        );
        registry.register(
            "fetch_latency_seconds",
            "Time from receiving a fetch request to answering it",
            m.fetch_latency.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages between a group's committed offset and the high watermark",
            m.consumer_lag.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts an appended batch.
    pub fn produced(&self, topic: &str, records: u64, bytes: u64, latency: Duration) {
        let label = TopicLabel {
            topic: topic.to_owned(),
        };
        self.messages_in.get_or_create(&label).inc_by(records);
        self.bytes_in.get_or_create(&label).inc_by(bytes);
        self.produce_latency.observe(latency.as_secs_f64());
    }

    /// Counts batches sent to a consumer.
    pub fn consumed(&self, topic: &str, records: u64, bytes: u64) {
        let label = TopicLabel {
            topic: topic.to_owned(),
        };
        self.messages_out.get_or_create(&label).inc_by(records);
        self.bytes_out.get_or_create(&label).inc_by(bytes);
    }

    /// Recomputes consumer lag from the engine (blocking: call off the shard threads).
    pub fn refresh_lag(&self, engine: &Engine) {
        self.consumer_lag.clear();
        let Ok(groups) = engine.list_groups() else {
            return;
        };
        let mut high = std::collections::HashMap::<TopicPartition, u64>::new();
        for group in groups {
            let Ok(Ok(Some(summary))) = engine.describe_group(&group).map(|p| p.wait()) else {
                continue;
            };
            for (tp, committed) in &summary.committed {
                if !high.contains_key(tp) {
                    if let Ok(states) = engine.describe_topic(&tp.topic) {
                        for s in states {
                            high.insert(
                                TopicPartition {
                                    topic: tp.topic.clone(),
                                    partition: s.partition,
                                },
                                s.high_watermark,
                            );
                        }
                    }
                }
                if let Some(hw) = high.get(tp) {
                    self.consumer_lag
                        .get_or_create(&LagLabel {
                            group: group.clone(),
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                        })
                        .set(hw.saturating_sub(*committed) as i64);
                }
            }
        }
    }

    /// The current values in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` (any path) on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, engine: Engine) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, engine) = (metrics.clone(), engine.clone());
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let (metrics, engine) = (metrics.clone(), engine.clone());
                async move {
                    let text = tokio::task::spawn_blocking(move || {
                        metrics.refresh_lag(&engine);
                        metrics.render()
                    })
                    .await
                    .unwrap_or_default();
                    Response::builder()
                        .header(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .body(Full::new(Bytes::from(text)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds the metrics listener (so a bad address fails at start).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}
