//! A standalone echo upstream for the benchmark and the demo: the same server the
//! integration tests use (`tests/common/echo.rs`). Every request gets `200` and a JSON
//! body with the method, raw path, headers and body it received.
//!
//! ```text
//! cargo run --release --example echo_upstream -- 127.0.0.1:3002
//! curl -s http://127.0.0.1:3002/orders/7?x=1
//! ```

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a dev tool: it stops at the first error"
)]

#[path = "../tests/common/echo.rs"]
mod echo;

use std::net::SocketAddr;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3002".to_owned())
        .parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!(
            "echo upstream listening on http://{}",
            listener.local_addr()?
        );
        echo::serve(listener).await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
