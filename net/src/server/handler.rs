//! Turns one decoded request into an engine call and its response.
//!
//! [`submit`] runs on the stream's reader in frame order and hands the request to the
//! engine without waiting, so appends sent on one stream are queued in that order; the
//! returned future then waits for the outcome.

use super::config::{Limits, Permission};
use super::session::Session;
use crate::protocol::{Acks, ErrorCode, Request, Response, TopicInfo, VERSION};
use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use strata_log::engine::TopicMeta;
use strata_log::{Engine, Pending};

/// Longest a FETCH may wait for data.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// The bytes a FETCH asking for `max_bytes` is served (at least 1, at most what fits
/// comfortably in one frame).
pub fn fetch_budget(limits: &Limits, max_bytes: u32) -> usize {
    let cap = limits.max_frame_bytes / 2;
    (max_bytes as usize).clamp(1, cap)
}

/// A response that is ready, or one still being worked on.
pub enum Step {
    /// Answer now.
    Done(Response),
    /// Answer when this resolves.
    Wait(Pin<Box<dyn Future<Output = Response> + Send>>),
}

fn refuse(what: &str) -> Step {
    Step::Done(Response::error(
        ErrorCode::Unauthorized,
        0,
        format!("this token may not {what}"),
    ))
}

fn wait<T: Send + 'static>(
    pending: strata_log::Result<Pending<T>>,
    map: impl FnOnce(T) -> Response + Send + 'static,
) -> Step {
    match pending {
        Err(e) => Step::Done(Response::from_log_error(&e)),
        Ok(p) => Step::Wait(Box::pin(async move {
            match p.await {
                Ok(v) => map(v),
                Err(e) => Response::from_log_error(&e),
            }
        })),
    }
}

/// Runs blocking control-plane work off the shard thread.
fn blocking(
    engine: &Engine,
    work: impl FnOnce(&Engine) -> strata_log::Result<Response> + Send + 'static,
) -> Step {
    let engine = engine.clone();
    Step::Wait(Box::pin(async move {
        match tokio::task::spawn_blocking(move || work(&engine)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Response::from_log_error(&e),
            Err(e) => Response::error(ErrorCode::Internal, 0, format!("control task failed: {e}")),
        }
    }))
}

fn info(meta: &TopicMeta) -> TopicInfo {
    TopicInfo {
        name: meta.name.clone(),
        id: meta.id,
        config: meta.config.clone(),
    }
}

