//! Pub/sub and batch reads of the Redis store: the revocation channel's subscription (on
//! the server, a Cluster node, or the master the sentinels name) and existence checks of
//! many sessions at once.

use super::{Connector, RedisStore};
use crate::session::{Messages, StoreError};
use futures_util::StreamExt;
use redis::{AsyncCommands, Client};

impl RedisStore {
    /// A client for a pub/sub connection: the server, a Cluster node that answers (each
    /// tried in turn), or the master the sentinels name now.
    async fn pubsub_client(&self) -> Result<Client, StoreError> {
        match &self.connector {
            Connector::Single { client, .. } => Ok(client.clone()),
            Connector::Cluster { nodes, .. } => {
                let mut last = StoreError::Unavailable("no Cluster node configured".into());
                for node in nodes {
                    let mut conn = match self.bounded(node.get_multiplexed_async_connection()).await
                    {
                        Ok(c) => c,
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    };
                    let pong: Result<String, _> = self
                        .bounded(redis::cmd("PING").query_async(&mut conn))
                        .await;
                    match pong {
                        Ok(_) => return Ok(node.clone()),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Connector::Sentinel { sentinel, .. } => {
                let mut guard = sentinel.lock().await;
                self.bounded(guard.async_get_client()).await
            }
        }
    }

    /// Which of `keys` exist: one pipeline of `EXISTS` (one command per key on a Cluster,
    /// where the keys live in different slots).
    pub(super) async fn exist_each(&self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        let mut conn = self.connection().await?;
        if matches!(self.connector, Connector::Cluster { .. }) {
            // Keys of different sessions live in different slots: one command each.
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.run(conn.exists(key)).await?);
            }
            return Ok(out);
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.exists(key);
        }
        self.run(pipe.query_async(&mut conn)).await
    }

    /// Subscribes to `channel` on its own connection: the channel's messages until the
    /// connection is lost.
    pub(super) async fn subscription(&self, channel: &str) -> Result<Messages, StoreError> {
        let client = self.pubsub_client().await?;
        let mut pubsub = self.bounded(client.get_async_pubsub()).await?;
        self.bounded(pubsub.subscribe(channel)).await?;
        let messages = pubsub
            .into_on_message()
            .map(|m| m.get_payload_bytes().to_vec());
        Ok(Box::pin(messages))
    }
}
