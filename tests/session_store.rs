//! One contract for every `SessionStore` backend, run in-process against the memory store
//! and a real redis-server — plain, over TLS (`rediss://`, certificates made by the test),
//! as a three-master Cluster, and behind a sentinel whose master takes an ACL user and
//! password, with and without TLS: the same calls (sessions, indexes, rate budgets) must
//! give the same answers.

use std::net::IpAddr;
use std::time::Duration;

use bffgate::config::Rate;
use bffgate::session::{Spender, UserSession};

use crate::common::sessions::Sessions;
use crate::common::{now, route, write_config, GatewayConfig, RedisProcess};

async fn open(cfg: GatewayConfig) -> (tempfile::TempDir, Sessions) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "bff.yaml", &cfg.yaml());
    let sessions = Sessions::open(&path).await;
    (dir, sessions)
}

fn config() -> GatewayConfig {
    GatewayConfig::new(vec![route("r", "/r", "http://127.0.0.1:9", "none", "")])
}

/// Asserts the stored copy of `expected` has the same content.
async fn assert_stored(s: &Sessions, expected: &UserSession) {
    let got = s
        .store
        .get(&expected.id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("session of {} missing", expected.sub));
    assert_eq!(&got, expected, "stored session differs");
    assert_eq!(got.id, expected.id);
    assert_eq!(got.sub, expected.sub);
    assert_eq!(got.sid, expected.sid);
    assert_eq!(got.claims, expected.claims);
    assert_eq!(got.tokens.access_token, expected.tokens.access_token);
    assert_eq!(got.tokens.refresh_token, expected.tokens.refresh_token);
    assert_eq!(got.tokens.id_token, expected.tokens.id_token);
    assert_eq!(
        got.tokens.access_expires_at,
        expected.tokens.access_expires_at
    );
    assert_eq!(got.created_at, expected.created_at);
    assert_eq!(got.expires_at, expected.expires_at);
}

async fn assert_gone(s: &Sessions, session: &UserSession) {
    let got = s.store.get(&session.id).await.expect("get");
    assert!(got.is_none(), "session of {} should be gone", session.sub);
}