/// Starts `req`; HELLO, SUBSCRIBE and CREDIT are handled by the stream, not here.
pub fn submit(session: &Arc<Session>, req: Request) -> Step {
    let engine = &session.engine;
    let grant = &session.grant;
    match req {
        Request::Produce {
            topic,
            partition,
            acks,
            expected_offset,
            batch,
        } => {
            if !grant.allows(Permission::Produce, &topic) {
                return refuse(&format!("produce to {topic:?}"));
            }
            let meta = match engine.topic(&topic) {
                Ok(m) => m,
                Err(e) => return Step::Done(Response::from_log_error(&e)),
            };
            let allowed = Acks::allowed_by(meta.config.durability);
            if acks > allowed {
                return Step::Done(Response::error(
                    ErrorCode::InvalidRequest,
                    0,
                    format!(
                        "topic {topic:?} has durability {:?}: acks {acks:?} is not available",
                        meta.config.durability
                    ),
                ));
            }
            let batch = BytesMut::from(batch);
            let pending = match expected_offset {
                Some(expected) => engine.produce_if(&topic, partition, batch, expected),
                None => engine.produce(&topic, partition, batch),
            };
            if acks == Acks::None {
                return Step::Done(match pending {
                    Ok(_) => Response::Produced { offsets: None },
                    Err(e) => Response::from_log_error(&e),
                });
            }
            wait(pending, |a| Response::Produced {
                offsets: Some((a.base_offset, a.last_offset)),
            })
        }
        Request::Fetch {
            topic,
            partition,
            offset,
            max_bytes,
            max_wait_ms,
        } => {
            if !grant.allows(Permission::Consume, &topic) {
                return refuse(&format!("consume from {topic:?}"));
            }
            let wait_for = (max_wait_ms > 0)
                .then(|| Duration::from_millis(u64::from(max_wait_ms)).min(MAX_FETCH_WAIT));
            let max_bytes = fetch_budget(&session.shared.limits, max_bytes);
            wait(
                engine.fetch(&topic, partition, offset, max_bytes, wait_for),
                |f| Response::Fetched {
                    high_watermark: f.high_watermark,
                    log_start_offset: f.log_start_offset,
                    batches: f.bytes,
                },
            )
        }
        Request::ListOffset {
            topic,
            partition,
            query,
        } => {
            if !grant.allows(Permission::Consume, &topic) {
                return refuse(&format!("consume from {topic:?}"));
            }
            wait(
                engine.offset_for(&topic, partition, query),
                Response::Offset,
            )
        }
        Request::CreateTopic { name, config } => {
            if !grant.allows(Permission::Admin, &name) {
                return refuse(&format!("create topic {name:?}"));
            }
            blocking(engine, move |e| {
                e.create_topic(&name, config)
                    .map(|m| Response::Topic(info(&m)))
            })
        }
        Request::DeleteTopic { name } => {
            if !grant.allows(Permission::Admin, &name) {
                return refuse(&format!("delete topic {name:?}"));
            }
            blocking(engine, move |e| {
                e.delete_topic(&name).map(|()| Response::Ok)
            })
        }
        Request::ListTopics => {
            let mut topics: Vec<TopicInfo> = engine
                .topics()
                .iter()
                .filter(|m| grant.can_see(&m.name))
                .map(|m| info(m))
                .collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            Step::Done(Response::Topics(topics))
        }
        Request::Metadata { topics } => {
            let all = engine.topics();
            let mut out = Vec::new();
            if topics.is_empty() {
                out.extend(
                    all.iter()
                        .filter(|m| grant.can_see(&m.name))
                        .map(|m| info(m)),
                );
                out.sort_by(|a, b| a.name.cmp(&b.name));
            } else {
                for name in &topics {
                    if !grant.can_see(name) {
                        return refuse(&format!("see topic {name:?}"));
                    }
                    match all.iter().find(|m| &m.name == name) {
                        Some(m) => out.push(info(m)),
                        None => {
                            return Step::Done(Response::from_log_error(
                                &strata_log::Error::UnknownTopic(name.clone()),
                            ));
                        }
                    }
                }
            }
            Step::Done(Response::Metadata {
                shards: engine.shard_count() as u32,
                topics: out,
            })
        }
        Request::DescribeTopic { name } => {
            if !grant.can_see(&name) {
                return refuse(&format!("see topic {name:?}"));
            }
            blocking(engine, move |e| {
                let meta = e.topic(&name)?;
                let partitions = e.describe_topic(&name)?;
                Ok(Response::TopicDescription {
                    topic: info(&meta),
                    partitions,
                })
            })
        }
        Request::InitProducer => {
            if !grant.has(Permission::Produce) {
                return refuse("produce");
            }
            blocking(engine, |e| {
                e.init_producer().map(|producer_id| Response::ProducerId {
                    producer_id,
                    epoch: 0,
                })
            })
        }
        Request::JoinGroup {
            group,
            member_id,
            strategy,
            session_timeout_ms,
            topics,
        } => {
            if let Some(t) = topics
                .iter()
                .find(|t| !grant.allows(Permission::Consume, t))
            {
                return refuse(&format!("consume from {t:?}"));
            }
            if !grant.has(Permission::Consume) {
                return refuse("consume");
            }
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            let timeout = Duration::from_millis(u64::from(session_timeout_ms.max(1)));
            wait(
                engine.join_group(&group, member_id.as_deref(), &topics, strategy, timeout),
                membership,
            )
        }
        Request::Heartbeat { group, member_id } => {
            if !grant.has(Permission::Consume) {
                return refuse("consume");
            }
            wait(engine.heartbeat(&group, &member_id), membership)
        }
        Request::LeaveGroup { group, member_id } => {
            if !grant.has(Permission::Consume) {
                return refuse("consume");
            }
            wait(engine.leave_group(&group, &member_id), |()| Response::Ok)
        }
        Request::CommitOffsets {
            group,
            member,
            offsets,
        } => {
            if let Some((tp, _)) = offsets
                .iter()
                .find(|(tp, _)| !grant.allows(Permission::Consume, &tp.topic))
            {
                return refuse(&format!("consume from {:?}", tp.topic));
            }
            if !grant.has(Permission::Consume) {
                return refuse("consume");
            }
            let member = member.as_ref().map(|(m, g)| (m.as_str(), *g));
            wait(engine.commit_offsets(&group, member, &offsets), |()| {
                Response::Ok
            })
        }
        Request::FetchOffsets { group, partitions } => {
            if let Some(tp) = partitions
                .iter()
                .find(|tp| !grant.allows(Permission::Consume, &tp.topic))
            {
                return refuse(&format!("consume from {:?}", tp.topic));
            }
            if !grant.has(Permission::Consume) {
                return refuse("consume");
            }
            wait(
                engine.committed_offsets(&group, &partitions),
                Response::Offsets,
            )
        }
        Request::ListGroups => {
            if !grant.has(Permission::Consume) && !grant.has(Permission::Admin) {
                return refuse("list groups");
            }
            blocking(engine, |e| e.list_groups().map(Response::Groups))
        }
        Request::DescribeGroup { group } => {
            if !grant.has(Permission::Consume) && !grant.has(Permission::Admin) {
                return refuse("describe groups");
            }
            wait(engine.describe_group(&group), Response::GroupDescription)
        }
        Request::Hello { .. } | Request::Subscribe { .. } | Request::Credit { .. } => {
            Step::Done(Response::error(
                ErrorCode::MalformedFrame,
                0,
                format!("unexpected request on this stream (protocol version {VERSION})"),
            ))
        }
    }
}

fn membership(m: strata_log::engine::Membership) -> Response {
    Response::Membership {
        member_id: m.member_id,
        generation: m.generation,
        assignment: m.assignment,
    }
}
