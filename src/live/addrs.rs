//! The addresses each upstream host is reached at now. An IP literal is its own address; a
//! host name starts with none and is filled in (and refreshed) by the background resolver
//! (`service/dns.rs`). The proxy only reads the current snapshot: no lookup per request.
//!
//! Routes of every live configuration that name the same host share one [`HostAddrs`]
//! through a process-wide table of weak references, so a reload keeps the last good
//! addresses of the names it keeps.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The addresses one upstream host resolves to now (empty: none yet).
#[derive(Debug, Default)]
pub struct HostAddrs {
    addrs: ArcSwap<Vec<IpAddr>>,
    next: AtomicUsize,
}

impl HostAddrs {
    /// The address of an IP literal, which never changes.
    fn fixed(ip: IpAddr) -> Self {
        HostAddrs {
            addrs: ArcSwap::from_pointee(vec![ip]),
            next: AtomicUsize::new(0),
        }
    }

    /// The next address with `port`, in turn over all of the host's addresses; `None`
    /// while the name has never resolved.
    pub fn pick(&self, port: u16) -> Option<SocketAddr> {
        let addrs = self.addrs.load();
        let n = addrs.len();
        if n == 0 {
            return None;
        }
        let i = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        addrs.get(i).map(|ip| SocketAddr::new(*ip, port))
    }

    /// The addresses now (empty while the name has never resolved).
    pub fn current(&self) -> Arc<Vec<IpAddr>> {
        self.addrs.load_full()
    }

    /// Whether the host has at least one address.
    pub fn is_resolved(&self) -> bool {
        !self.addrs.load().is_empty()
    }

    /// Replaces the addresses (the resolver's fresh answer; never empty in practice, since
    /// a failed lookup keeps the last good ones). Returns whether they changed.
    pub fn set(&self, mut addrs: Vec<IpAddr>) -> bool {
        addrs.dedup();
        if **self.addrs.load() == addrs {
            return false;
        }
        self.addrs.store(Arc::new(addrs));
        true
    }
}

/// Host name → its shared addresses, held weakly: an entry lives as long as a route of
/// some live configuration uses it.
static TABLE: Mutex<Option<HashMap<String, Weak<HostAddrs>>>> = Mutex::new(None);

/// The shared addresses of `host` (`ip` when it is a literal). Routes naming the same
/// host get the same [`HostAddrs`] while any of them lives.
pub fn for_host(host: &str, ip: Option<IpAddr>) -> Arc<HostAddrs> {
    if let Some(ip) = ip {
        return Arc::new(HostAddrs::fixed(ip));
    }
    let Ok(mut guard) = TABLE.lock() else {
        // A panic while holding the lock: serve unshared (resolved by the next round).
        return Arc::new(HostAddrs::default());
    };
    let table = guard.get_or_insert_with(HashMap::new);
    if let Some(found) = table.get(host).and_then(Weak::upgrade) {
        return found;
    }
    table.retain(|_, w| w.strong_count() > 0);
    let fresh = Arc::new(HostAddrs::default());
    table.insert(host.to_string(), Arc::downgrade(&fresh));
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_their_addresses_while_used_and_turn_over_all_of_them() {
        let a = for_host("shared.test", None);
        let b = for_host("shared.test", None);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.pick(80), None);
        assert!(a.set(vec![
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap()
        ]));
        assert!(!b.set(vec![
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap()
        ]));
        let picks: Vec<_> = (0..4).map(|_| b.pick(8080).unwrap().to_string()).collect();
        assert_eq!(
            picks,
            [
                "10.0.0.1:8080",
                "10.0.0.2:8080",
                "10.0.0.1:8080",
                "10.0.0.2:8080"
            ]
        );
        drop((a, b));
        assert!(!for_host("shared.test", None).is_resolved());
        let lit = for_host("127.0.0.1", Some("127.0.0.1".parse().unwrap()));
        assert_eq!(lit.pick(1).unwrap().to_string(), "127.0.0.1:1");
    }
}
