//! Framework connections: the subscription stream of each connected framework, and since when
//! each disconnected one has been away. This is the master process's, not cluster state: a new
//! leader starts with every framework disconnected, as after a restart.

use super::tables::Frameworks;
use crate::proto::scheduler::Event;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Events buffered per subscription. A framework that falls further behind is not silently
/// skipped: its stream ends with an ERROR event and it must re-subscribe.
/// The channel allocates as it fills, so the bound costs nothing until a framework lags.
pub const STREAM_BUFFER: usize = 100_000;

/// One subscription stream.
pub(super) struct Stream {
    /// The `Mesos-Stream-Id`.
    pub id: String,
    tx: mpsc::Sender<Event>,
    /// Cancelled when an event did not fit: the stream writer then sends ERROR and ends the
    /// stream, so the framework learns it missed events and re-subscribes.
    overflow: CancellationToken,
}

impl Stream {
    /// A new stream and the receiving end for its writer.
    pub fn new(id: String) -> (Self, mpsc::Receiver<Event>, CancellationToken) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let overflow = CancellationToken::new();
        (
            Stream {
                id,
                tx,
                overflow: overflow.clone(),
            },
            rx,
            overflow,
        )
    }

    /// Queues an event for the framework. A full queue ends the stream with an ERROR rather than
    /// dropping the event unnoticed; false means the event was not queued.
    pub fn send(&self, framework_id: &str, event: Event) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflow.is_cancelled() {
                    tracing::warn!(framework = %framework_id, "framework is {STREAM_BUFFER} events behind: ending its stream with an error");
                    self.overflow.cancel();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Streams of connected frameworks; disconnection times of the others.
#[derive(Default)]
pub(super) struct Connections {
    streams: HashMap<String, Stream>,
    disconnected_at: HashMap<String, Instant>,
    /// Events held for the owner loop (replicated masters only). A `RefCell`: sending takes
    /// `&self` everywhere, and only the owner task touches the connections.
    held: Option<std::cell::RefCell<Vec<(String, Event)>>>,
}

impl Connections {
    /// A framework (re)connected; a previous stream is dropped, which ends it.
    pub fn connect(&mut self, framework_id: &str, stream: Stream) {
        self.disconnected_at.remove(framework_id);
        self.streams.insert(framework_id.to_string(), stream);
    }

    /// A framework known but not connected (recovered from the registry) since `now`.
    pub fn away_since(&mut self, framework_id: &str, now: Instant) {
        self.streams.remove(framework_id);
        self.disconnected_at.insert(framework_id.to_string(), now);
    }

    /// Stream `stream_id` of a framework ended; false if it was not the current one.
    pub fn disconnect(&mut self, framework_id: &str, stream_id: &str, now: Instant) -> bool {
        if self.current(framework_id) != Some(stream_id) {
            return false;
        }
        self.away_since(framework_id, now);
        true
    }

    /// Forgets a removed framework.
    pub fn remove(&mut self, framework_id: &str) {
        self.streams.remove(framework_id);
        self.disconnected_at.remove(framework_id);
    }

    /// The current stream id of a framework.
    pub fn current(&self, framework_id: &str) -> Option<&str> {
        self.streams.get(framework_id).map(|s| s.id.as_str())
    }

    /// Is the framework connected?
    pub fn is_connected(&self, framework_id: &str) -> bool {
        self.streams.contains_key(framework_id)
    }

    /// How many are connected.
    pub fn connected(&self) -> usize {
        self.streams.len()
    }

    /// Connections whose events are held (see [`Connections::take_held`]) until the owner
    /// loop releases them: a replicated master sends nothing before it is committed.
    pub fn holding() -> Self {
        Connections {
            held: Some(Default::default()),
            ..Default::default()
        }
    }

    /// Queues an event for a connected framework; false if it was not queued. When holding,
    /// the event is kept for [`Connections::take_held`] and true means the framework is
    /// connected now.
    pub fn send(&self, framework_id: &str, event: Event) -> bool {
        if let Some(held) = &self.held {
            if !self.is_connected(framework_id) {
                return false;
            }
            held.borrow_mut().push((framework_id.to_string(), event));
            return true;
        }
        self.send_now(framework_id, event)
    }

    /// Queues an event at once, holding or not.
    pub fn send_now(&self, framework_id: &str, event: Event) -> bool {
        self.streams
            .get(framework_id)
            .is_some_and(|s| s.send(framework_id, event))
    }

    /// The events held since the last call, in the order they were sent.
    pub fn take_held(&self) -> Vec<(String, Event)> {
        self.held
            .as_ref()
            .map(|h| std::mem::take(&mut *h.borrow_mut()))
            .unwrap_or_default()
    }

    /// Queues an event for every connected framework.
    pub fn broadcast(&self, event: &Event) {
        for id in self.streams.keys() {
            self.send(id, event.clone());
        }
    }

    /// Frameworks away for longer than their failover timeout at `now`.
    pub fn expired(&self, frameworks: &Frameworks, now: Instant) -> Vec<String> {
        let mut ids: Vec<String> = self
            .disconnected_at
            .iter()
            .filter(|(id, at)| {
                frameworks
                    .get(id)
                    .is_some_and(|f| now.saturating_duration_since(**at) >= f.failover_timeout)
            })
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Ends every stream (shutdown).
    pub fn close_all(&mut self) {
        self.streams.clear();
    }
}
