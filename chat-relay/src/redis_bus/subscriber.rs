//! A node's side of the bus: its rooms' subscriptions (made again after every lost
//! connection), the offset each room has delivered, gap fills from the streams, and the
//! viewer counts and reactions it shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;

use super::{RedisBus, entry_message, key};
use crate::envelope::{Envelope, decode, encode};
use crate::protocol::ServerFrame;
use crate::room::{ClusterEvent, Frame, Hub, Room};

impl RedisBus {
    /// Keeps this node's rooms subscribed (again after every lost connection), fills gaps
    /// from the streams, and shares viewer counts and reactions. Runs for the process.
    pub async fn run(
        self: Arc<Self>,
        hub: Arc<Hub>,
        mut events: mpsc::UnboundedReceiver<ClusterEvent>,
    ) {
        let presence = {
            let (bus, hub) = (self.clone(), hub.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(bus.presence_interval);
                loop {
                    tick.tick().await;
                    if let Err(e) = bus.presence(&hub).await {
                        tracing::warn!(error = %e, "cannot share viewer counts");
                    }
                }
            })
        };
        // The rooms and the last offset each has delivered.
        let mut rooms: HashMap<String, (Weak<Room>, u64)> = HashMap::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            let pubsub = match self.client.get_async_pubsub().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "redis pub/sub unavailable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    // Rooms that came and went meanwhile.
                    while let Ok(event) = events.try_recv() {
                        self.event(&mut rooms, None, event, false).await;
                    }
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let (mut sink, mut stream) = pubsub.split();
            rooms.retain(|_, (room, _)| room.strong_count() > 0);
            let names: Vec<String> = rooms.keys().map(|n| key(n, "frames")).collect();
            if !names.is_empty() && sink.subscribe(&names).await.is_err() {
                continue;
            }
            // What was published while unsubscribed comes from the streams.
            let resumed: Vec<String> = rooms.keys().cloned().collect();
            for name in resumed {
                if let Some((room, last)) = rooms.get(&name).cloned()
                    && let Some(room) = room.upgrade()
                {
                    let last = self.catch_up(&room, last, u64::MAX).await;
                    rooms.insert(name, (Arc::downgrade(&room), last));
                    room.set_ready(true);
                }
            }
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(event) => {
                            if !self.event(&mut rooms, Some(&mut sink), event, true).await {
                                break;
                            }
                        }
                        None => {
                            presence.abort();
                            return;
                        }
                    },
                    msg = stream.next() => match msg {
                        Some(msg) => {
                            let name = msg.get_channel_name();
                            let Some(room_name) = name
                                .strip_prefix("corral:chat:{")
                                .and_then(|n| n.strip_suffix("}:frames"))
                            else {
                                continue;
                            };
                            let Ok(payload) = std::str::from_utf8(msg.get_payload_bytes()) else {
                                continue;
                            };
                            self.deliver(&mut rooms, room_name, payload).await;
                        }
                        None => break,
                    },
                }
            }
            self.metrics.bus_reconnects.inc();
            tracing::warn!("redis pub/sub connection lost; resubscribing");
            for (room, _) in rooms.values() {
                if let Some(room) = room.upgrade() {
                    room.set_ready(false);
                }
            }
        }
    }

    /// Handles a room event; false when the subscription connection failed.
    async fn event(
        &self,
        rooms: &mut HashMap<String, (Weak<Room>, u64)>,
        sink: Option<&mut redis::aio::PubSubSink>,
        event: ClusterEvent,
        connected: bool,
    ) -> bool {
        match event {
            ClusterEvent::Subscribe(room) => {
                let name = room.name().to_string();
                // Delivery starts after the offset the room has reached now.
                let top = self.top(&name).await.unwrap_or(0);
                rooms.insert(name.clone(), (Arc::downgrade(&room), top));
                if let (Some(sink), true) = (sink, connected) {
                    if sink.subscribe(key(&name, "frames")).await.is_err() {
                        return false;
                    }
                    // Anything published between reading the top and subscribing.
                    let last = self.catch_up(&room, top, u64::MAX).await;
                    rooms.insert(name, (Arc::downgrade(&room), last));
                    room.set_ready(true);
                }
            }
            ClusterEvent::Unsubscribe(name) => {
                rooms.remove(&name);
                let _: Result<u64, _> = self.conn().hdel(key(&name, "viewers"), &self.node).await;
                if let (Some(sink), true) = (sink, connected)
                    && sink.unsubscribe(key(&name, "frames")).await.is_err()
                {
                    return false;
                }
            }
            ClusterEvent::Reactions(name, counts) => {
                let counts = serde_json::to_string(&counts).unwrap_or_default();
                let payload = encode(&Envelope::Reactions(&counts));
                let _: Result<u64, _> = self.conn().publish(key(&name, "frames"), payload).await;
            }
        }
        true
    }

    /// Delivers the room's messages after `last` and before `before` from its stream; the
    /// last offset delivered.
    async fn catch_up(&self, room: &Arc<Room>, mut last: u64, before: u64) -> u64 {
        loop {
            let entries = match self.range(room.name(), last, 256).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(room = room.name(), error = %e, "cannot read a gap back");
                    return last;
                }
            };
            let Some(_) = entries.first() else {
                return last;
            };
            for entry in &entries {
                let Some(message) = entry_message(entry) else {
                    continue;
                };
                if message.offset >= before {
                    return last;
                }
                room.publish(&ServerFrame::Msg(&message)).await;
                self.metrics.gap_fills.inc();
                last = message.offset;
            }
        }
    }

    async fn deliver(
        &self,
        rooms: &mut HashMap<String, (Weak<Room>, u64)>,
        name: &str,
        payload: &str,
    ) {
        let Some((weak, last)) = rooms.get(name).cloned() else {
            return;
        };
        let Some(room) = weak.upgrade() else {
            rooms.remove(name);
            return;
        };
        let Some(envelope) = decode(payload) else {
            self.metrics
                .refused
                .with_label_values(&["bad_bus_frame"])
                .inc();
            tracing::warn!(room = name, "unreadable frame on the bus");
            return;
        };
        match envelope {
            Envelope::Msg(offset, text) => {
                if offset <= last {
                    return; // Already delivered from the stream.
                }
                let last = if offset > last + 1 {
                    self.catch_up(&room, last, offset).await
                } else {
                    last
                };
                if offset > last {
                    room.publish_frame(Frame::serialized(offset, text)).await;
                }
                rooms.insert(name.to_string(), (weak, offset));
            }
            Envelope::Frame(text) => {
                room.publish_frame(Frame::serialized(0, text)).await;
            }
            Envelope::ToUser(user, text) => {
                room.to_user(user, Frame::serialized(0, text)).await;
            }
            Envelope::Reactions(counts) => {
                if let Ok(counts) = serde_json::from_str::<BTreeMap<String, u64>>(counts) {
                    room.add_shared_reactions(counts);
                }
            }
        }
    }
}
