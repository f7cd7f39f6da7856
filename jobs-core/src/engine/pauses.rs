//! The engine's side of [`crate::control`]: the paused state of each job it serves, read at
//! start and kept up to date from the news on the control exchange.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::consumer::StopSignal;
use crate::control;
use crate::error::Result;
use crate::transport::{ReplyStream, Transport};

/// The longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether each job is paused, by job name: `true` while it is.
pub(super) type Paused = HashMap<&'static str, watch::Receiver<bool>>;

/// Subscribes to the news about `jobs`, then reads whether each is paused, and keeps that up to
/// date in a task of its own until `stop`. A subscription that fails at start is tried again in
/// that task, which reads every state again once it holds: the engine starts on the states it
/// read.
///
/// # Errors
///
/// When a first read fails: the engine does not start not knowing.
pub(super) async fn start(
    transport: &Arc<dyn Transport>,
    jobs: &[&'static str],
    stop: StopSignal,
) -> Result<Paused> {
    let mut paused = Paused::new();
    if jobs.is_empty() {
        return Ok(paused);
    }
    let keys: Vec<String> = jobs.iter().map(|job| control::news_key(job)).collect();
    // Subscribed before the first reads: a change made between them reaches the engine as news.
    let news = match transport.subscribe(control::EXCHANGE, &keys).await {
        Ok(news) => Some(news),
        Err(error) => {
            tracing::warn!(%error, "could not subscribe to the control exchange; trying again");
            None
        }
    };
    let mut states = HashMap::with_capacity(jobs.len());
    for &job in jobs {
        let now = control::is_paused(transport.as_ref(), job).await?;
        if now {
            tracing::info!(job, "paused: its consumer starts once it is resumed");
        }
        let (sender, receiver) = watch::channel(now);
        states.insert(job, sender);
        paused.insert(job, receiver);
    }
    let watcher = Watcher {
        transport: Arc::clone(transport),
        keys,
        states,
    };
    tokio::spawn(watcher.run(news, stop));
    Ok(paused)
}

/// Keeps the states up to date.
struct Watcher {
    transport: Arc<dyn Transport>,
    keys: Vec<String>,
    states: HashMap<&'static str, watch::Sender<bool>>,
}

impl Watcher {
    async fn run(self, news: Option<ReplyStream>, mut stop: StopSignal) {
        let mut news = match news {
            Some(news) => news,
            None => match self.resubscribe(&mut stop).await {
                Some(news) => news,
                None => return,
            },
        };
        loop {
            // Each piece of news says that a job's state changed: read it again.
            loop {
                let message = tokio::select! {
                    _ = stop.wait_for(Option::is_some) => return,
                    message = news.next() => message,
                };
                let Some(message) = message else { break };
                let job = message.properties.kind.as_deref().unwrap_or_default();
                if let Some((&job, state)) = self.states.get_key_value(job) {
                    self.refresh(job, state).await;
                }
            }
            tracing::warn!("the control subscription ended; subscribing again");
            let Some(again) = self.resubscribe(&mut stop).await else {
                return;
            };
            news = again;
        }
    }

    /// A new subscription, with every state read again (what changed while no subscription was
    /// open was not heard), or `None` at shutdown.
    async fn resubscribe(&self, stop: &mut StopSignal) -> Option<ReplyStream> {
        let news = self.subscribe(stop).await?;
        for (&job, state) in &self.states {
            self.refresh(job, state).await;
        }
        Some(news)
    }

    /// A new subscription, or `None` at shutdown.
    async fn subscribe(&self, stop: &mut StopSignal) -> Option<ReplyStream> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self
                .transport
                .subscribe(control::EXCHANGE, &self.keys)
                .await
            {
                Ok(news) => return Some(news),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "could not subscribe to the control exchange");
                }
            }
            tokio::select! {
                _ = stop.wait_for(Option::is_some) => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Reads whether `job` is paused into `state`. A read that fails leaves the state as it
    /// was: it fails with the connection, whose loss ends the subscription too, and the next
    /// subscription reads every state again.
    async fn refresh(&self, job: &'static str, state: &watch::Sender<bool>) {
        match control::is_paused(self.transport.as_ref(), job).await {
            Ok(paused) => {
                if state.send_replace(paused) != paused {
                    if paused {
                        tracing::info!(job, "paused: its consumer stops; running jobs finish");
                    } else {
                        tracing::info!(job, "resumed");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(job, %error, "could not read whether the job is paused");
            }
        }
    }
}

/// A signal that is `true` while `a` or `b` is, until `stop` or until nobody listens: a job's
/// consumer stops while the job is paused, its kill switch is open or it lost a slot. A signal
/// whose sender is gone keeps its last value.
pub(super) fn either(
    mut a: watch::Receiver<bool>,
    mut b: watch::Receiver<bool>,
    mut stop: StopSignal,
) -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(*a.borrow_and_update() || *b.borrow_and_update());
    tokio::spawn(async move {
        let (mut a_open, mut b_open) = (true, true);
        while a_open || b_open {
            tokio::select! {
                _ = stop.wait_for(Option::is_some) => return,
                // Nobody listens any more.
                () = sender.closed() => return,
                changed = a.changed(), if a_open => a_open = changed.is_ok(),
                changed = b.changed(), if b_open => b_open = changed.is_ok(),
            }
            let now = *a.borrow_and_update() || *b.borrow_and_update();
            sender.send_if_modified(|value| std::mem::replace(value, now) != now);
        }
    });
    receiver
}
