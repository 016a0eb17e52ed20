//! The revocation bus: every session deletion is announced, on every instance, so live
//! connections of an ended session can be closed.
//!
//! An announcement names sessions by the hash in their storage key (`sha256(id)` as hex),
//! never by id. It goes to this process's subscribers at once (a `tokio` broadcast) and,
//! on a shared store, to every instance through the store's pub/sub channel
//! (`<key_prefix>revoked`), which [`Revocations::listen`] relays into the local broadcast.
//! A relay that lost its subscription announces [`Revocation::Recheck`] once it is back:
//! announcements made in between may be lost, so subscribers re-check what they hold.
//! The bus also keeps the session cache true: what it announces or hears is forgotten
//! there first, and the cache is emptied when the subscription is lost and again when it
//! is back. A session that changed (new tokens) is announced as `~<hash>` on the same
//! channel: caches forget it, live connections keep going (and instances that predate
//! this ignore it, as they ignore anything that is not a hash).

use super::{SessionCache, SessionId, Store};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// What subscribers of the bus hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// These sessions (storage-key hashes) ended.
    Sessions(Arc<[String]>),
    /// Announcements may have been missed: check every held session against the store.
    Recheck,
}

/// How many announcements a slow subscriber may fall behind before it hears `Recheck`.
const LOCAL_CAPACITY: usize = 1024;
/// At most this many hashes are read from one pub/sub message.
const MAX_PER_MESSAGE: usize = 4096;
/// The longest wait between two attempts to subscribe.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first wait after a lost or failed subscription.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The bus of one session store.
#[derive(Clone)]
pub struct Revocations {
    local: broadcast::Sender<Revocation>,
    channel: Arc<str>,
    cache: Option<Arc<SessionCache>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// The pub/sub channel of a key prefix.
pub(crate) fn channel_name(prefix: &str) -> String {
    format!("{prefix}revoked")
}

/// Whether `s` looks like a storage-key hash (64 lower-case hex digits).
fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What one pub/sub message says: the hashes of ended sessions, and of changed ones
/// (`~<hash>`). Anything else is ignored.
fn parse(message: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut ended, mut changed) = (Vec::new(), Vec::new());
    let words = std::str::from_utf8(message).unwrap_or("").split(' ');
    for word in words.take(MAX_PER_MESSAGE) {
        match word.strip_prefix('~') {
            Some(hash) if is_hash(hash) => changed.push(hash.to_owned()),
            None if is_hash(word) => ended.push(word.to_owned()),
            _ => {}
        }
    }
    (ended, changed)
}

impl Revocations {
    /// A bus announcing on `channel`, keeping `cache` (if any) true.
    pub(crate) fn new(channel: String, cache: Option<Arc<SessionCache>>) -> Self {
        Revocations {
            local: broadcast::channel(LOCAL_CAPACITY).0,
            channel: channel.into(),
            cache,
        }
    }

    /// The session cache the bus keeps true, if the store has one.
    pub(crate) fn cache(&self) -> Option<&SessionCache> {
        self.cache.as_deref()
    }

    /// Announces that a session changed (new tokens): forgotten by this process's cache at
    /// once and by every instance's when the message arrives. Only with a cache: without
    /// one nobody holds a copy. A failure to publish is logged: other instances' copies
    /// then age out within the cache's window.
    pub(crate) async fn announce_changed(&self, store: &dyn Store, id: &SessionId) {
        let Some(cache) = &self.cache else { return };
        let hash = super::codec::key_hash(id);
        cache.forget(std::slice::from_ref(&hash));
        let message = format!("~{hash}");
        if let Err(e) = store.publish(&self.channel, message.as_bytes()).await {
            tracing::warn!(error = %e, "could not announce a changed session to other instances");
        }
    }

    /// Empties the cache, which serves again only if `heard` (announcements are heard from
    /// now on).
    fn trust_cache(&self, heard: bool) {
        if let Some(cache) = &self.cache {
            cache.trust(heard);
        }
    }

    /// Hears every announcement from now on (this process's and, once [`Self::listen`]
    /// runs, other instances').
    pub fn subscribe(&self) -> broadcast::Receiver<Revocation> {
        self.local.subscribe()
    }

    /// Announces ended sessions here at once and to every instance through `store`. A
    /// failure to publish is logged: the deletion stands, other instances' connections then
    /// end at their next idle check.
    pub(crate) async fn announce(&self, store: &dyn Store, hashes: Vec<String>) {
        if hashes.is_empty() {
            return;
        }
        if let Some(cache) = &self.cache {
            cache.forget(&hashes);
        }
        let message = hashes.join(" ");
        // No subscriber yet (no proxy in this process) is not an error.
        let _ = self.local.send(Revocation::Sessions(hashes.into()));
        if let Err(e) = store.publish(&self.channel, message.as_bytes()).await {
            tracing::warn!(error = %e, "could not announce a revocation to other instances");
        }
    }

    /// Relays other instances' announcements from the store's channel into this process
    /// until the store says it has none (the memory store) or `stop` resolves. A lost
    /// subscription is reopened with backoff and followed by [`Revocation::Recheck`].
    pub async fn listen(&self, store: Arc<dyn Store>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut backoff = MIN_BACKOFF;
        loop {
            let opened = tokio::select! {
                () = &mut stop => return self.trust_cache(false),
                r = store.subscribe(&self.channel) => r,
            };
            match opened {
                Ok(None) => return,
                Ok(Some(mut messages)) => {
                    tracing::debug!(channel = %self.channel, "listening for revocations");
                    backoff = MIN_BACKOFF;
                    self.trust_cache(true);
                    let _ = self.local.send(Revocation::Recheck);
                    loop {
                        let next = tokio::select! {
                            () = &mut stop => return self.trust_cache(false),
                            m = messages.next() => m,
                        };
                        let Some(message) = next else { break };
                        let (ended, changed) = parse(&message);
                        if let Some(cache) = &self.cache {
                            if !changed.is_empty() {
                                cache.forget(&changed);
                            }
                            if !ended.is_empty() {
                                cache.forget(&ended);
                            }
                        }
                        if !ended.is_empty() {
                            let _ = self.local.send(Revocation::Sessions(ended.into()));
                        }
                    }
                    self.trust_cache(false);
                    tracing::warn!("the revocation subscription was lost; reopening it");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not subscribe to revocations; retrying");
                }
            }
            tokio::select! {
                () = &mut stop => return self.trust_cache(false),
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hashes_are_read_from_a_message() {
        let a = "a".repeat(64);
        let b = "0123456789abcdef".repeat(4);
        let c = "c".repeat(64);
        let msg = format!(
            "{a} nothex {b} {} {} ~{c} ~x ~~{c}",
            "A".repeat(64),
            "a".repeat(63)
        );
        assert_eq!(parse(msg.as_bytes()), (vec![a, b], vec![c]));
        assert_eq!(parse(&[0xff, 0xfe]), (vec![], vec![]));
    }

    #[tokio::test]
    async fn local_subscribers_hear_announcements() {
        let bus = Revocations::new(channel_name("t:"), None);
        let store = crate::session::MemoryStore::new(10);
        let mut rx = bus.subscribe();
        bus.announce(&store, vec!["b".repeat(64)]).await;
        assert_eq!(
            rx.recv().await.expect("announcement"),
            Revocation::Sessions(vec!["b".repeat(64)].into())
        );
        bus.announce(&store, Vec::new()).await;
        assert!(rx.try_recv().is_err());
    }
}
