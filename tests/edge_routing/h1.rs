//! HTTP/1.1 on the wire (raw TCP, so no client library rewrites the target first).

use super::{config, send_raw, Raw, API_HOST};
use crate::common::{EchoServer, Gateway};

fn get(gw: &Gateway, target: &str, headers: &[&str]) -> Raw {
    let mut head = format!("GET {target} HTTP/1.1");
    for h in headers {
        head.push_str("\r\n");
        head.push_str(h);
    }
    send_raw(gw.addr(), &head)
}

fn host(h: &str) -> String {
    format!("Host: {h}")
}

/// `401 no_session`: the request reached a route with `auth: required`.
fn assert_auth_route(r: &Raw, what: &str) {
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("no_session")),
        "{what}: {r:?}"
    );
}

fn assert_error(r: &Raw, status: u16, code: &str, what: &str) {
    assert_eq!(
        (r.status, r.code().as_deref()),
        (status, Some(code)),
        "{what}: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_route_as_lenient_upstreams_read_them() {
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&config(&echo, "")).await;
    let h = host(API_HOST);
    // Tomcat, Jetty and Spring read these as /api/...: the /api route takes them, not the
    // catch-all without auth.
    for target in [
        "/api;x=1/secret",
        "/api;jsessionid=abc",
        "/api;/secret",
        "/api;a;b/x",
    ] {
        assert_auth_route(&get(&gw, target, &[&h]), target);
    }
    // A route without auth forwards the parameters unchanged.
    let r = get(&gw, "/pub;v=2/file;x?q=1", &[&h]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.echoed().expect("echo").path, "/pub;v=2/file;x?q=1");
    // `%3B` is a parameter to some upstreams and a character to others: refused.
    for target in ["/api%3bx/secret", "/api%3Bx=1/secret"] {
        assert_error(&get(&gw, target, &[&h]), 400, "invalid_path", target);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_in_every_spelling_are_refused() {
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&config(&echo, "")).await;
    let h = host(API_HOST);
    for target in [
        "/pub/..;/api/secret",
        "/pub/..;x=1/api/secret",
        "/pub/.;x/api",
        "/pub/.;/api",
        "/pub/%2e%2e;/api/secret",
        "/pub/%2e./api/secret",
        "/pub/.%2E/api/secret",
        "/pub/%2E%2E%3B/api/secret",
        "/pub/..%3b/api/secret",
        "/pub/%252e%252e/api/secret",
        "/pub/..\\api\\secret",
        "/pub\\..\\api",
        "/pub;/..;/api",
        "/..;/api/secret",
        "/pub/%2e%2e%2fapi",
        "/pub/..",
        "/pub/x/..;",
    ] {
        assert_error(&get(&gw, target, &[&h]), 400, "invalid_path", target);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_params_refuse_mode_refuses_every_semicolon() {
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&config(&echo, "path_params: refuse")).await;
    let h = host(API_HOST);
    for target in [
        "/api;x=1/secret",
        "/pub;x",
        "/pub/file;v=1",
        "/pub%3Bx",
        "/x%3b",
    ] {
        assert_error(&get(&gw, target, &[&h]), 400, "invalid_path", target);
    }
    let r = get(&gw, "/pub/file", &[&h]);
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_routes_on_its_path_and_goes_upstream_in_origin_form() {
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&config(&echo, "")).await;
    let abs = |p: &str| format!("http://{API_HOST}{p}");
    // The example: before, only the catch-all matched the whole URL (200 upstream).
    assert_auth_route(&get(&gw, &abs("/api/secret"), &[]), "absolute, no Host");
    assert_auth_route(
        &get(&gw, &abs("/api/secret"), &[&host(API_HOST)]),
        "absolute, same Host",
    );
    assert_auth_route(
        &get(&gw, &format!("https://{API_HOST}/api;x=1/secret"), &[]),
        "https absolute with parameters",
    );
    // The upstream gets origin-form with the target's authority as Host.
    let r = get(&gw, &abs("/pub/x?q=1"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let seen = r.echoed().expect("echo");
    assert_eq!(seen.path, "/pub/x?q=1");
    assert_eq!(seen.header_all("host"), vec![API_HOST.to_owned()]);
    let r = get(&gw, &format!("http://{API_HOST}:8080/pub/y"), &[]);
    let seen = r.echoed().expect("echo");
    assert_eq!(seen.path, "/pub/y");
    assert_eq!(seen.header_all("host"), vec![format!("{API_HOST}:8080")]);
    // A bare authority is the root path.
    let r = get(&gw, &format!("http://{API_HOST}"), &[]);
    assert_eq!(r.echoed().expect("echo").path, "/");
    // Path rules apply to the path inside the target.
    assert_error(
        &get(&gw, &abs("/pub/..;/api/secret"), &[]),
        400,
        "invalid_path",
        "absolute with dot-segment",
    );
    // Targets that are not paths reach no route, not even the catch-all `/`.
    let r = send_raw(
        gw.addr(),
        &format!("OPTIONS * HTTP/1.1\r\nHost: {API_HOST}"),
    );
    assert_error(&r, 400, "invalid_path", "OPTIONS *");
    // CONNECT is refused by Pingora itself (405), before any filter.
    let r = send_raw(
        gw.addr(),
        &format!("CONNECT {API_HOST}:443 HTTP/1.1\r\nHost: {API_HOST}:443"),
    );
    assert_eq!(r.status, 405, "CONNECT: {r:?}");
    // A Host that disagrees with the target is refused before routing, never guessed.
    let r = get(&gw, &abs("/pub/x"), &["Host: other.example"]);
    assert_eq!(r.status, 400, "conflicting Host: {r:?}");
    assert!(r.echoed().is_none(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_follow_the_host_the_upstream_sees() {
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&config(&echo, "")).await;
    for h in [
        API_HOST,
        "API.Example.COM",
        "api.example.com.",
        "api.example.com:8443",
    ] {
        assert_auth_route(&get(&gw, "/hosted/x", &[&host(h)]), h);
    }
    assert_auth_route(
        &get(&gw, &format!("http://{API_HOST}/hosted/x"), &[]),
        "absolute-form host",
    );
    let r = get(&gw, "/hosted/x", &["Host: other.example"]);
    assert_eq!(r.status, 200, "any-host route: {r:?}");
    // Two Hosts, or a Host with userinfo: refused, whichever comes first.
    let r = get(&gw, "/hosted/x", &["Host: other.example", &host(API_HOST)]);
    assert_eq!(r.status, 400, "two Host headers: {r:?}");
    let r = get(&gw, "/hosted/x", &[&host(API_HOST), "Host: other.example"]);
    assert_eq!(r.status, 400, "two Host headers: {r:?}");
    let r = get(&gw, "/hosted/x", &["Host: u@api.example.com"]);
    assert_eq!(r.status, 400, "userinfo: {r:?}");
    for bad in [
        "api.example.com/x",
        "api.example.com:x",
        "api..example.com",
        "a%2eb",
    ] {
        assert_error(
            &get(&gw, "/hosted/x", &[&host(bad)]),
            400,
            "invalid_host",
            bad,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_allow_list_answers_421_for_other_hosts() {
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&config(&echo, &format!("hosts: [{API_HOST}]"))).await;
    for h in [API_HOST, "API.example.com.:80"] {
        let r = get(&gw, "/pub/x", &[&host(h)]);
        assert_eq!(r.status, 200, "{h}: {r:?}");
    }
    for h in ["evil.example", "127.0.0.1", "api.example.com.evil.example"] {
        assert_error(
            &get(&gw, "/pub/x", &[&host(h)]),
            421,
            "misdirected_request",
            h,
        );
        assert_error(
            &get(&gw, "/bff/session", &[&host(h)]),
            421,
            "misdirected_request",
            h,
        );
    }
    assert_error(
        &get(&gw, "http://evil.example/pub/x", &[]),
        421,
        "misdirected_request",
        "absolute-form",
    );
    let r = send_raw(gw.addr(), "GET /pub/x HTTP/1.0");
    assert_error(&r, 421, "misdirected_request", "no Host");
    // Health probes answer whatever the host (load balancers probe by address).
    let r = get(&gw, "/healthz", &["Host: 10.0.0.7:8080"]);
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_path_params_reload_without_restart() {
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&config(&echo, "")).await;
    assert_eq!(get(&gw, "/pub;x/1", &["Host: evil.example"]).status, 200);
    let text = std::fs::read_to_string(gw.config_path()).expect("read config");
    let text = text.replacen(
        "server:\n",
        &format!("server:\n  hosts: [{API_HOST}]\n  path_params: refuse\n"),
        1,
    );
    let tmp = gw.config_path().with_extension("yaml.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, gw.config_path()).expect("rename config");
    let reloaded = crate::common::eventually(std::time::Duration::from_secs(10), || async {
        get(&gw, "/pub/1", &["Host: evil.example"]).status == 421
    })
    .await;
    assert!(reloaded, "server.hosts not applied by reload: {}", gw.log());
    assert_error(
        &get(&gw, "/pub;x/1", &[&host(API_HOST)]),
        400,
        "invalid_path",
        "refuse",
    );
    assert_eq!(get(&gw, "/pub/1", &[&host(API_HOST)]).status, 200);
    assert!(
        !gw.log().contains("server changed"),
        "hosts and path_params reload; no restart is needed: {}",
        gw.log()
    );
}
