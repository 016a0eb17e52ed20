//! The revocation bus between instances, in-process over every Redis topology: two
//! `SessionStore`s opened from one config file stand for two instances; a deletion on one
//! is heard on the other within a second (standalone Redis, a 3-master Cluster, a
//! Sentinel-managed master), and a lost subscription comes back followed by a re-check.

use std::time::{Duration, Instant};

use bffgate::session::{Revocation, SessionStore};
use tokio::sync::broadcast::Receiver;

use crate::common::cluster::RedisCluster;
use crate::common::redis::redis_cli;
use crate::common::sentinel::{SentinelSet, MASTER_NAME};
use crate::common::sessions::Sessions;
use crate::common::{route, write_config, GatewayConfig, RedisProcess};

/// Opens the config with `store` (the `session.store.redis` connection lines) twice.
async fn two_instances(store: &str) -> (tempfile::TempDir, Sessions, Sessions) {
    let yaml = GatewayConfig::new(vec![route("r", "/r", "http://127.0.0.1:9", "none", "")])
        .yaml()
        .replacen(
            "session:\n",
            &format!(
                "session:\n  store:\n    redis:\n{store}      key_prefix: \"bustest:\"\n      timeout: 1s\n"
            ),
            1,
        );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "bff.yaml", &yaml);
    let a = Sessions::open(&path).await;
    let b = Sessions::open(&path).await;
    (dir, a, b)
}

/// Starts relaying `store`'s channel into its bus (until the test ends) and waits until
/// the subscription stands (the relay's first `Recheck`).
async fn listening(store: &SessionStore) -> Receiver<Revocation> {
    let mut heard = store.revocations().subscribe();
    let relay = store.clone();
    tokio::spawn(async move { relay.relay_revocations(std::future::pending()).await });
    expect_recheck(&mut heard, Duration::from_secs(10)).await;
    heard
}

async fn expect_recheck(heard: &mut Receiver<Revocation>, limit: Duration) {
    let got = tokio::time::timeout(limit, heard.recv())
        .await
        .expect("the relay subscribed")
        .expect("bus open");
    assert_eq!(got, Revocation::Recheck);
}

/// A deletes two of carol's sessions by `sub`, then one of dave's by id: B hears each
/// session's hash, within a second, and nothing of erin's.
async fn deletions_are_heard(a: &Sessions, b: &Sessions) {
    let mut heard = listening(&b.store).await;
    let (c1, _) = a.login("carol", "at-c1").await;
    let (c2, _) = a.login("carol", "at-c2").await;
    let (d1, _) = a.login("dave", "at-d1").await;
    let (_e1, _) = a.login("erin", "at-e1").await;

    let started = Instant::now();
    assert_eq!(a.store.delete_by_sub("carol").await.expect("by sub"), 2);
    assert!(a.store.delete(&d1.id).await.expect("delete"));
    let mut got: Vec<String> = Vec::new();
    while got.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(1), heard.recv()).await {
            Ok(Ok(Revocation::Sessions(hashes))) => got.extend(hashes.iter().cloned()),
            other => panic!("after {:?}: {other:?} (heard {got:?})", started.elapsed()),
        }
    }
    eprintln!(
        "the other instance heard 3 revocations within {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() <= Duration::from_secs(1));
    got.sort();
    let mut want = vec![
        a.store.key_hash(&c1.id),
        a.store.key_hash(&c2.id),
        a.store.key_hash(&d1.id),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(heard.try_recv().is_err(), "heard more than was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_redis_relays_revocations_and_resubscribes() {
    let redis = RedisProcess::start();
    let (_dir, a, b) = two_instances(&format!("      url: \"{}\"\n", redis.url())).await;
    deletions_are_heard(&a, &b).await;

    // The server drops the subscriber: the relay comes back and asks for a re-check.
    let mut heard = b.store.revocations().subscribe();
    let killed = redis_cli(redis.port(), &["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed.as_deref().map(str::trim), Some("1"), "{killed:?}");
    expect_recheck(&mut heard, Duration::from_secs(5)).await;
    let (f1, _) = a.login("frank", "at-f1").await;
    assert!(a.store.delete(&f1.id).await.expect("delete"));
    let got = tokio::time::timeout(Duration::from_secs(1), heard.recv())
        .await
        .expect("heard after resubscribing")
        .expect("bus open");
    assert_eq!(
        got,
        Revocation::Sessions(vec![a.store.key_hash(&f1.id)].into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_relays_revocations() {
    let cluster = RedisCluster::start(3);
    let nodes: Vec<String> = cluster.urls().iter().map(|n| format!("\"{n}\"")).collect();
    let (_dir, a, b) = two_instances(&format!("      cluster: [{}]\n", nodes.join(", "))).await;
    deletions_are_heard(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_relays_revocations() {
    let set = SentinelSet::start();
    let nodes: Vec<String> = set
        .sentinel_urls()
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    let (_dir, a, b) = two_instances(&format!(
        "      sentinel:\n        master_name: {MASTER_NAME}\n        nodes: [{}]\n",
        nodes.join(", ")
    ))
    .await;
    deletions_are_heard(&a, &b).await;
}

/// A gateway whose Redis restarted empty (its subscription lost, the sessions with it)
/// re-checks its streams once it is subscribed again, and closes those whose session is
/// gone: within the relay's longest backoff (5 s) and a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_lost_its_subscription_rechecks_its_streams() {
    use crate::common::streams::WsEcho;
    use crate::common::{watch, Gateway};
    let mut redis = RedisProcess::start();
    let ws = WsEcho::start().await;
    let gw = Gateway::start(
        &GatewayConfig::new(vec![route("ws", "/ws", &ws.url(), "required", "")])
            .redis(redis.url())
            .yaml(),
    )
    .await;
    let sessions = Sessions::open(gw.config_path()).await;
    let (_s, sealed) = sessions.login("gus", "at-gus").await;
    let stream = watch::websocket(gw.addr(), "/ws/chat", &sealed).await;

    redis.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        stream.ended().is_none(),
        "the stream closed with Redis down"
    );
    redis.restart();
    let restarted = Instant::now();
    let ended = stream
        .wait_end(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("the stream outlived its session\n{}", gw.log()));
    let took = ended - restarted;
    eprintln!("stream closed {took:?} after Redis came back empty");
    assert!(took <= Duration::from_secs(6), "closed only after {took:?}");
}
