//! The Redis commands a key rotation needs beside the everyday ones: a compare-and-set
//! re-seal, joining indexes, and a bounded walk over the session records that reads only
//! their clear headers (the key census).

use super::redis::{millis, Connector, RedisStore};
use super::StoreError;
use std::time::Duration;

impl RedisStore {
    /// Replaces `key`'s value with `blob`, keeping its TTL, if it still is `expected`.
    pub(super) async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        blob: &[u8],
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        // One script, so a write by another request or instance since `expected` was read
        // (a refresh) wins over the re-sealed copy of the older content.
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') return 1 else return 0 end",
        );
        let replaced: i64 = self
            .run(
                script
                    .key(key)
                    .arg(expected)
                    .arg(blob)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(replaced == 1)
    }

    /// Adds `key` to each index, extending the index to `index_ttl`.
    pub(super) async fn add_to_indexes(
        &self,
        key: &str,
        indexes: &[String],
        index_ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        // Indexes live in other Cluster slots than the session: one pipeline per index key.
        for index in indexes {
            let mut pipe = redis::pipe();
            pipe.cmd("SADD").arg(index).arg(key).ignore();
            // An index outlives its longest possible member; each login extends it.
            pipe.cmd("PEXPIRE")
                .arg(index)
                .arg(millis(index_ttl))
                .ignore();
            self.run(pipe.query_async::<()>(&mut conn)).await?;
        }
        Ok(())
    }

    /// One `SCAN` step over `prefix*suffix` and the first `head` bytes of each key found
    /// (`GETRANGE`, one pipeline).
    pub(super) async fn scan_record_heads(
        &self,
        prefix: &str,
        suffix: &str,
        cursor: u64,
        count: usize,
        head: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        if let Connector::Cluster { .. } = &self.connector {
            // SCAN walks one node; a cluster walk would need a cursor per master.
            return Err(StoreError::Unavailable(
                "counting keys is not supported on a Redis Cluster".into(),
            ));
        }
        let mut conn = self.connection().await?;
        let pattern = format!("{}*{}", glob_escape(prefix), glob_escape(suffix));
        let (next, keys): (u64, Vec<String>) = self
            .run(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn),
            )
            .await?;
        if keys.is_empty() {
            return Ok((next, Vec::new()));
        }
        let mut pipe = redis::pipe();
        let end = i64::try_from(head).unwrap_or(i64::MAX).saturating_sub(1);
        for key in &keys {
            pipe.cmd("GETRANGE").arg(key).arg(0).arg(end);
        }
        let heads: Vec<Vec<u8>> = self.run(pipe.query_async(&mut conn)).await?;
        // A key that expired between SCAN and GETRANGE reads as empty.
        Ok((next, heads.into_iter().filter(|h| !h.is_empty()).collect()))
    }
}

/// `s` matched literally in a Redis glob pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
