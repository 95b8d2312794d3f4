//! The persistence check at connect: a server without AOF is refused with a message that
//! says what is at risk and both ways out, unless `allow_volatile`; `everysec` is accepted
//! with its loss window stated; a server whose `CONFIG` command is renamed is read through
//! `INFO persistence`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ackline_broker::{Broker, BrokerError, Message};
use ackline_redis::durability::Fsync;
use ackline_redis::{RedisBroker, RedisOptions};

use crate::common::{self, Persistence, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_aof_is_refused_unless_volatile_is_allowed() {
    let Some(server) = Server::start(Persistence::None) else {
        return;
    };
    let queue = common::unique_queue("volatile");
    let err = RedisBroker::connect(&server.url(), &queue, common::options(5, None))
        .await
        .unwrap_err();
    let BrokerError::Fatal { reason, .. } = &err else {
        panic!("not fatal: {err}");
    };
    for needle in [
        "appendonly no",
        "lost when Redis restarts",
        "--allow-volatile",
        "broker.allow_volatile",
        "appendfsync always",
    ] {
        assert!(reason.contains(needle), "{needle:?} missing from: {reason}");
    }
    // Nothing was created on the refused server.
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&queue)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(exists, 0);

    let b = RedisBroker::connect(
        &server.url(),
        &queue,
        RedisOptions {
            allow_volatile: true,
            ..common::options(5, None)
        },
    )
    .await
    .unwrap();
    assert!(b.durability().lossy());
    assert!(!b.durability().appendonly);
    b.publish(vec![Message::new("v", "volatile but working")])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everysec_is_accepted_with_its_window_stated() {
    let Some(server) = Server::start(Persistence::AofEverySec) else {
        return;
    };
    let b = RedisBroker::connect(
        &server.url(),
        &common::unique_queue("everysec"),
        common::options(5, None),
    )
    .await
    .unwrap();
    let d = b.durability();
    assert_eq!(d.fsync, Fsync::EverySec);
    assert!(d.appendonly);
    // WAITAOF exists from 7.2 on; the risk names the version either way.
    let v: Vec<u32> = d
        .version
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let has_waitaof = (v.first().copied(), v.get(1).copied()) >= (Some(7), Some(2));
    assert_eq!(d.wait_aof, has_waitaof, "{d}");
    if !d.wait_aof {
        assert!(d.lossy());
        assert!(d.risk().contains("second"), "{}", d.risk());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_config_command_falls_back_to_info() {
    let Some(server) =
        Server::start_with(Persistence::AofAlways, &["--rename-command", "CONFIG", ""])
    else {
        return;
    };
    let b = RedisBroker::connect(
        &server.url(),
        &common::unique_queue("noconfig"),
        common::options(5, None),
    )
    .await
    .unwrap();
    let d = b.durability();
    assert_eq!(
        (d.appendonly, d.fsync, d.source),
        (true, Fsync::Unknown, "INFO persistence"),
        "{d}"
    );
    drop(server);

    let Some(server) = Server::start_with(Persistence::None, &["--rename-command", "CONFIG", ""])
    else {
        return;
    };
    let err = RedisBroker::connect(
        &server.url(),
        &common::unique_queue("noconfig"),
        common::options(5, None),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("appendonly no"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_policy_that_may_delete_the_stream_is_refused() {
    let Some(server) = Server::start_with(
        Persistence::AofAlways,
        &["--maxmemory-policy", "allkeys-lru"],
    ) else {
        return;
    };
    let err = RedisBroker::connect(
        &server.url(),
        &common::unique_queue("evict"),
        common::options(5, None),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("allkeys-lru")
            && text.contains("noeviction")
            && text.contains("--allow-volatile"),
        "{text}"
    );
}
