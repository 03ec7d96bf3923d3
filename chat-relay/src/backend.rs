//! Where the relay keeps its state and how a room's frames reach every node: embedded (SQLite
//! and this process's rooms) or Redis (streams, keys and pub/sub, for several nodes). The
//! handlers call only this; the two kinds keep the same meaning, which the tests run on both.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::emotes::Emote;
use crate::protocol::{Message, Modes, Relationship, ServerFrame, User};
use crate::redis_bus::RedisBus;
use crate::room::{Frame, Hub, Room};
use crate::store::{Ban, Store};

/// See the module documentation.
pub struct Backend {
    hub: Arc<Hub>,
    kind: Kind,
}

enum Kind {
    Embedded(Embedded),
    Redis(Arc<RedisBus>),
}

/// One node on SQLite.
struct Embedded {
    store: Arc<Store>,
    /// When each (room, user) last sent, for slow mode (unix ms); pruned as it grows.
    last_sent: Mutex<HashMap<(String, String), u64>>,
}

/// Entries of the slow-mode table before it is pruned of users who may send again.
const SLOW_TABLE_PRUNE: usize = 4096;

/// Runs `f` on the store off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store)).await?
}

impl Backend {
    /// A single node keeping its state in `store`.
    pub fn embedded(hub: Arc<Hub>, store: Store) -> Backend {
        Backend {
            hub,
            kind: Kind::Embedded(Embedded {
                store: Arc::new(store),
                last_sent: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A node of several, sharing `bus`.
    pub fn redis(hub: Arc<Hub>, bus: Arc<RedisBus>) -> Backend {
        Backend {
            hub,
            kind: Kind::Redis(bus),
        }
    }

    /// This node's rooms.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stores a message at the room's next offset and sends it to the room on every node.
    pub async fn append(
        &self,
        room: &Arc<Room>,
        user: &User,
        text: &str,
        emotes: Vec<Emote>,
        now: u64,
    ) -> anyhow::Result<Message> {
        match &self.kind {
            Kind::Embedded(e) => {
                // Held from the offset to the fan-out, so the room's frames keep offset order.
                let _order = room.order.lock().await;
                let (name, who, body) = (room.name().to_string(), user.clone(), text.to_string());
                let message =
                    blocking(&e.store, move |s| s.append(&name, &who, &body, emotes, now)).await?;
                room.publish(&ServerFrame::Msg(&message)).await;
                Ok(message)
            }
            Kind::Redis(bus) => bus.append(room.name(), user, text, emotes, now).await,
        }
    }

    /// Up to `limit` messages before offset `before`, newest first.
    pub async fn page(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> anyhow::Result<Vec<Message>> {
        match &self.kind {
            Kind::Embedded(e) => {
                let room = room.to_string();
                blocking(&e.store, move |s| s.page(&room, before, limit)).await
            }
            Kind::Redis(bus) => bus.page(room, before, limit).await,
        }
    }

    /// What a client that has seen up to `since` missed: `(true, messages after it)` when at
    /// most `max` were sent since and all are still kept, else `(false, the newest page of
    /// `page` messages)`; oldest first either way.
    pub async fn recover(
        &self,
        room: &str,
        since: u64,
        max: usize,
        page: usize,
    ) -> anyhow::Result<(bool, Vec<Message>)> {
        let top = self.top(room).await?;
        let missed = top.checked_sub(since);
        if let Some(missed) = missed
            && missed <= max as u64
        {
            let kept = match &self.kind {
                Kind::Embedded(e) => {
                    let room = room.to_string();
                    Some(blocking(&e.store, move |s| s.since(&room, since, max)).await?)
                }
                Kind::Redis(bus) => bus.since(room, since, max).await?,
            };
            if let Some(messages) = kept {
                return Ok((true, messages));
            }
        }
        // Too many missed, no longer kept, or an offset this room never reached (its history
        // was lost): start the client afresh.
        let mut fresh = self.page(room, None, page).await?;
        fresh.reverse();
        Ok((false, fresh))
    }

    /// The room's last offset.
    async fn top(&self, room: &str) -> anyhow::Result<u64> {
        match &self.kind {
            Kind::Embedded(e) => {
                let room = room.to_string();
                blocking(&e.store, move |s| s.top(&room)).await
            }
            Kind::Redis(bus) => bus.top(room).await,
        }
    }

    /// Removes message `id` and tells the room; whether it was there.
    pub async fn delete(&self, room: &str, id: &str) -> anyhow::Result<bool> {
        let found = match &self.kind {
            Kind::Embedded(e) => {
                let (room, id) = (room.to_string(), id.to_string());
                blocking(&e.store, move |s| s.delete(&room, &id)).await?
            }
            Kind::Redis(bus) => bus.delete(room, id).await?,
        };
        if found {
            self.broadcast(room, &ServerFrame::Deleted { id }).await?;
        }
        Ok(found)
    }

    /// Sends `frame` to the room on every node.
    pub async fn broadcast(&self, room: &str, frame: &ServerFrame<'_>) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Embedded(_) => {
                if let Some(r) = self.hub.get(room) {
                    r.publish(frame).await;
                }
                Ok(())
            }
            Kind::Redis(bus) => bus.broadcast(room, None, frame).await,
        }
    }

    /// Sends `frame` to `user_id`'s connections to the room, on every node.
    pub async fn to_user(
        &self,
        room: &str,
        user_id: &str,
        frame: &ServerFrame<'_>,
    ) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Embedded(_) => {
                if let Some(r) = self.hub.get(room) {
                    r.to_user(user_id, Frame::of(frame)).await;
                }
                Ok(())
            }
            Kind::Redis(bus) => bus.broadcast(room, Some(user_id), frame).await,
        }
    }

    /// Bans `user_id` from the room and tells them at once.
    pub async fn ban(&self, room: &str, user_id: &str, ban: Ban) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Embedded(e) => {
                let (r, u, b) = (room.to_string(), user_id.to_string(), ban.clone());
                blocking(&e.store, move |s| s.ban(&r, &u, &b)).await?;
            }
            Kind::Redis(bus) => bus.ban(room, user_id, &ban).await?,
        }
        let frame = ServerFrame::Banned {
            reason: &ban.reason,
            until: ban.until,
        };
        self.to_user(room, user_id, &frame).await
    }

    /// Lifts a ban; whether there was one.
    pub async fn unban(&self, room: &str, user_id: &str) -> anyhow::Result<bool> {
        match &self.kind {
            Kind::Embedded(e) => {
                let (r, u) = (room.to_string(), user_id.to_string());
                blocking(&e.store, move |s| s.unban(&r, &u)).await
            }
            Kind::Redis(bus) => bus.unban(room, user_id).await,
        }
    }

    /// The ban of `user_id` in force at `now` (unix seconds).
    pub async fn banned(&self, room: &str, user_id: &str, now: u64) -> anyhow::Result<Option<Ban>> {
        match &self.kind {
            Kind::Embedded(e) => {
                let (r, u) = (room.to_string(), user_id.to_string());
                blocking(&e.store, move |s| s.banned(&r, &u, now)).await
            }
            Kind::Redis(bus) => bus.banned(room, user_id, now).await,
        }
    }

    /// The room's modes.
    pub async fn modes(&self, room: &str) -> anyhow::Result<Modes> {
        match &self.kind {
            Kind::Embedded(e) => {
                let r = room.to_string();
                blocking(&e.store, move |s| s.modes(&r)).await
            }
            Kind::Redis(bus) => bus.modes(room).await,
        }
    }

    /// Sets the room's modes and tells the room.
    pub async fn set_modes(&self, room: &str, modes: Modes) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Embedded(e) => {
                let r = room.to_string();
                blocking(&e.store, move |s| s.set_modes(&r, &modes)).await?;
            }
            Kind::Redis(bus) => bus.set_modes(room, &modes).await?,
        }
        self.broadcast(room, &ServerFrame::Room(&modes)).await
    }

    /// Slow mode: records that `user_id` sends now (unix ms) when their last message was at
    /// least `seconds` ago and returns `None`; otherwise the milliseconds left to wait.
    pub async fn slow_mode(
        &self,
        room: &str,
        user_id: &str,
        seconds: u32,
        now: u64,
    ) -> anyhow::Result<Option<u64>> {
        let wait = u64::from(seconds) * 1000;
        match &self.kind {
            Kind::Embedded(e) => {
                let mut last = e.last_sent.lock();
                let key = (room.to_string(), user_id.to_string());
                if let Some(&at) = last.get(&key)
                    && now < at + wait
                {
                    return Ok(Some(at + wait - now));
                }
                if last.len() >= SLOW_TABLE_PRUNE {
                    // Slow mode waits are at most an hour (config and PUT both check).
                    last.retain(|_, at| now < *at + 3_600_000);
                }
                last.insert(key, now);
                Ok(None)
            }
            Kind::Redis(bus) => bus.slow_mode(room, user_id, wait).await,
        }
    }

    /// A channel's stored description and title.
    pub async fn channel(&self, name: &str) -> anyhow::Result<Option<(String, Option<String>)>> {
        match &self.kind {
            Kind::Embedded(e) => {
                let n = name.to_string();
                blocking(&e.store, move |s| s.channel(&n)).await
            }
            Kind::Redis(bus) => bus.channel(name).await,
        }
    }

    /// Sets a channel's description and live title.
    pub async fn set_channel(
        &self,
        name: &str,
        description: &str,
        title: Option<&str>,
    ) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Embedded(e) => {
                let (n, d, t) = (
                    name.to_string(),
                    description.to_string(),
                    title.map(str::to_string),
                );
                blocking(&e.store, move |s| s.set_channel(&n, &d, t.as_deref())).await
            }
            Kind::Redis(bus) => bus.set_channel(name, description, title).await,
        }
    }

    /// The channel's follower count.
    pub async fn followers(&self, channel: &str) -> anyhow::Result<u64> {
        match &self.kind {
            Kind::Embedded(e) => {
                let c = channel.to_string();
                blocking(&e.store, move |s| s.followers(&c)).await
            }
            Kind::Redis(bus) => bus.followers(channel).await,
        }
    }

    /// Changes what `user_id` is to the channel and returns the result.
    pub async fn relate(
        &self,
        channel: &str,
        user_id: &str,
        change: Change,
        now: u64,
    ) -> anyhow::Result<Relationship> {
        match &self.kind {
            Kind::Embedded(e) => {
                let (c, u) = (channel.to_string(), user_id.to_string());
                blocking(&e.store, move |s| {
                    match change {
                        Change::None => {}
                        Change::Follow => s.follow(&c, &u, now)?,
                        Change::Unfollow => s.unfollow(&c, &u)?,
                        Change::Subscribe(tier) => s.subscribe(&c, &u, tier, now)?,
                        Change::Unsubscribe => s.unsubscribe(&c, &u)?,
                    }
                    s.relationship(&c, &u)
                })
                .await
            }
            Kind::Redis(bus) => bus.relate(channel, user_id, change, now).await,
        }
    }

    /// Viewers of the room on every node.
    pub async fn viewers(&self, room: &str) -> anyhow::Result<u64> {
        match &self.kind {
            Kind::Embedded(_) => Ok(self.hub.get(room).map_or(0, |r| r.viewers())),
            Kind::Redis(bus) => bus.viewers(room).await,
        }
    }
}

/// A change to a user's relationship with a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// None: read it.
    None,
    /// Follow.
    Follow,
    /// Stop following.
    Unfollow,
    /// Subscribe at a tier (or change tier).
    Subscribe(u8),
    /// End the subscription.
    Unsubscribe,
}
