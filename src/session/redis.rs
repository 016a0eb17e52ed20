//! Sessions in Redis: a standalone server, a Cluster, or a Sentinel-managed master.
//!
//! Every operation is one round trip (a pipeline where it needs several commands on one
//! key) and is bounded by the configured timeout, so an unreachable Redis costs a request
//! at most that long before it is answered 503. Connections open on first use, on the
//! runtime that serves requests, and reopen by themselves: the connection manager
//! (standalone) follows its server; in Cluster mode a connection that fails (a dead
//! master's slots time out) is dropped and the next operation reads the slot map afresh
//! from the seed nodes; in Sentinel mode a failed connection, or a master that became a
//! replica (`READONLY`), is dropped and the next operation asks the sentinels for the
//! current master.
//!
//! A connection failure is logged when it starts (with its cause, see `redis_error.rs`)
//! and when Redis answers again; the failing operations in between are not logged here.

mod conn;
mod pubsub;

pub(super) use conn::{Conn, Connector};

use super::redis_error::{describe, is_connection_failure};
use super::redis_sentinel::sentinel_client;
use super::{Messages, Record, Store, StoreError};
use crate::config::{Rate, RedisMode};
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::{AsyncCommands, AsyncConnectionConfig, Client, TlsCertificates};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A Redis-backed store.
pub struct RedisStore {
    pub(super) connector: Connector,
    timeout: Duration,
    /// Whether the last operation failed for want of a connection (logged once per outage).
    failing: AtomicBool,
}

pub(super) fn bad_url(e: &redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("bad Redis address ({:?})", e.kind()))
}

