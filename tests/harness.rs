//! The harness itself, without the gateway: the echo upstream reports the raw request, and
//! a RedisProcess stops and comes back on its port. If these fail, the other suites' results
//! mean nothing.

use std::time::Duration;

use crate::common::{client, expect_echo, raw_request, EchoServer, Echoed, RedisProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_reports_method_raw_target_headers_and_body() {
    let echo = EchoServer::start().await;
    let target = "/orders/a%20b/%E2%9C%93?q=1%2B1&x=%2F&empty=&dup=1&dup=2";
    let resp = client()
        .post(format!("{}{target}", echo.url()))
        .header("x-multi", "one")
        .header("cookie", "a=1; b=2")
        .body("hello ✓")
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, target);
    assert_eq!(seen.body, "hello ✓");
    assert_eq!(seen.header("x-multi").as_deref(), Some("one"));
    assert_eq!(
        seen.cookies(),
        vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned())
        ]
    );

    // Dot segments and repeated headers as sent on the wire.
    let echo_addr = echo.addr();
    let (status, body) = tokio::task::spawn_blocking(move || {
        raw_request(
            echo_addr,
            "GET",
            "/x/../y?z",
            &[("x-rep", "1"), ("x-rep", "2")],
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    let seen: Echoed = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(seen.path, "/x/../y?z");
    assert_eq!(
        seen.header_all("x-rep"),
        vec!["1".to_owned(), "2".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_slow_path_hangs() {
    let echo = EchoServer::start().await;
    let resp = client()
        .get(format!("{}/a/slow", echo.url()))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(resp
        .expect_err("a /slow request must not answer at once")
        .is_timeout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_process_stops_and_restarts_on_the_same_port() {
    let mut redis = RedisProcess::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();

    redis.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );

    redis.restart();
    assert_eq!(redis.port(), port);
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let v: Option<String> = ::redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, None, "a restarted Redis starts empty");
}
