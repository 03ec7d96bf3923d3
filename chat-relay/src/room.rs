//! Rooms and their fan-out. A room's connections are spread over `fanout_shards` tasks; a
//! frame is serialized once and handed to every shard, which copies a pointer to it into each
//! of its connections' bounded queues. A connection whose queue is full is a reader that cannot
//! keep up: it is dropped (told to resync) instead of being allowed to grow memory, and nobody
//! else waits for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use crate::metrics::ChatMetrics;
use crate::protocol::ServerFrame;

/// Frames a shard may have waiting.
const SHARD_QUEUE: usize = 1024;

/// A frame on its way to connections: its JSON text, serialized once for the whole room, and
/// the message offset it carries (0 for frames that are not messages), so a connection that
/// is recovering can skip what it has already been sent.
#[derive(Debug)]
pub struct Frame {
    /// The message offset, or 0.
    pub offset: u64,
    /// The JSON text.
    pub text: Box<str>,
}

impl Frame {
    /// The frame for `frame`.
    pub fn of(frame: &ServerFrame<'_>) -> Arc<Frame> {
        let offset = match frame {
            ServerFrame::Msg(m) => m.offset,
            _ => 0,
        };
        Frame::serialized(offset, &frame.text())
    }

    /// A frame already serialized (as another node sent it), with its offset or 0.
    pub fn serialized(offset: u64, text: &str) -> Arc<Frame> {
        Arc::new(Frame {
            offset,
            text: text.into(),
        })
    }
}

/// One connection as its room's shard sees it.
pub struct Member {
    id: u64,
    user: Option<String>,
    tx: mpsc::Sender<Arc<Frame>>,
    kicked: Arc<Notify>,
}

enum ShardCmd {
    Join(Member),
    Leave(u64),
    Frame(Arc<Frame>),
    ToUser(Arc<str>, Arc<Frame>),
}

/// What a room needs to know.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    /// Fan-out tasks per room.
    pub shards: usize,
    /// Frames queued per connection.
    pub send_queue: usize,
    /// Reaction counting window.
    pub reaction_window: Duration,
    /// Viewer count interval.
    pub viewers_interval: Duration,
}

/// What a node of several tells the others (through Redis) about its rooms.
pub enum ClusterEvent {
    /// The room has its first connection on this node: subscribe to its frames.
    Subscribe(Arc<Room>),
    /// The room is gone from this node.
    Unsubscribe(String),
    /// This node's reactions of one window.
    Reactions(String, BTreeMap<String, u64>),
}

/// One chat room (one per stream).
pub struct Room {
    name: String,
    shards: Vec<mpsc::Sender<ShardCmd>>,
    viewers: AtomicU64,
    /// Viewers on every node, as the cluster last counted them (clustered rooms only).
    viewers_everywhere: AtomicU64,
    /// Reactions of this node's current window.
    reactions: Mutex<BTreeMap<String, u64>>,
    /// Reactions from every node (clustered rooms), sent at the next window.
    shared_reactions: Mutex<BTreeMap<String, u64>>,
    /// True once the room receives every frame published to it (at once on a single node; on
    /// several, once its Redis subscription is in place).
    ready: tokio::sync::watch::Sender<bool>,
    cluster: Option<mpsc::UnboundedSender<ClusterEvent>>,
    /// Held while a message is stored and published, so the room's frames keep offset order.
    pub order: tokio::sync::Mutex<()>,
    settings: RoomSettings,
}

/// A connection's membership; leaving the room when dropped.
pub struct Membership {
    room: Arc<Room>,
    id: u64,
    /// The frames for this connection.
    pub rx: mpsc::Receiver<Arc<Frame>>,
    /// Notified when the connection is dropped for reading too slowly.
    pub kicked: Arc<Notify>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.viewers.fetch_sub(1, Ordering::Relaxed);
        let shard = &self.room.shards[self.id as usize % self.room.shards.len()];
        let _ = shard.try_send(ShardCmd::Leave(self.id));
    }
}

impl Membership {
    /// The room.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }
}

