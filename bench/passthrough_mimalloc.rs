//! The passthrough of `bench/passthrough.rs` with mimalloc as its allocator, as bffgate
//! has: with the no-steal runtime (`PASSTHROUGH_WORK_STEALING=false`) it is the bare
//! Pingora proxy closest to how bffgate runs, the strictest reference of the benchmark.
//!
//! ```text
//! cargo run --release --example passthrough_mimalloc -- LISTEN_ADDR UPSTREAM_ADDR [THREADS] [RUN_DIR]
//! ```

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "passthrough.rs"]
mod passthrough;

fn main() {
    passthrough::main();
}