impl RedisStore {
    /// Prepares a store. Nothing connects yet: the connection opens on first use and
    /// reopens after any failure, so the process starts (and reports not-ready) while Redis
    /// is down.
    ///
    /// # Errors
    /// An address does not parse.
    pub fn new(
        mode: &RedisMode,
        timeout: Duration,
        ca_pem: Option<&str>,
    ) -> Result<Self, StoreError> {
        // Trusted roots for TLS connections, when not the system's.
        let certs = || TlsCertificates {
            client_tls: None,
            root_cert: ca_pem.map(|pem| pem.as_bytes().to_vec()),
        };
        let connector = match mode {
            RedisMode::Single(url) => Connector::Single {
                client: match ca_pem {
                    Some(_) => Client::build_with_tls(url.as_str(), certs()),
                    None => Client::open(url.as_str()),
                }
                .map_err(|e| bad_url(&e))?,
                config: ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500)),
                conn: tokio::sync::OnceCell::new(),
            },
            RedisMode::Cluster(nodes) => {
                let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout);
                if ca_pem.is_some() {
                    builder = builder.certs(certs());
                }
                let nodes = nodes
                    .iter()
                    .map(|url| match ca_pem {
                        Some(_) => Client::build_with_tls(url.as_str(), certs()),
                        None => Client::open(url.as_str()),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad_url(&e))?;
                Connector::Cluster {
                    client: builder.build().map_err(|e| bad_url(&e))?,
                    conn: ArcSwapOption::empty(),
                    opening: tokio::sync::Mutex::new(()),
                    nodes,
                }
            }
            RedisMode::Sentinel {
                master_name,
                nodes,
                username,
                password,
                tls,
            } => Connector::Sentinel {
                sentinel: tokio::sync::Mutex::new(sentinel_client(
                    nodes,
                    master_name,
                    username.as_deref(),
                    password.as_ref().map(|p| p.expose()),
                    *tls,
                    ca_pem.map(|_| certs()),
                )?),
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout)),
                conn: ArcSwapOption::empty(),
            },
        };
        Ok(RedisStore {
            connector,
            timeout,
            failing: AtomicBool::new(false),
        })
    }

    /// The shared connection, opening it if needed.
    pub(super) async fn connection(&self) -> Result<Conn, StoreError> {
        match &self.connector {
            Connector::Single {
                client,
                config,
                conn,
            } => {
                let open = || ConnectionManager::new_with_config(client.clone(), config.clone());
                Ok(Conn::Single(
                    self.bounded(conn.get_or_try_init(open)).await?.clone(),
                ))
            }
            Connector::Cluster {
                client,
                conn,
                opening,
                ..
            } => {
                if let Some(c) = conn.load_full() {
                    return Ok(Conn::Cluster((*c).clone()));
                }
                let _opening = opening.lock().await;
                if let Some(c) = conn.load_full() {
                    return Ok(Conn::Cluster((*c).clone()));
                }
                let fresh = self.bounded(client.get_async_connection()).await?;
                conn.store(Some(Arc::new(fresh.clone())));
                Ok(Conn::Cluster(fresh))
            }
            Connector::Sentinel {
                sentinel,
                config,
                conn,
            } => {
                if let Some(c) = conn.load_full() {
                    return Ok(Conn::Plain((*c).clone()));
                }
                let mut guard = sentinel.lock().await;
                if let Some(c) = conn.load_full() {
                    return Ok(Conn::Plain((*c).clone()));
                }
                let fresh = self
                    .bounded(guard.get_async_connection_with_config(config))
                    .await?;
                conn.store(Some(Arc::new(fresh.clone())));
                tracing::info!("connected to the Redis master named by the sentinels");
                Ok(Conn::Plain(fresh))
            }
        }
    }

    /// Logs the start of a connection failure with its cause, once per outage.
    fn note_failure(&self, cause: &str) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(cause, "session store: Redis connection failed");
        }
    }

    /// Logs the end of an outage.
    fn note_success(&self) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("session store: Redis answers again");
        }
    }

    /// Records a failed operation: logged when it is the connection's, and a Sentinel-mode
    /// or Cluster connection forgotten after a failure that suggests a failover. Returns
    /// the error.
    fn on_failure(&self, e: &redis::RedisError) -> StoreError {
        let why = describe(e);
        if is_connection_failure(e) {
            self.note_failure(&why);
        }
        self.forget_on_failover(e);
        if e.is_timeout() {
            StoreError::Timeout
        } else {
            StoreError::Unavailable(why)
        }
    }

    /// Forgets a Sentinel-mode or Cluster connection after a failure that suggests a
    /// failover. A Cluster connection keeps sending a failed master's slots to its old
    /// address (connection attempts, then timeouts) and never reads the new slot map by
    /// itself; a new connection reads it from the seed nodes.
    fn forget_on_failover(&self, e: &redis::RedisError) {
        let suggests_failover = e.to_string().contains("READONLY")
            || e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout();
        if suggests_failover {
            self.forget_connection();
        }
    }

    /// Drops the Sentinel-mode or Cluster connection: the next operation opens another.
    fn forget_connection(&self) {
        match &self.connector {
            Connector::Sentinel { conn, .. } => conn.store(None),
            Connector::Cluster { conn, .. } => conn.store(None),
            Connector::Single { .. } => {}
        }
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.on_failure(&e)),
            Err(_) => {
                self.forget_connection();
                self.note_failure(&format!(
                    "timeout: no connection within {}ms",
                    self.timeout.as_millis()
                ));
                Err(StoreError::Timeout)
            }
        }
    }

    /// Runs one operation. Its time is bounded by the connection's own response timeout
    /// (set to the store timeout), so no extra timer is armed per request.
    pub(super) async fn run<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match op.await {
            Ok(v) => {
                self.note_success();
                Ok(v)
            }
            Err(e) => Err(self.on_failure(&e)),
        }
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, r: &Record) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let mut set = redis::cmd("SET");
        set.arg(&r.key).arg(&r.blob).arg("PX").arg(millis(r.ttl));
        self.run(set.query_async::<()>(&mut conn)).await?;
        self.add_to_indexes(&r.key, &r.indexes, r.index_ttl).await
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, StoreError> {
        let mut conn = self.connection().await?;
        let (blob, pttl): (Option<Vec<u8>>, i64) = self
            .run(redis::pipe().get(key).pttl(key).query_async(&mut conn))
            .await?;
        Ok(blob.map(|b| (b, Duration::from_millis(u64::try_from(pttl).unwrap_or(0)))))
    }

    async fn get_sliding(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.connection().await?;
        let mut getex = redis::cmd("GETEX");
        getex.arg(key).arg("PX").arg(millis(ttl));
        self.run(getex.query_async(&mut conn)).await
    }

    async fn update(&self, key: &str, blob: &[u8]) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let done: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(key)
                    .arg(blob)
                    .arg("XX")
                    .arg("KEEPTTL")
                    .query_async(&mut conn),
            )
            .await?;
        Ok(done.is_some())
    }

    async fn reseal(&self, key: &str, expected: &[u8], blob: &[u8]) -> Result<bool, StoreError> {
        self.compare_and_set(key, expected, blob).await
    }

    async fn join_indexes(
        &self,
        key: &str,
        indexes: &[String],
        index_ttl: Duration,
    ) -> Result<(), StoreError> {
        self.add_to_indexes(key, indexes, index_ttl).await
    }

    async fn scan_heads(
        &self,
        prefix: &str,
        suffix: &str,
        cursor: u64,
        count: usize,
        head: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        self.scan_record_heads(prefix, suffix, cursor, count, head)
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let n: u64 = self.run(conn.del(key)).await?;
        Ok(n > 0)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let _: bool = self.run(conn.pexpire(key, millis(ttl) as i64)).await?;
        Ok(())
    }

    async fn delete_index(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.connection().await?;
        let keys: Vec<String> = self.run(conn.smembers(index)).await?;
        let mut deleted = Vec::with_capacity(keys.len());
        // One DEL per key: members live in different Cluster slots.
        for key in keys {
            let n: u64 = self.run(conn.del(&key)).await?;
            if n > 0 {
                deleted.push(key);
            }
        }
        let _: u64 = self.run(conn.del(index)).await?;
        Ok(deleted)
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.connection().await?;
        self.run(conn.smembers(index)).await
    }

    async fn exist(&self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        self.exist_each(keys).await
    }

    async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let _: i64 = self.run(conn.publish(channel, message)).await?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Option<Messages>, StoreError> {
        self.subscription(channel).await.map(Some)
    }

    async fn put(&self, key: &str, blob: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        self.run(
            redis::cmd("SET")
                .arg(key)
                .arg(blob)
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<()>(&mut conn),
        )
        .await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.connection().await?;
        self.run(redis::cmd("GETDEL").arg(key).query_async(&mut conn))
            .await
    }

    async fn lock(&self, key: &str, token: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(key)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn unlock(&self, key: &str, token: &[u8]) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        // Only the holder releases: a lock that expired and was taken by another instance
        // stays theirs.
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        );
        let _: i64 = self
            .run(script.key(key).arg(token).invoke_async(&mut conn))
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let _: String = self.run(redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }

    async fn rate(&self, key: &str, rate: Rate) -> Result<Option<Duration>, StoreError> {
        let mut conn = self.connection().await?;
        let wait_us: u64 = self
            .run(
                super::rate::SCRIPT
                    .key(key)
                    .arg(rate.interval_us())
                    .arg(rate.tolerance_us())
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
    }
}
