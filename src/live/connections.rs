//! The long-lived proxied connections of this process (WebSockets, event streams), by the
//! session they run for, so they can be ended from outside the request loop when their
//! session ends.
//!
//! A connection is ended by shutting down its upstream socket (`shutdown(2)`, both
//! directions): Pingora's duplex loop then sees the upstream end and finishes the response,
//! closing the client's stream. A socket is identified by its descriptor *and* the local and
//! peer addresses recorded when it was registered, so a descriptor number that Pingora
//! closed and the kernel handed to another socket is never touched.

use crate::metrics;
use nix::sys::socket::{getpeername, getsockname, shutdown, Shutdown, SockaddrStorage};
use std::collections::HashMap;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a connection was ended (the `reason` label of the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its session was deleted (logout, back-channel logout, an operator).
    Revoked,
    /// Its session reached its absolute end or its idle timeout.
    Expired,
}

impl CloseReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Revoked => "revoked",
            CloseReason::Expired => "expired",
        }
    }
}

/// One registered connection's socket and deadlines.
#[derive(Debug)]
struct Tracked {
    id: u64,
    fd: RawFd,
    local: SockaddrStorage,
    peer: SockaddrStorage,
    /// The session's absolute end, unix seconds.
    ends_at: u64,
    /// When the session may have gone idle in the store, so it is checked there.
    idle_check_at: Instant,
    /// When it was registered: its session was in use just before.
    registered_at: Instant,
}

/// A registration, held by the request that owns the connection; handed back to
/// [`LiveConnections::unregister`] when the request ends.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    hash: String,
}

/// The registry of this process's long-lived connections.
#[derive(Debug, Default)]
pub struct LiveConnections {
    by_session: Mutex<HashMap<String, Vec<Tracked>>>,
    next_id: AtomicU64,
}

/// The socket's current local and peer addresses, if it is a connected socket.
fn addresses(fd: RawFd) -> Option<(SockaddrStorage, SockaddrStorage)> {
    Some((getsockname(fd).ok()?, getpeername(fd).ok()?))
}

/// Shuts a tracked socket down if the descriptor is still the socket registered.
fn end(t: &Tracked) -> bool {
    match addresses(t.fd) {
        Some((local, peer)) if local == t.local && peer == t.peer => {
            shutdown(t.fd, Shutdown::Both).is_ok()
        }
        _ => false,
    }
}

impl LiveConnections {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Tracked>>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.by_session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tracks the upstream socket `fd` of a connection of the session `hash` that ends at
    /// `ends_at` (unix seconds). Its session is checked in the store at the next sweep (a
    /// revocation announced between the request's admission and its registration would
    /// otherwise go unseen), then whenever it may have gone idle. `None` when `fd` is not
    /// a connected socket (nothing to track).
    pub fn register(&self, hash: String, fd: RawFd, ends_at: u64) -> Option<Registration> {
        let (local, peer) = addresses(fd)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        self.map().entry(hash.clone()).or_default().push(Tracked {
            id,
            fd,
            local,
            peer,
            ends_at,
            idle_check_at: now,
            registered_at: now,
        });
        metrics::LIVE_CONNECTIONS.inc();
        Some(Registration { id, hash })
    }

    /// Stops tracking a connection (its request ended); a no-op if it was ended already.
    pub fn unregister(&self, reg: &Registration) {
        let mut map = self.map();
        if let Some(list) = map.get_mut(&reg.hash) {
            if let Some(at) = list.iter().position(|t| t.id == reg.id) {
                list.swap_remove(at);
                metrics::LIVE_CONNECTIONS.dec();
            }
            if list.is_empty() {
                map.remove(&reg.hash);
            }
        }
    }

    /// Ends every connection of the sessions `hashes`; how many were ended.
    pub fn close_sessions(&self, hashes: &[String], reason: CloseReason) -> usize {
        self.close(hashes, |_| reason)
    }

    /// Ends every connection of the sessions `hashes`, which the store no longer holds.
    /// A connection is counted as expired when its session could have ended by itself by
    /// `now` (unix seconds `now_secs`): at its absolute end, or `idle` after its last use,
    /// which the store may have seen up to `slack` before the connection was registered.
    /// Otherwise its session was deleted, and it is counted as revoked.
    pub fn close_gone(
        &self,
        hashes: &[String],
        (now, now_secs): (Instant, u64),
        idle: Duration,
        slack: Duration,
    ) -> usize {
        self.close(hashes, |t| gone_reason(t, (now, now_secs), idle, slack))
    }

    /// Ends every connection of the sessions `hashes`, each counted for its `reason`.
    fn close(&self, hashes: &[String], reason: impl Fn(&Tracked) -> CloseReason) -> usize {
        let mut map = self.map();
        let mut closed = 0;
        for hash in hashes {
            if let Some(list) = map.remove(hash) {
                closed += close_all(&list, &reason);
            }
        }
        closed
    }

    /// Ends the connections whose session passed its absolute end at `now` (unix
    /// seconds); how many were ended.
    pub fn close_ended(&self, now: u64) -> usize {
        let mut map = self.map();
        let mut closed = 0;
        map.retain(|_, list| {
            let (ended, live): (Vec<Tracked>, Vec<Tracked>) = std::mem::take(list)
                .into_iter()
                .partition(|t| t.ends_at <= now);
            closed += close_all(&ended, |_| CloseReason::Expired);
            *list = live;
            !list.is_empty()
        });
        closed
    }

