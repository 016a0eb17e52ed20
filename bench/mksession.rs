//! Bench helper: creates one logged-in session in the store of a bffgate config file and
//! prints its cookie as `NAME=VALUE` on stdout, ready for `wrk -H "Cookie: ..."`.
//!
//! ```text
//! cargo run --release --example mksession -- /path/to/bench.yaml [--dpop]
//! ```
//!
//! The session belongs to `bench-user` with access token `at-bench` (no refresh or ID
//! token, no expiry), so the upstream sees `Authorization: Bearer at-bench`. With `--dpop`
//! the session has its own DPoP key, as a DPoP login gives it: the upstream then sees
//! `Authorization: DPoP at-bench` and a fresh proof per request. A dev tool used by
//! `bench/run.sh`: it stops at the first error.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a dev tool: it stops at the first error"
)]

use std::path::PathBuf;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: mksession CONFIG_PATH"),
    );
    let cfg =
        bffgate::config::load(&path).unwrap_or_else(|e| panic!("config {}: {e}", path.display()));
    let store =
        bffgate::session::SessionStore::from_config(&cfg.session).expect("open the session store");
    let tokens = bffgate::session::Tokens {
        access_token: "at-bench".into(),
        refresh_token: None,
        id_token: None,
        access_expires_at: None,
        refresh_expires_at: None,
    };
    let mut session = bffgate::session::UserSession::new(
        "bench-user".into(),
        None,
        serde_json::json!({}),
        tokens,
        &cfg.session,
    );
    if std::env::args().nth(2).as_deref() == Some("--dpop") {
        let (_, stored) = bffgate::dpop::DpopKey::generate().expect("a DPoP key");
        session.dpop_key = Some(stored);
    }
    store.create(&session).await.expect("store the session");
    let cookie = bffgate::cookie::CookieCipher::from_config(&cfg.cookie).seal(&session.id);
    println!("{}={}", cfg.cookie.name, cookie);
}
