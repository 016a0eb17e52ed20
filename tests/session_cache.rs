//! The session cache of a Redis store (`session.store.redis.cache`).
//!
//! End to end, two bffgate processes over one real redis-server: a session revoked through
//! instance A's admin API is refused by instance B within the cache window (50 trials, the
//! window each took reported); a session deleted behind bffgate's back (no announcement)
//! is still served from the cache, but never past one window after B read it; a restarted
//! Redis empties B's cache before anything stale could be served.
//!
//! In process, two `SessionStore`s over one config stand for two instances: a Cluster
//! slot move and a Cluster failover under a warm cache, and the idle timeout of a session
//! kept alive only by cached reads.
//!
//! Every bound asserted here is one the design guarantees whatever the machine's speed: a
//! request sent more than one window after an ending must be refused; the measured windows
//! are only printed.

use std::time::{Duration, Instant};

use bffgate::session::{Revocation, SessionId, SessionStore};
use serde_json::json;
use tokio::sync::broadcast::Receiver;

use crate::common::admin::AdminBlock;
use crate::common::cluster::RedisCluster;
use crate::common::redis::redis_cli;
use crate::common::scrape::{metric, scrape};
use crate::common::sessions::Sessions;
use crate::common::{
    client, eventually, route, session_cookie, write_config, EchoServer, Gateway, GatewayConfig,
    RedisProcess,
};

/// The default window (`session.store.redis.cache.window`).
const DEFAULT_WINDOW: Duration = Duration::from_millis(100);
const READY: Duration = Duration::from_secs(10);