    /// Up to `max` sessions with a connection whose idle check is due at `now` (all of
    /// them with `now` far ahead). Their next check is set `idle` later, so a session
    /// still in the store is asked about again only after its idle timeout could pass.
    pub fn due_for_check(&self, now: Instant, idle: Duration, max: usize) -> Vec<String> {
        let mut map = self.map();
        let mut due = Vec::new();
        for (hash, list) in map.iter_mut() {
            if due.len() >= max {
                break;
            }
            if list.iter().any(|t| t.idle_check_at <= now) {
                for t in list.iter_mut() {
                    t.idle_check_at = Instant::now() + idle;
                }
                due.push(hash.clone());
            }
        }
        due
    }

    /// Makes the sessions `hashes` due for a check at once (their last check failed).
    pub fn check_again(&self, hashes: &[String]) {
        let mut map = self.map();
        let now = Instant::now();
        for hash in hashes {
            for t in map.get_mut(hash).into_iter().flatten() {
                t.idle_check_at = now;
            }
        }
    }

    /// How many connections are tracked.
    pub fn len(&self) -> usize {
        self.map().values().map(Vec::len).sum()
    }

    /// Whether no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// Why the session of `t` is gone from the store at `now`: see
/// [`LiveConnections::close_gone`].
fn gone_reason(
    t: &Tracked,
    (now, now_secs): (Instant, u64),
    idle: Duration,
    slack: Duration,
) -> CloseReason {
    if t.ends_at <= now_secs.saturating_add(1) || t.registered_at + idle <= now + slack {
        CloseReason::Expired
    } else {
        CloseReason::Revoked
    }
}

/// Ends each connection of `list`, counting each as closed for its `reason`; how many were
/// ended. Each leaves the gauge whether or not its socket was still there.
fn close_all(list: &[Tracked], reason: impl Fn(&Tracked) -> CloseReason) -> usize {
    let mut closed = 0;
    for t in list {
        metrics::LIVE_CONNECTIONS.dec();
        if end(t) {
            closed += 1;
            metrics::LIVE_CLOSED
                .with_label_values(&[reason(t).label()])
                .inc();
        }
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::io::AsRawFd;

    #[test]
    fn a_revoked_session_loses_its_sockets_and_others_keep_theirs() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let a = std::net::TcpStream::connect(addr).expect("connect a");
        let b = std::net::TcpStream::connect(addr).expect("connect b");
        let live = LiveConnections::default();
        let ra = live
            .register("a".repeat(64), a.as_raw_fd(), u64::MAX)
            .expect("a connected socket registers");
        let _rb = live
            .register("b".repeat(64), b.as_raw_fd(), u64::MAX)
            .expect("registers");
        assert_eq!(live.len(), 2);
        assert_eq!(
            live.close_sessions(&["a".repeat(64)], CloseReason::Revoked),
            1
        );
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &a, &mut buf).expect("read"), 0);
        live.unregister(&ra);
        assert_eq!(live.len(), 1);
        b.set_nonblocking(true).expect("nonblocking");
        assert!(
            std::io::Read::read(&mut &b, &mut buf).is_err(),
            "b was shut down"
        );
    }

    #[test]
    fn a_past_absolute_end_closes_and_idle_checks_come_due() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("a");
        let live = LiveConnections::default();
        live.register("c".repeat(64), a.as_raw_fd(), 100)
            .expect("registers");
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            live.due_for_check(later, Duration::from_secs(60), 10),
            vec!["c".repeat(64)]
        );
        assert!(live
            .due_for_check(later, Duration::from_secs(60), 10)
            .is_empty());
        live.check_again(&["c".repeat(64)]);
        assert_eq!(
            live.due_for_check(later, Duration::from_secs(60), 10),
            vec!["c".repeat(64)]
        );
        assert_eq!(live.close_ended(99), 0);
        assert_eq!(live.close_ended(100), 1);
        assert!(live.is_empty());
    }

    #[test]
    fn a_descriptor_that_is_not_a_connected_socket_is_not_tracked() {
        let live = LiveConnections::default();
        assert!(live.register("d".repeat(64), -1, u64::MAX).is_none());
    }

    #[test]
    fn a_session_missing_before_it_could_run_out_was_revoked() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("a");
        let (local, peer) = addresses(a.as_raw_fd()).expect("connected");
        let registered_at = Instant::now();
        let t = Tracked {
            id: 0,
            fd: a.as_raw_fd(),
            local,
            peer,
            ends_at: 1_000,
            idle_check_at: registered_at,
            registered_at,
        };
        let idle = Duration::from_secs(60);
        let slack = Duration::from_secs(2);
        // (seconds after registration, unix seconds now) → the reason counted.
        for (after, now_secs, reason) in [
            (0, 500, CloseReason::Revoked),
            (57, 500, CloseReason::Revoked),
            (58, 500, CloseReason::Expired),
            (0, 999, CloseReason::Expired),
        ] {
            let now = (registered_at + Duration::from_secs(after), now_secs);
            assert_eq!(
                gone_reason(&t, now, idle, slack),
                reason,
                "{after} s, {now_secs}"
            );
        }
        let live = LiveConnections::default();
        live.register("e".repeat(64), a.as_raw_fd(), u64::MAX)
            .expect("registers");
        let now = (Instant::now(), 500);
        assert_eq!(live.close_gone(&["e".repeat(64)], now, idle, slack), 1);
        assert!(live.is_empty());
    }
}