async fn store_contract(s: &Sessions) {
    s.store.ping().await.expect("ping");

    let a1 = s.new_session("user-a", Some("sid-a1"), "at-a1");
    let a2 = s.new_session("user-a", Some("sid-a2"), "at-a2");
    let b1 = s.new_session("user-b", Some("sid-b1"), "at-b1");
    let c1 = s.new_session("user-c", None, "at-c1");
    assert_ne!(a1.id, a2.id, "session ids must be fresh");
    let t = now();
    assert!(
        a1.created_at.abs_diff(t) <= 2,
        "created_at {} is not now {t}",
        a1.created_at
    );
    let absolute = s.cfg.session.absolute_timeout.as_secs();
    assert_eq!(a1.expires_at, a1.created_at + absolute);

    // Nothing there before create.
    assert_gone(s, &a1).await;
    for session in [&a1, &a2, &b1, &c1] {
        s.store.create(session).await.expect("create");
    }
    for session in [&a1, &a2, &b1, &c1] {
        assert_stored(s, session).await;
    }

    // update replaces the content.
    let mut a1_new = a1.clone();
    a1_new.tokens.access_token = "at-a1-refreshed".into();
    a1_new.tokens.refresh_token = Some("rt-a1".into());
    a1_new.tokens.id_token = Some("idt-a1".into());
    a1_new.tokens.access_expires_at = Some(t + 300);
    a1_new.claims = serde_json::json!({ "name": "Ada L.", "roles": ["admin"] });
    assert!(
        s.store.update(&a1_new).await.expect("update"),
        "update of a present session"
    );
    assert_stored(s, &a1_new).await;
    assert_stored(s, &a2).await;

    // delete removes one session and nothing else.
    assert!(
        s.store.delete(&a1.id).await.expect("delete"),
        "delete of a present session"
    );
    assert_gone(s, &a1).await;
    assert_stored(s, &a2).await;
    // Deleting or updating it again is not an error, and says it was absent.
    assert!(!s.store.delete(&a1.id).await.expect("delete twice"));
    assert!(!s.store.update(&a1_new).await.expect("update deleted"));
    assert_gone(s, &a1).await;

    // delete_by_sid: back-channel logout of one IdP session.
    assert_eq!(
        s.store
            .delete_by_sid("sid-b1")
            .await
            .expect("delete_by_sid"),
        1
    );
    assert_gone(s, &b1).await;
    assert_stored(s, &a2).await;
    assert_stored(s, &c1).await;
    assert_eq!(
        s.store
            .delete_by_sid("sid-unknown")
            .await
            .expect("delete_by_sid unknown"),
        0
    );
    assert_stored(s, &a2).await;

    // delete_by_sub: every session of one user, no one else's.
    let a3 = s.new_session("user-a", Some("sid-a3"), "at-a3");
    s.store.create(&a3).await.expect("create a3");
    assert_eq!(
        s.store
            .delete_by_sub("user-a")
            .await
            .expect("delete_by_sub"),
        2
    );
    assert_gone(s, &a2).await;
    assert_gone(s, &a3).await;
    assert_stored(s, &c1).await;
    assert_eq!(
        s.store
            .delete_by_sub("user-nobody")
            .await
            .expect("delete_by_sub unknown"),
        0
    );
    assert_stored(s, &c1).await;

    // A session deleted by sub is not found by its sid either.
    assert_eq!(
        s.store
            .delete_by_sid("sid-a2")
            .await
            .expect("delete_by_sid after sub"),
        0
    );
    assert_stored(s, &c1).await;

    // Rate budgets (1/h, burst 2): two at once, then a wait of under an hour; each
    // spender and each scope its own.
    let rate = Rate {
        count: 1,
        period: Duration::from_secs(3600),
        burst: 2,
    };
    let ip = Some(IpAddr::from([192, 0, 2, 7]));
    let spend = |scope, who| s.store.spend(scope, who, rate);
    for who in [Spender::Client(ip), Spender::Session(&c1.id)] {
        assert_eq!(spend("r", who).await.expect("spend"), None);
        assert_eq!(spend("r", who).await.expect("spend"), None);
        let wait = spend("r", who)
            .await
            .expect("spend")
            .expect("a spent budget");
        assert!(
            wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600),
            "{wait:?}"
        );
        assert_eq!(spend("other-route", who).await.expect("spend"), None);
    }
    assert_eq!(
        spend("r", Spender::Client(None)).await.expect("spend"),
        None
    );

    s.store.ping().await.expect("ping after work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_meets_the_contract() {
    let (_dir, sessions) = open(config()).await;
    store_contract(&sessions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_meets_the_contract() {
    let redis = RedisProcess::start();
    let (_dir, sessions) = open(config().redis(redis.url())).await;
    store_contract(&sessions).await;
}

/// Over a three-master Redis Cluster: every operation's keys live in one slot (a session
/// and its companions by hash tag; an index, a rate budget on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_meets_the_contract() {
    let cluster = crate::common::cluster::RedisCluster::start(3);
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let yaml = config().redis("redis://seed".into()).yaml().replacen(
        "      url: redis://seed\n",
        &format!("      cluster: [{}]\n", nodes.join(", ")),
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::open(&write_config(dir.path(), "bff.yaml", &yaml)).await;
    store_contract(&sessions).await;
    let used = cluster
        .dbsizes()
        .iter()
        .filter(|n| n.unwrap_or(0) > 0)
        .count();
    assert!(
        used >= 2,
        "keys spread over one master only: {:?}",
        cluster.dbsizes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keeps_no_plaintext_tokens_or_ids() {
    let redis_proc = RedisProcess::start();
    let (_dir, sessions) = open(config().redis(redis_proc.url())).await;
    let mut session = sessions.new_session("user-z", Some("sid-z"), "at-very-secret-token");
    session.tokens.refresh_token = Some("rt-very-secret-token".into());
    sessions.store.create(&session).await.expect("create");
    let rate = Rate {
        count: 1,
        period: Duration::from_secs(60),
        burst: 1,
    };
    let client_ip = Some(IpAddr::from([192, 0, 2, 77]));
    for who in [Spender::Session(&session.id), Spender::Client(client_ip)] {
        let spent = sessions.store.spend("api", who, rate).await.expect("spend");
        assert_eq!(spent, None);
    }

    // Dump every key and value the store wrote.
    let client = redis::Client::open(redis_proc.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the store wrote nothing to Redis");
    let mut dump = keys.join("\n");
    let mut raw: Vec<u8> = keys.join("\n").into_bytes();
    for key in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap()],
            "set" => redis::cmd("SMEMBERS")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "hash" => redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "list" => redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            other => panic!("unexpected Redis type {other} for {key}"),
        };
        for v in values {
            raw.extend_from_slice(&v);
            dump.push('\n');
            dump.push_str(&String::from_utf8_lossy(&v));
        }
    }
    assert!(
        keys.iter().all(|k| k.starts_with("bfftest:")),
        "keys outside the prefix: {keys:?}"
    );
    assert!(
        !dump.contains("very-secret-token"),
        "a token is stored in clear"
    );
    let id = session.id.as_bytes();
    assert!(
        !raw.windows(id.len()).any(|w| w == id),
        "the raw session id is stored"
    );
    let id_hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let id_b64 = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, id);
    assert!(
        !dump.to_ascii_lowercase().contains(&id_hex),
        "the session id is stored in hex"
    );
    assert!(
        !dump.contains(&id_b64),
        "the session id is stored in base64url"
    );
    let cookie = sessions.seal(&session);
    assert!(!dump.contains(&cookie), "the sealed cookie is stored");
    assert!(!dump.contains("192.0.2.77"), "a client address is stored");
    // Rate budgets (one per spender) expire once whole again: within the minute.
    let budgets: Vec<&String> = keys.iter().filter(|k| k.contains("rl:")).collect();
    assert_eq!(budgets.len(), 2, "{keys:?}");
    for key in budgets {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=60_000).contains(&pttl), "{key}: PTTL {pttl}");
    }
}

