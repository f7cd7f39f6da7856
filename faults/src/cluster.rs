//! Three private nodes joined into one RabbitMQ cluster on loopback, for quorum queues that
//! survive the loss of a node.

use std::io;

use crate::node::PrivateNode;

/// A cluster of [`PrivateNode`]s: the first one started alone, the others joined to it with
/// `stop_app`, `join_cluster` and `start_app`. Quorum queues declared on it get a member on
/// every node. Dropping it kills every node.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<PrivateNode>,
}

impl Cluster {
    /// Starts `size` nodes (at least one) and joins them into one cluster.
    ///
    /// # Errors
    ///
    /// When a node does not boot or does not join.
    pub async fn start(size: usize) -> io::Result<Self> {
        let mut nodes = Vec::with_capacity(size);
        // One after the other: booting nodes at once on a small machine only slows each down.
        for _ in 0..size.max(1) {
            nodes.push(PrivateNode::start_new().await?);
        }
        let seed = nodes[0].name().to_owned();
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]).await?;
            node.ctl(&["join_cluster", &seed]).await?;
            node.ctl(&["start_app"]).await?;
            node.ctl(&["await_startup", "--timeout", "60"]).await?;
        }
        let cluster = Self { nodes };
        let running = cluster.running_nodes(0).await?;
        for node in &cluster.nodes {
            if !running.contains(node.name()) {
                return Err(io::Error::other(format!(
                    "{} is not among the running nodes of the cluster: {running}",
                    node.name()
                )));
            }
        }
        Ok(cluster)
    }

    /// The node at `index`.
    ///
    /// # Panics
    ///
    /// When there is no such node.
    #[must_use]
    pub fn node(&self, index: usize) -> &PrivateNode {
        &self.nodes[index]
    }

    /// The node at `index`, to stop, kill or start it.
    ///
    /// # Panics
    ///
    /// When there is no such node.
    pub fn node_mut(&mut self, index: usize) -> &mut PrivateNode {
        &mut self.nodes[index]
    }

    /// How many nodes the cluster has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never, once started).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The AMQP URLs of every node, in order.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(PrivateNode::url).collect()
    }

    /// The running nodes as the node at `asked` sees them (an Erlang list of names).
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` fails on that node.
    pub async fn running_nodes(&self, asked: usize) -> io::Result<String> {
        self.nodes[asked].eval("rabbit_nodes:all_running().").await
    }

    /// The node that leads quorum queue `queue` of the default virtual host, asked of the node at
    /// `asked`: its index in the cluster, if one leads and is ours.
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` fails on that node.
    pub async fn leader_of(&self, queue: &str, asked: usize) -> io::Result<Option<usize>> {
        let listed = self.nodes[asked]
            .ctl(&[
                "list_queues",
                "--quiet",
                "--no-table-headers",
                "name",
                "leader",
            ])
            .await?;
        let leader = listed.lines().find_map(|line| {
            let mut columns = line.split_whitespace();
            (columns.next() == Some(queue))
                .then(|| columns.next())
                .flatten()
        });
        Ok(leader.and_then(|name| self.nodes.iter().position(|node| node.name() == name)))
    }
}
