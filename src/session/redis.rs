//! Sessions in Redis, over one multiplexed connection that reconnects by itself.
//!
//! Every operation is one round trip (a pipeline where it needs several commands) and is
//! bounded by the configured timeout, so an unreachable Redis costs a request at most that
//! long before it is answered 503.

use super::{Record, Store, StoreError};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client};
use std::future::Future;
use std::time::Duration;

/// A Redis-backed store.
pub struct RedisStore {
    client: Client,
    config: ConnectionManagerConfig,
    /// Opened by the first operation, on the runtime that serves requests (the manager
    /// spawns its driver task there); kept for the life of the process and reconnecting.
    conn: tokio::sync::OnceCell<ConnectionManager>,
    timeout: Duration,
}

impl RedisStore {
    /// Prepares a store for `url`. Nothing connects yet: the connection opens on first use
    /// and reopens after any failure, so the process starts (and reports not-ready) while
    /// Redis is down.
    ///
    /// # Errors
    /// The URL does not parse.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad Redis URL ({:?})", e.kind())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(RedisStore {
            client,
            config,
            conn: tokio::sync::OnceCell::new(),
            timeout,
        })
    }

    /// The shared connection, opening it if this is the first use (or the first use since
    /// Redis came up).
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let open = || ConnectionManager::new_with_config(self.client.clone(), self.config.clone());
        let conn = self.run(self.conn.get_or_try_init(open)).await?;
        Ok(conn.clone())
    }

    async fn run<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => Err(StoreError::Timeout),
            Ok(Err(e)) => Err(StoreError::Unavailable(describe(&e))),
            Err(_) => Err(StoreError::Timeout),
        }
    }
}

/// A description of a Redis error without anything from the command (keys, values).
fn describe(e: &redis::RedisError) -> String {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        "connection failed".into()
    } else {
        format!("{:?}", e.kind())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, r: &Record) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&r.key)
            .arg(&r.blob)
            .arg("PX")
            .arg(millis(r.ttl))
            .ignore();
        for index in &r.indexes {
            pipe.cmd("SADD").arg(index).arg(&r.key).ignore();
            // An index outlives its longest possible member; each login extends it.
            pipe.cmd("PEXPIRE")
                .arg(index)
                .arg(millis(r.index_ttl))
                .ignore();
        }
        self.run(pipe.query_async::<()>(&mut conn)).await
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, StoreError> {
        let mut conn = self.connection().await?;
        let (blob, pttl): (Option<Vec<u8>>, i64) = self
            .run(redis::pipe().get(key).pttl(key).query_async(&mut conn))
            .await?;
        Ok(blob.map(|b| (b, Duration::from_millis(u64::try_from(pttl).unwrap_or(0)))))
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

    async fn delete_index(&self, index: &str) -> Result<usize, StoreError> {
        let mut conn = self.connection().await?;
        let keys: Vec<String> = self.run(conn.smembers(index)).await?;
        let mut deleted = 0;
        // One DEL per key: members live in different Cluster slots.
        for key in &keys {
            let n: u64 = self.run(conn.del(key)).await?;
            deleted += usize::from(n > 0);
        }
        let _: u64 = self.run(conn.del(index)).await?;
        Ok(deleted)
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

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(set.is_some())
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
}