/// The same contract over TLS: `rediss://` to a real TLS redis-server whose certificate a
/// test CA signed, trusted through `session.store.redis.ca_file`. With another CA the
/// store does not answer: the certificate is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_store_contract() {
    use crate::common::redis_tls::TlsRedis;
    let redis = TlsRedis::start();
    let with_ca = |ca: &std::path::Path| {
        let yaml = config().redis(redis.url()).yaml();
        let url_line = format!("      url: {}\n", redis.url());
        assert!(yaml.contains(&url_line), "{yaml}");
        let cfg = yaml.replacen(
            &url_line,
            &format!("{url_line}      ca_file: \"{}\"\n", ca.display()),
            1,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), "bff.yaml", &cfg);
        (dir, path)
    };
    let (_dir, path) = with_ca(&redis.ca_file());
    let s = Sessions::open(&path).await;
    store_contract(&s).await;
    let keys = crate::common::redis::redis_cli(redis.port, &["DBSIZE"]).unwrap_or_default();
    assert_ne!(keys.trim(), "0", "nothing reached the TLS server");

    let other = tempfile::tempdir().unwrap();
    let other_ca = crate::common::pki::generate(other.path()).ca_file;
    let (_dir2, path2) = with_ca(&other_ca);
    let s = Sessions::open(&path2).await;
    assert!(
        s.store.ping().await.is_err(),
        "a server certificate from another CA was trusted"
    );
}

