//! How many logins one client address may start: a bound on the login transactions (and
//! store keys) a stranger without a login cookie can create.
//!
//! Counted per instance in a memory-bounded cache: each address gets `logins_per_client`
//! new bindings per window of `login_timeout`. A transaction lives `login_timeout`, so one
//! address holds at most twice that many live transactions on one instance, whatever it
//! sends. A browser that keeps its login cookie reuses its binding and is not counted.

use moka::sync::Cache;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Addresses tracked at once; beyond it the least recently used are forgotten.
const MAX_CLIENTS: u64 = 100_000;

/// The per-address login counter.
#[derive(Debug)]
pub struct LoginLimiter {
    per_client: u32,
    counts: Cache<IpAddr, Arc<AtomicU32>>,
}

impl LoginLimiter {
    /// `per_client` new logins per address per `window`.
    pub fn new(per_client: u32, window: Duration) -> Self {
        LoginLimiter {
            per_client,
            counts: Cache::builder()
                .max_capacity(MAX_CLIENTS)
                .time_to_live(window)
                .build(),
        }
    }

    /// Counts one new login from `client` (`None`: a Unix-socket peer, counted together);
    /// false when the address has used its allowance.
    pub fn admit(&self, client: Option<IpAddr>) -> bool {
        let ip = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let count = self.counts.get_with(ip, || Arc::new(AtomicU32::new(0)));
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.per_client).then_some(n + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_allowance() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        let b = Some(IpAddr::from([192, 0, 2, 2]));
        assert_eq!((0..10).filter(|_| l.admit(a)).count(), 3);
        assert!(l.admit(b));
        assert_eq!((0..10).filter(|_| l.admit(None)).count(), 3);
    }
}
