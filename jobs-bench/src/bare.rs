//! The bare baseline of the in-memory rows: the least a broker-less job system can do.
//!
//! The same protobuf bytes the framework publishes, encoded per job from the same producer
//! tasks, go down a tokio channel to a loop that spawns a task per message, which decodes it
//! and reports to the [`SINK`] as the framework's handler does. No acks, no prefetch, no
//! envelope: the in-memory transport's `memory` rows set against this, in the raw column, show
//! what its broker semantics and the engine cost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::message::BenchJob;
use crate::pace::Pacer;
use crate::plan::Client;
use crate::raw::IN_FLIGHT;
use crate::sink::SINK;

/// The channel, and the receiving end while no consumer holds it.
#[derive(Debug)]
pub struct Bare {
    sender: mpsc::UnboundedSender<Vec<u8>>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Vec<u8>>>>,
    /// Producer tasks sharing the sends, as the framework's share their enqueues.
    producers: usize,
}

/// A consumer while it runs: its loop, and what stops it.
#[derive(Debug)]
pub struct Consuming {
    stop: oneshot::Sender<()>,
    task: JoinHandle<mpsc::UnboundedReceiver<Vec<u8>>>,
}

impl Bare {
    /// An empty channel, fed by `producers` tasks.
    #[must_use]
    pub fn new(producers: usize) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            receiver: Mutex::new(Some(receiver)),
            producers: producers.clamp(1, IN_FLIGHT),
        }
    }

    fn receiver(&self) -> std::sync::MutexGuard<'_, Option<mpsc::UnboundedReceiver<Vec<u8>>>> {
        self.receiver.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Job `seq` as the framework's enqueue encodes it.
fn encode(seq: u64) -> Vec<u8> {
    let job = BenchJob::new(seq);
    let mut body = Vec::with_capacity(job.encoded_len());
    // Into a Vec with room for it: cannot fail.
    let _ = job.encode(&mut body);
    body
}

fn send(sender: &mpsc::UnboundedSender<Vec<u8>>, seq: u64) -> anyhow::Result<()> {
    sender
        .send(encode(seq))
        .ok()
        .context("the baseline's channel is closed")
}

impl Client for Bare {
    type Running = Consuming;

    async fn publish(&self, count: u64, pacer: Option<Pacer>) -> anyhow::Result<()> {
        let mut producers = Vec::new();
        match pacer {
            None => {
                let next = Arc::new(AtomicU64::new(0));
                for _ in 0..self.producers {
                    let (next, sender) = (Arc::clone(&next), self.sender.clone());
                    producers.push(tokio::spawn(async move {
                        loop {
                            let seq = next.fetch_add(1, Ordering::Relaxed);
                            if seq >= count {
                                return anyhow::Ok(());
                            }
                            send(&sender, seq)?;
                            // As the in-memory publish does: a send never waits, and a
                            // producer that never yields starves the consumer on its runtime.
                            tokio::task::coop::consume_budget().await;
                        }
                    }));
                }
            }
            Some(pacer) => {
                for seq in 0..count {
                    pacer.until_due(seq).await;
                    let sender = self.sender.clone();
                    producers.push(tokio::spawn(async move { send(&sender, seq) }));
                }
            }
        }
        for producer in producers {
            producer.await??;
        }
        Ok(())
    }

    /// Every job from one task: a channel has no batch to publish.
    async fn publish_batch(&self, count: u64) -> anyhow::Result<()> {
        for seq in 0..count {
            send(&self.sender, seq)?;
            tokio::task::coop::consume_budget().await;
        }
        Ok(())
    }

    async fn start(&self, _count: u64) -> anyhow::Result<Consuming> {
        let mut receiver = self
            .receiver()
            .take()
            .context("the baseline already has a consumer")?;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    body = receiver.recv() => match body {
                        Some(body) => {
                            tokio::spawn(async move {
                                if let Ok(job) = BenchJob::decode(body.as_slice()) {
                                    SINK.record(&job);
                                }
                            });
                        }
                        None => break,
                    },
                }
            }
            receiver
        });
        Ok(Consuming { stop, task })
    }

    async fn stop(&self, running: Consuming) -> anyhow::Result<()> {
        let _ = running.stop.send(());
        let receiver = running.task.await?;
        *self.receiver() = Some(receiver);
        Ok(())
    }

    async fn ready(&self) -> anyhow::Result<u64> {
        let ready = self
            .receiver()
            .as_ref()
            .map_or(0, mpsc::UnboundedReceiver::len);
        Ok(u64::try_from(ready).unwrap_or(u64::MAX))
    }

    async fn purge(&self) -> anyhow::Result<()> {
        if let Some(receiver) = self.receiver().as_mut() {
            while receiver.try_recv().is_ok() {}
        }
        Ok(())
    }
}