impl Room {
    fn new(
        name: &str,
        settings: RoomSettings,
        metrics: ChatMetrics,
        cluster: Option<mpsc::UnboundedSender<ClusterEvent>>,
    ) -> Arc<Room> {
        let shards = (0..settings.shards)
            .map(|_| {
                let (tx, rx) = mpsc::channel(SHARD_QUEUE);
                tokio::spawn(shard(rx, metrics.clone()));
                tx
            })
            .collect();
        Arc::new(Room {
            name: name.to_string(),
            shards,
            viewers: AtomicU64::new(0),
            viewers_everywhere: AtomicU64::new(0),
            reactions: Mutex::new(BTreeMap::new()),
            shared_reactions: Mutex::new(BTreeMap::new()),
            ready: tokio::sync::watch::Sender::new(cluster.is_none()),
            cluster,
            order: tokio::sync::Mutex::new(()),
            settings,
        })
    }

    /// Marks the room as receiving everything published to it.
    pub fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// Waits (at most `limit`) until the room receives everything published to it; whether
    /// it does.
    pub async fn ready(&self, limit: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Records the viewers on every node (clustered rooms).
    pub fn set_viewers_everywhere(&self, count: u64) {
        self.viewers_everywhere.store(count, Ordering::Relaxed);
    }

    /// Viewers on every node: this node's alone when it is the only one.
    pub fn viewers_everywhere(&self) -> u64 {
        if self.cluster.is_some() {
            self.viewers_everywhere
                .load(Ordering::Relaxed)
                .max(self.viewers())
        } else {
            self.viewers()
        }
    }

    /// Adds another node's (or this node's, coming back) reaction counts of one window.
    pub fn add_shared_reactions(&self, counts: BTreeMap<String, u64>) {
        let mut shared = self.shared_reactions.lock();
        for (emoji, n) in counts {
            count(&mut shared, &emoji, n);
        }
    }

    /// Its name (the stream's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connections in the room now.
    pub fn viewers(&self) -> u64 {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Sends `frame` to every connection in the room.
    pub async fn publish(&self, frame: &ServerFrame<'_>) {
        self.publish_frame(Frame::of(frame)).await;
    }

    /// Sends a serialized frame to every connection in the room.
    pub async fn publish_frame(&self, frame: Arc<Frame>) {
        for shard in &self.shards {
            let _ = shard.send(ShardCmd::Frame(frame.clone())).await;
        }
    }

    /// Sends a serialized frame to the connections of `user_id` in the room.
    pub async fn to_user(&self, user_id: &str, frame: Arc<Frame>) {
        let user: Arc<str> = user_id.into();
        for shard in &self.shards {
            let _ = shard
                .send(ShardCmd::ToUser(user.clone(), frame.clone()))
                .await;
        }
    }

    /// Counts a reaction into the current window.
    pub fn react(&self, emoji: &str) {
        count(&mut self.reactions.lock(), emoji, 1);
    }
}

/// Adds `n` reactions of `emoji` to a window's counts, which hold at most 64 distinct emoji.
fn count(counts: &mut BTreeMap<String, u64>, emoji: &str, n: u64) {
    if let Some(c) = counts.get_mut(emoji) {
        *c += n;
    } else if counts.len() < 64 {
        counts.insert(emoji.to_string(), n);
    }
}

async fn shard(mut rx: mpsc::Receiver<ShardCmd>, metrics: ChatMetrics) {
    let mut members: HashMap<u64, Member> = HashMap::new();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            ShardCmd::Join(m) => {
                members.insert(m.id, m);
            }
            ShardCmd::Leave(id) => {
                members.remove(&id);
            }
            ShardCmd::Frame(text) => deliver(&mut members, &text, None, &metrics),
            ShardCmd::ToUser(user, text) => deliver(&mut members, &text, Some(&*user), &metrics),
        }
    }
}

