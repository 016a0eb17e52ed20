pub mod config;
pub mod cookie;
pub mod metrics;
pub mod random;
pub mod session;