/// The status of `GET /api/x` at `gw` with this session cookie (0: no answer).
async fn status(gw: &Gateway, cookie: &str) -> u16 {
    match client()
        .get(gw.url("/api/x"))
        .header("cookie", session_cookie(cookie))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn cache_series(gw: &Gateway, series: &str) -> f64 {
    metric(&scrape(gw).await, series).unwrap_or(0.0)
}

/// Redis, the upstream, and two gateways over both with this cache window (the default
/// when `None`); A has an admin listener.
struct Pair {
    a: Gateway,
    b: Gateway,
    admin_a: AdminBlock,
    sessions: Sessions,
    redis: RedisProcess,
    _echo: EchoServer,
}

impl Pair {
    async fn start(window: Option<&str>) -> Pair {
        let redis = RedisProcess::start();
        let echo = EchoServer::start().await;
        let mut cfg = GatewayConfig::new(vec![route("api", "/api", &echo.url(), "required", "")])
            .redis(redis.url());
        if let Some(w) = window {
            cfg = cfg.cache_window(w);
        }
        let base = cfg.yaml();
        let admin_a = AdminBlock::new();
        let a = Gateway::start(&admin_a.append_to(&base)).await;
        let b = Gateway::start(&base).await;
        a.wait_ready(READY).await;
        b.wait_ready(READY).await;
        let sessions = Sessions::open(b.config_path()).await;
        Pair {
            a,
            b,
            admin_a,
            sessions,
            redis,
            _echo: echo,
        }
    }

    /// Waits until B's revocation subscription stands (its cache serves only then): a
    /// session read twice is a cache hit the second time.
    async fn wait_cache_serving(&self) {
        let (_, cookie) = self.sessions.login("probe", "at-probe").await;
        let deadline = Instant::now() + READY;
        loop {
            let before = cache_series(&self.b, "bff_session_cache_total{result=\"hit\"}").await;
            assert_eq!(status(&self.b, &cookie).await, 200, "{}", self.b.log());
            assert_eq!(status(&self.b, &cookie).await, 200);
            let after = cache_series(&self.b, "bff_session_cache_total{result=\"hit\"}").await;
            if after > before {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "B's cache never served:\n{}",
                self.b.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_is_refused_on_the_other_within_the_window() {
    let pair = Pair::start(None).await;
    pair.wait_cache_serving().await;
    let hits_before = cache_series(&pair.b, "bff_session_cache_total{result=\"hit\"}").await;
    let mut windows = Vec::new();
    for trial in 0..50 {
        let sub = format!("user-{trial}");
        let (_, cookie) = pair.sessions.login(&sub, "at").await;
        // B reads it from Redis, then serves it from the cache.
        assert_eq!(status(&pair.b, &cookie).await, 200);
        assert_eq!(status(&pair.b, &cookie).await, 200);
        assert_eq!(pair.admin_a.revoke(json!({ "sub": sub })).await, 1);
        let revoked = Instant::now();
        loop {
            let sent = revoked.elapsed();
            match status(&pair.b, &cookie).await {
                401 => {
                    windows.push(sent);
                    break;
                }
                200 => assert!(
                    sent < DEFAULT_WINDOW,
                    "trial {trial}: B served a session revoked {sent:?} earlier"
                ),
                other => panic!("trial {trial}: B answered {other}:\n{}", pair.b.log()),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let hits = cache_series(&pair.b, "bff_session_cache_total{result=\"hit\"}").await - hits_before;
    assert!(hits >= 50.0, "B served only {hits} requests from its cache");
    windows.sort();
    eprintln!(
        "revoked on A, refused on B: 50 trials, median {:?}, max {:?} (window {DEFAULT_WINDOW:?})",
        windows[25], windows[49]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deleted_behind_bffgates_back_is_served_at_most_one_window() {
    let window = Duration::from_secs(3);
    let pair = Pair::start(Some("3s")).await;
    pair.wait_cache_serving().await;
    let (session, cookie) = pair.sessions.login("mallory", "at-m").await;
    assert_eq!(status(&pair.b, &cookie).await, 200);
    // B's read of it from Redis was sent before this moment.
    let read = Instant::now();
    // Deleted in Redis directly: nobody announces it.
    let key = format!(
        "bfftest:{{{}}}:s",
        pair.sessions.store.key_hash(&session.id)
    );
    let deleted = redis_cli(pair.redis.port(), &["DEL", &key]);
    assert_eq!(deleted.as_deref().map(str::trim), Some("1"), "{key}");
    assert_eq!(
        status(&pair.b, &cookie).await,
        200,
        "B did not serve the session from its cache"
    );
    // A, which never read it, asks Redis.
    assert_eq!(status(&pair.a, &cookie).await, 401);
    let refused = loop {
        let sent = read.elapsed();
        match status(&pair.b, &cookie).await {
            401 => break sent,
            200 => assert!(
                sent < window,
                "B served a deleted session {sent:?} after reading it"
            ),
            other => panic!("B answered {other}"),
        }
        assert!(sent < window * 3, "B kept serving a deleted session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("an unannounced deletion was seen on B {refused:?} after B read the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_empties_the_cache_before_anything_stale_is_served() {
    let mut pair = Pair::start(Some("5s")).await;
    pair.wait_cache_serving().await;
    let (_, cookie) = pair.sessions.login("trent", "at-t").await;
    let read = Instant::now();
    assert_eq!(status(&pair.b, &cookie).await, 200);
    assert_eq!(status(&pair.b, &cookie).await, 200);
    let clears = cache_series(&pair.b, "bff_session_cache_clears_total").await;
    // Back on the same port, empty: the session is gone.
    pair.redis.restart();
    // The subscription's loss empties the cache, its return empties it again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache_series(&pair.b, "bff_session_cache_clears_total").await < clears + 2.0 {
        assert!(
            Instant::now() < deadline,
            "B's cache was not emptied:\n{}",
            pair.b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Until B's data connection is back it answers 503; then the session is unknown.
    let asked = loop {
        let asked = read.elapsed();
        match status(&pair.b, &cookie).await {
            503 => {
                assert!(Instant::now() < deadline, "B stayed 503:\n{}", pair.b.log());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            got => {
                assert_eq!(got, 401, "a stale session was served");
                break asked;
            }
        }
    };
    // Only meaningful within the window: past it, the entry would have aged out anyway.
    assert!(
        asked < Duration::from_secs(5),
        "took {asked:?}: too slow to tell"
    );
    // The cache serves again for new sessions (once the test's own connection is back).
    assert!(
        eventually(Duration::from_secs(10), || async {
            pair.sessions.store.ping().await.is_ok()
        })
        .await
    );
    pair.wait_cache_serving().await;
}

/// Opens `yaml` twice as two instances' stores.
async fn two_stores(yaml: &str) -> (tempfile::TempDir, Sessions, Sessions) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "bff.yaml", yaml);
    let a = Sessions::open(&path).await;
    let b = Sessions::open(&path).await;
    (dir, a, b)
}

/// A config over these `session.store.redis` connection lines with a cache of `window`.
fn store_yaml(store: &str, window: &str) -> String {
    GatewayConfig::new(vec![route("r", "/r", "http://127.0.0.1:9", "none", "")])
        .yaml()
        .replacen(
            "session:\n",
            &format!(
                "session:\n  store:\n    redis:\n{store}      key_prefix: \"cachetest:\"\n      timeout: 1s\n      cache: {{ window: {window} }}\n"
            ),
            1,
        )
}

/// Starts relaying `store`'s revocations (its cache serves from then on) and waits until
/// the subscription stands.
async fn listening(store: &SessionStore) -> Receiver<Revocation> {
    let mut heard = store.revocations().subscribe();
    let relay = store.clone();
    tokio::spawn(async move { relay.relay_revocations(std::future::pending()).await });
    let got = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
    assert!(
        matches!(got, Ok(Ok(Revocation::Recheck))),
        "the relay did not subscribe: {got:?}"
    );
    heard
}

/// Polls `cond` every 10 ms for up to `limit`.
async fn within(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Asserts `b` stops serving session `id` within 2 s: far sooner than its 5 s window, so
/// only an announcement heard can explain it.
async fn refused_soon(b: &Sessions, id: &SessionId, what: &str) {
    let gone = within(Duration::from_secs(2), async || {
        b.store.get_cached(id).await.is_ok_and(|s| s.is_none())
    })
    .await;
    assert!(gone, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_slot_move_keeps_the_cache_true() {
    let cluster = RedisCluster::start(3);
    let nodes: Vec<String> = cluster.urls().iter().map(|n| format!("\"{n}\"")).collect();
    let yaml = store_yaml(&format!("      cluster: [{}]\n", nodes.join(", ")), "5s");
    let (_dir, a, b) = two_stores(&yaml).await;
    let _heard = listening(&b.store).await;
    let (s, _) = a.login("oscar", "at-o").await;
    let key = format!("cachetest:{{{}}}:s", a.store.key_hash(&s.id));
    assert!(b.store.get_cached(&s.id).await.expect("read").is_some());
    assert_eq!(b.store.cached_sessions(), Some(1));

    let from = cluster.master_of(&key);
    let to = cluster
        .master_ports()
        .into_iter()
        .find(|p| *p != from)
        .unwrap();
    cluster.move_slot_of(&key, to);
    assert_eq!(cluster.master_of(&key), to);
    // Both instances follow the move; the session, unchanged, is served.
    assert!(a
        .store
        .get(&s.id)
        .await
        .expect("read after the move")
        .is_some());
    assert!(b.store.get_cached(&s.id).await.expect("cached").is_some());
    // A deletion after the move is heard: B refuses it long before its window ends.
    let deleted = Instant::now();
    assert!(a.store.delete(&s.id).await.expect("delete"));
    refused_soon(
        &b,
        &s.id,
        "B still served a session deleted after its slot moved",
    )
    .await;
    eprintln!(
        "after a slot move, a deletion was seen on B within {:?}",
        deleted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_empties_the_cache_and_revocations_are_heard_after_it() {
    let mut cluster = RedisCluster::start_with_replicas(3);
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3, "{}", cluster.logs());
    // A's store finds where a session lands; B lists that master first, so B's
    // subscription is on the node that fails.
    let seeds = |first: u16| {
        let mut ports = masters.clone();
        ports.sort_by_key(|p| *p != first);
        let list: Vec<String> = ports
            .iter()
            .map(|p| format!("\"redis://127.0.0.1:{p}\""))
            .collect();
        store_yaml(&format!("      cluster: [{}]\n", list.join(", ")), "5s")
    };
    let channel_master = cluster.master_of("cachetest:revoked");
    let (_dir_a, a, _) = two_stores(&seeds(masters[0])).await;
    // A session on a master that does not carry the revocation channel.
    let (s, key) = loop {
        let (s, _) = a.login("peggy", "at-p").await;
        let key = format!("cachetest:{{{}}}:s", a.store.key_hash(&s.id));
        if cluster.master_of(&key) != channel_master {
            break (s, key);
        }
    };
    let victim = cluster.master_of(&key);
    assert!(
        cluster.wait_replicated(victim, Duration::from_secs(10)),
        "the session never reached the replica:\n{}",
        cluster.logs()
    );
    let (_dir_b, b, _) = two_stores(&seeds(victim)).await;
    let mut heard = listening(&b.store).await;
    assert!(b.store.get_cached(&s.id).await.expect("read").is_some());
    assert_eq!(b.store.cached_sessions(), Some(1));

    cluster.kill(victim);
    assert!(
        within(Duration::from_secs(2), async || b.store.cached_sessions()
            == Some(0))
        .await,
        "B's cache was not emptied when its subscription's node died"
    );
    assert!(
        cluster.wait_failover(victim, Duration::from_secs(30)),
        "no failover:\n{}",
        cluster.logs()
    );
    // B subscribes again (to another node) and asks for a re-check.
    let again = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(Revocation::Recheck) = heard.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(again.is_ok(), "B never subscribed again");
    // The promoted replica has the session; B caches it again, and hears its deletion.
    let mut last = String::new();
    let cached = within(Duration::from_secs(10), async || {
        match b.store.get_cached(&s.id).await {
            Ok(Some(_)) => true,
            other => {
                last = format!("{other:?}");
                false
            }
        }
    })
    .await;
    assert!(
        cached,
        "the session did not survive the failover (last: {last}):\n{}",
        cluster.logs()
    );
    assert!(a.store.delete(&s.id).await.expect("delete after failover"));
    refused_soon(
        &b,
        &s.id,
        "B still served a session deleted after the failover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_still_ends_a_session_read_from_the_cache() {
    let redis = RedisProcess::start();
    let yaml = store_yaml(&format!("      url: \"{}\"\n", redis.url()), "500ms")
        .replace("idle_timeout: 30m", "idle_timeout: 2s");
    let (_dir, a, b) = two_stores(&yaml).await;
    let _heard = listening(&b.store).await;
    let (s, _) = a.login("ivan", "at-i").await;
    // In use for twice the idle timeout: it lives on (each miss slides the timeout).
    let mut seen_cached = false;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let got = b.store.get_cached(&s.id).await.expect("read");
        assert!(
            got.is_some(),
            "ended while in use after {:?}",
            started.elapsed()
        );
        seen_cached |= b.store.cached_sessions() == Some(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_cached, "the session was never cached");
    // Unused for longer than the idle timeout: gone, though the last read was cached.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(b.store.get_cached(&s.id).await.expect("read").is_none());
    assert!(a.store.get(&s.id).await.expect("read").is_none());
}
