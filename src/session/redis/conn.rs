//! The store's way to Redis (standalone, Cluster or Sentinel) and one connection of
//! whichever kind, usable wherever the `redis` crate takes a connection.

use arc_swap::ArcSwapOption;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, Value};

/// How the store reaches Redis.
pub(in crate::session) enum Connector {
    Single {
        client: Client,
        config: ConnectionManagerConfig,
        conn: tokio::sync::OnceCell<ConnectionManager>,
    },
    Cluster {
        client: ClusterClient,
        /// The connection in use; forgotten after a failure that suggests the Cluster
        /// changed (a failover), so the next one reads the slot map afresh.
        conn: ArcSwapOption<ClusterConnection>,
        /// Held while a connection is opened, so concurrent requests open one.
        opening: tokio::sync::Mutex<()>,
        /// One client per configured node, for subscriptions (a Cluster relays `PUBLISH`
        /// to every node, so any node will do).
        nodes: Vec<Client>,
    },
    Sentinel {
        sentinel: tokio::sync::Mutex<SentinelClient>,
        config: AsyncConnectionConfig,
        conn: ArcSwapOption<MultiplexedConnection>,
    },
}

/// One connection of whichever kind; cheap to clone, multiplexed.
#[derive(Clone)]
pub(in crate::session) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Plain(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
        }
    }
}