fn deliver(
    members: &mut HashMap<u64, Member>,
    text: &Arc<Frame>,
    user: Option<&str>,
    metrics: &ChatMetrics,
) {
    members.retain(|_, m| {
        if user.is_some() && m.user.as_deref() != user {
            return true;
        }
        match m.tx.try_send(text.clone()) {
            Ok(()) => {
                metrics.deliveries.inc();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.slow_readers.inc();
                m.kicked.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

/// Every room of this node.
pub struct Hub {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    next_id: AtomicU64,
    settings: RoomSettings,
    metrics: ChatMetrics,
    cluster: Option<mpsc::UnboundedSender<ClusterEvent>>,
}

impl Hub {
    /// A hub whose rooms use `settings`; `cluster` hears of rooms coming and going when this
    /// node is one of several.
    pub fn new(
        settings: RoomSettings,
        metrics: ChatMetrics,
        cluster: Option<mpsc::UnboundedSender<ClusterEvent>>,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            settings,
            metrics,
            cluster,
        })
    }

    /// The room `name` if this node has it.
    pub fn get(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.lock().get(name).cloned()
    }

    /// Every room of this node.
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        self.rooms.lock().values().cloned().collect()
    }

    /// The room `name`, created (with its timers) when missing.
    pub fn room(self: &Arc<Self>, name: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock();
        if let Some(r) = rooms.get(name) {
            return r.clone();
        }
        let room = Room::new(
            name,
            self.settings.clone(),
            self.metrics.clone(),
            self.cluster.clone(),
        );
        rooms.insert(name.to_string(), room.clone());
        self.metrics.rooms.set(rooms.len() as i64);
        if let Some(cluster) = &self.cluster {
            let _ = cluster.send(ClusterEvent::Subscribe(room.clone()));
        }
        tokio::spawn(timers(self.clone(), room.clone()));
        room
    }

    /// Joins connection of `user` to room `name`.
    pub fn join(self: &Arc<Self>, name: &str, user: Option<String>) -> Membership {
        let room = self.room(name);
        room.viewers.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.settings.send_queue);
        let kicked = Arc::new(Notify::new());
        let member = Member {
            id,
            user,
            tx,
            kicked: kicked.clone(),
        };
        let shard = &room.shards[id as usize % room.shards.len()];
        if shard.try_send(ShardCmd::Join(member)).is_err() {
            kicked.notify_one();
        }
        Membership {
            room,
            id,
            rx,
            kicked,
        }
    }

    /// Forgets `room` if nobody is in it; whether it did.
    fn retire(&self, room: &Arc<Room>) -> bool {
        let mut rooms = self.rooms.lock();
        if room.viewers() > 0 || Arc::strong_count(room) > 2 {
            return false;
        }
        rooms.remove(room.name());
        self.metrics.rooms.set(rooms.len() as i64);
        if let Some(cluster) = &self.cluster {
            let _ = cluster.send(ClusterEvent::Unsubscribe(room.name().to_string()));
        }
        true
    }
}

/// A room's reactions window and viewer count; ends when the room is retired.
async fn timers(hub: Arc<Hub>, room: Arc<Room>) {
    let window = room.settings.reaction_window;
    let mut reactions = tokio::time::interval(window);
    let mut viewers = tokio::time::interval(room.settings.viewers_interval);
    reactions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    viewers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    viewers.tick().await;
    loop {
        tokio::select! {
            _ = reactions.tick() => {
                let mine = std::mem::take(&mut *room.reactions.lock());
                // On several nodes this window's counts go to all of them (this one included)
                // and what they all counted is sent one window later.
                let counts = match &room.cluster {
                    None => mine,
                    Some(cluster) => {
                        if !mine.is_empty() {
                            let _ = cluster.send(ClusterEvent::Reactions(room.name.clone(), mine));
                        }
                        std::mem::take(&mut *room.shared_reactions.lock())
                    }
                };
                if !counts.is_empty() {
                    let frame = ServerFrame::Reactions { counts: &counts, window_ms: window.as_millis() as u64 };
                    room.publish(&frame).await;
                }
            }
            _ = viewers.tick() => {
                if room.viewers() == 0 && hub.retire(&room) {
                    return;
                }
                room.publish(&ServerFrame::Viewers { count: room.viewers_everywhere() }).await;
            }
        }
    }
}