/// Behind a sentinel, the master takes only an ACL user with a password (its `default`
/// user is off): `sentinel.username` and `sentinel.password` reach it and the contract
/// holds; a wrong password does not get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_behind_a_sentinel_with_an_acl_user_meets_the_contract() {
    use crate::common::redis::{redis_cli, start_server};
    let master = RedisProcess::start();
    let port = master.port();
    let acl = [
        "ACL", "SETUSER", "bff", "on", ">s3cret", "~*", "&*", "+@all",
    ];
    assert!(redis_cli(port, &acl).is_some());
    let dir = tempfile::tempdir().unwrap();
    let sentinel_port = crate::common::free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir \"{}\"\nsentinel resolve-hostnames no\n\
             sentinel monitor mymaster 127.0.0.1 {port} 1\n\
             sentinel auth-user mymaster bff\nsentinel auth-pass mymaster s3cret\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let sentinel_port_arg = sentinel_port.to_string();
    let conf_arg = conf.display().to_string();
    let _sentinel = start_server(
        "sentinel",
        &[&conf_arg, "--sentinel", "--port", &sentinel_port_arg],
        sentinel_port,
        &dir.path().join("sentinel.log"),
    )
    .expect("sentinel");
    assert!(redis_cli(port, &["ACL", "SETUSER", "default", "off"]).is_some());

    let open_with = |password: &str| {
        let yaml = config().yaml().replacen(
            "session:\n",
            &format!(
                "session:\n  store:\n    redis:\n      sentinel: {{master_name: mymaster, \
                 nodes: [\"redis://127.0.0.1:{sentinel_port}\"], username: bff, \
                 password: \"{password}\"}}\n      timeout: 1s\n"
            ),
            1,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), "bff.yaml", &yaml);
        (dir, path)
    };
    let (_d1, path) = open_with("s3cret");
    let s = Sessions::open(&path).await;
    store_contract(&s).await;
    let (_d2, wrong) = open_with("not-the-password");
    let s = Sessions::open(&wrong).await;
    assert!(s.store.ping().await.is_err(), "a wrong password got in");
}

/// Behind a sentinel, a master that speaks TLS (certificates made by the test) and takes
/// an ACL user: `sentinel.tls`, `ca_file`, `sentinel.username` and `sentinel.password`
/// together reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_behind_a_sentinel_over_tls_meets_the_contract() {
    use crate::common::redis::{redis_cli, start_server};
    use crate::common::redis_tls::TlsRedis;
    let master = TlsRedis::start();
    let acl = [
        "ACL", "SETUSER", "bff", "on", ">s3cret", "~*", "&*", "+@all",
    ];
    assert!(redis_cli(master.port, &acl).is_some());
    let dir = tempfile::tempdir().unwrap();
    let sentinel_port = crate::common::free_port();
    let conf = dir.path().join("sentinel.conf");
    let pki = &master.pki;
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir \"{dir}\"\nsentinel resolve-hostnames no\n\
             tls-replication yes\ntls-cert-file \"{cert}\"\ntls-key-file \"{key}\"\n\
             tls-ca-cert-file \"{ca}\"\n\
             sentinel monitor mymaster 127.0.0.1 {tls_port} 1\n\
             sentinel auth-user mymaster bff\nsentinel auth-pass mymaster s3cret\n",
            dir = dir.path().display(),
            cert = pki.cert_file.display(),
            key = pki.key_file.display(),
            ca = pki.ca_file.display(),
            tls_port = master.tls_port,
        ),
    )
    .unwrap();
    let sentinel_port_arg = sentinel_port.to_string();
    let conf_arg = conf.display().to_string();
    let _sentinel = start_server(
        "sentinel",
        &[&conf_arg, "--sentinel", "--port", &sentinel_port_arg],
        sentinel_port,
        &dir.path().join("sentinel.log"),
    )
    .expect("sentinel");
    assert!(redis_cli(master.port, &["ACL", "SETUSER", "default", "off"]).is_some());

    let yaml = config().yaml().replacen(
        "session:\n",
        &format!(
            "session:\n  store:\n    redis:\n      sentinel: {{master_name: mymaster, \
             nodes: [\"redis://127.0.0.1:{sentinel_port}\"], username: bff, \
             password: s3cret, tls: true}}\n      ca_file: \"{}\"\n      timeout: 1s\n",
            master.ca_file().display()
        ),
        1,
    );
    let cfg_dir = tempfile::tempdir().unwrap();
    let path = write_config(cfg_dir.path(), "bff.yaml", &yaml);
    let s = Sessions::open(&path).await;
    store_contract(&s).await;
}
