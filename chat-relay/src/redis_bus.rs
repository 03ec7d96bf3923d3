//! Several relay nodes on one Redis: a room's messages are a Redis stream whose entry ids are
//! the room's offsets, written together with the offset counter and the pub/sub broadcast in
//! one Lua call, so offsets are contiguous and every node sees messages in offset order. Each
//! node subscribes to the rooms it has viewers in; a node that sees an offset jump (pub/sub is
//! at most once, and a reconnect loses what was sent meanwhile) reads the gap back from the
//! stream before delivering. Bans, modes, slow-mode marks, channels, follows and
//! subscriptions are keys; viewer counts are a hash of per-node counts that expire.
//!
//! Keys carry the room (or channel) in a hash tag, `corral:chat:{demo}:log`, so one room's keys
//! stay on one shard of a Redis Cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

mod subscriber;

use crate::backend::Change;
use crate::emotes::Emote;
use crate::envelope::{Envelope, encode};
use crate::metrics::ChatMetrics;
use crate::protocol::{Message, Modes, Relationship, ServerFrame, Subscription, User};
use crate::room::Hub;
use crate::store::Ban;

/// Appends a message: the next offset, the stream entry `<offset>-0` (the stream trimmed to
/// about ARGV[4] entries), and the broadcast, in one step. A counter that starts again at 1
/// means the room's keys were lost: the old stream goes with it, or the new ids would be
/// refused as smaller than its last.
const APPEND: &str = r#"
local off = redis.call('INCR', KEYS[1])
if off == 1 then redis.call('DEL', KEYS[2]) end
local id = ARGV[1] .. '-' .. off .. '-' .. ARGV[2]
local frame = '{"op":"msg","id":"' .. id .. '","offset":' .. off .. ARGV[3]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], off .. '-0', 'd', frame)
redis.call('PUBLISH', ARGV[5], 'm|' .. off .. '|' .. frame)
return off
"#;

/// The prefix of a message frame with an empty id and offset 0, which the Lua script writes
/// itself with the real ones.
const MSG_HEAD: &str = r#"{"op":"msg","id":"","offset":0"#;

fn key(room: &str, what: &str) -> String {
    format!("corral:chat:{{{room}}}:{what}")
}

fn channel_key(channel: &str, what: &str) -> String {
    format!("corral:chat:channel:{{{channel}}}:{what}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// See the module documentation.
pub struct RedisBus {
    client: redis::Client,
    conn: ConnectionManager,
    append: redis::Script,
    /// This node, in the viewer counts.
    node: String,
    history_max: usize,
    presence_interval: Duration,
    metrics: ChatMetrics,
}

/// One stream entry: its id and its field/value list.
type Entry = (String, Vec<String>);

fn entry_message(entry: &Entry) -> Option<Message> {
    let frame = entry.1.chunks(2).find(|kv| kv[0] == "d")?.get(1)?;
    serde_json::from_str(frame).ok()
}

impl RedisBus {
    /// Connects to `url`; fails when Redis does not answer.
    pub async fn connect(
        url: &str,
        history_max: usize,
        presence_interval: Duration,
        metrics: ChatMetrics,
    ) -> anyhow::Result<Arc<RedisBus>> {
        let client = redis::Client::open(url).context("redis_url")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(2));
        let mut conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(config),
        )
        .await
        .context("connecting to redis timed out")?
        .context("connecting to redis")?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        let node = format!("{:016x}", rand_u64());
        Ok(Arc::new(RedisBus {
            client,
            conn,
            append: redis::Script::new(APPEND),
            node,
            history_max,
            presence_interval,
            metrics,
        }))
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Stores and broadcasts a message; the room's subscribers deliver it.
    pub async fn append(
        &self,
        room: &str,
        user: &User,
        text: &str,
        emotes: Vec<Emote>,
        now: u64,
    ) -> anyhow::Result<Message> {
        let mut message = Message {
            id: String::new(),
            offset: 0,
            user: user.clone(),
            text: text.to_string(),
            emotes,
            sent_at: now,
        };
        let frame = ServerFrame::Msg(&message).text();
        let tail = frame
            .strip_prefix(MSG_HEAD)
            .context("a message frame starts with op, id and offset")?;
        let stamp = format!("{now:x}");
        let offset: u64 = self
            .append
            .key(key(room, "top"))
            .key(key(room, "log"))
            .arg(room)
            .arg(&stamp)
            .arg(tail)
            .arg(self.history_max)
            .arg(key(room, "frames"))
            .invoke_async(&mut self.conn())
            .await?;
        message.id = format!("{room}-{offset}-{stamp}");
        message.offset = offset;
        Ok(message)
    }

    /// The room's last offset.
    pub async fn top(&self, room: &str) -> anyhow::Result<u64> {
        let top: Option<u64> = self.conn().get(key(room, "top")).await?;
        Ok(top.unwrap_or(0))
    }

    /// Newest first, before `before`.
    pub async fn page(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> anyhow::Result<Vec<Message>> {
        let end = before.map_or_else(|| "+".to_string(), |b| format!("({b}-0"));
        let entries: Vec<Entry> = redis::cmd("XREVRANGE")
            .arg(key(room, "log"))
            .arg(end)
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn())
            .await?;
        Ok(entries.iter().filter_map(entry_message).collect())
    }

    /// Oldest first, after `since`; `None` when the stream no longer reaches back to it.
    pub async fn since(
        &self,
        room: &str,
        since: u64,
        limit: usize,
    ) -> anyhow::Result<Option<Vec<Message>>> {
        let entries = self.range(room, since, limit).await?;
        if let Some(first) = entries.first() {
            let kept_from = first
                .0
                .split('-')
                .next()
                .and_then(|o| o.parse::<u64>().ok());
            if kept_from.is_some_and(|f| f > since + 1) {
                // Possibly trimmed: only the oldest kept entry tells.
                let oldest: Vec<Entry> = redis::cmd("XRANGE")
                    .arg(key(room, "log"))
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut self.conn())
                    .await?;
                if oldest.first().map(|e| &e.0) == Some(&first.0) {
                    return Ok(None);
                }
            }
        } else if since < self.top(room).await? {
            return Ok(None);
        }
        Ok(Some(entries.iter().filter_map(entry_message).collect()))
    }

    async fn range(&self, room: &str, after: u64, limit: usize) -> anyhow::Result<Vec<Entry>> {
        Ok(redis::cmd("XRANGE")
            .arg(key(room, "log"))
            .arg(format!("({after}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn())
            .await?)
    }

    /// Removes message `id` from the room's stream; whether it was there.
    pub async fn delete(&self, room: &str, id: &str) -> anyhow::Result<bool> {
        // Ids are <room>-<offset>-<time>.
        let mut parts = id.rsplitn(3, '-');
        let (_, offset, owner) = (parts.next(), parts.next(), parts.next());
        let Some(offset) = offset.and_then(|o| o.parse::<u64>().ok()) else {
            return Ok(false);
        };
        if owner != Some(room) {
            return Ok(false);
        }
        let entry = format!("{offset}-0");
        let found: Vec<Entry> = redis::cmd("XRANGE")
            .arg(key(room, "log"))
            .arg(&entry)
            .arg(&entry)
            .query_async(&mut self.conn())
            .await?;
        if found
            .first()
            .and_then(entry_message)
            .is_none_or(|m| m.id != id)
        {
            return Ok(false);
        }
        let removed: u64 = redis::cmd("XDEL")
            .arg(key(room, "log"))
            .arg(&entry)
            .query_async(&mut self.conn())
            .await?;
        Ok(removed > 0)
    }

    /// Publishes `frame` to the room (to `user`'s connections alone when given).
    pub async fn broadcast(
        &self,
        room: &str,
        user: Option<&str>,
        frame: &ServerFrame<'_>,
    ) -> anyhow::Result<()> {
        let text = frame.text();
        let payload = match user {
            Some(u) => encode(&Envelope::ToUser(u, &text)),
            None => encode(&Envelope::Frame(&text)),
        };
        let _: u64 = self.conn().publish(key(room, "frames"), payload).await?;
        Ok(())
    }

    /// Bans a user (the key expires with the ban).
    pub async fn ban(&self, room: &str, user: &str, ban: &Ban) -> anyhow::Result<()> {
        let value = serde_json::json!({"reason": ban.reason, "until": ban.until}).to_string();
        let k = key(room, &format!("ban:{user}"));
        let mut conn = self.conn();
        let _: () = conn.set(&k, value).await?;
        if let Some(until) = ban.until {
            let _: bool = conn.expire_at(&k, until as i64).await?;
        }
        Ok(())
    }

    /// Lifts a ban; whether there was one.
    pub async fn unban(&self, room: &str, user: &str) -> anyhow::Result<bool> {
        let n: u64 = self.conn().del(key(room, &format!("ban:{user}"))).await?;
        Ok(n > 0)
    }

    /// The ban in force at `now` (unix seconds).
    pub async fn banned(&self, room: &str, user: &str, now: u64) -> anyhow::Result<Option<Ban>> {
        let value: Option<String> = self.conn().get(key(room, &format!("ban:{user}"))).await?;
        let Some(value) = value else { return Ok(None) };
        let v: serde_json::Value = serde_json::from_str(&value)?;
        let ban = Ban {
            reason: v["reason"].as_str().unwrap_or_default().to_string(),
            until: v["until"].as_u64(),
        };
        Ok(Some(ban).filter(|b| b.until.is_none_or(|u| u > now)))
    }

    /// The room's modes.
    pub async fn modes(&self, room: &str) -> anyhow::Result<Modes> {
        let value: Option<String> = self.conn().get(key(room, "modes")).await?;
        Ok(value
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default())
    }

    /// Sets the room's modes.
    pub async fn set_modes(&self, room: &str, modes: &Modes) -> anyhow::Result<()> {
        let _: () = self
            .conn()
            .set(key(room, "modes"), serde_json::to_string(modes)?)
            .await?;
        Ok(())
    }

    /// Slow mode across nodes: a mark per user that expires after the wait.
    pub async fn slow_mode(
        &self,
        room: &str,
        user: &str,
        wait_ms: u64,
    ) -> anyhow::Result<Option<u64>> {
        let k = key(room, &format!("slow:{user}"));
        let mut conn = self.conn();
        let set: Option<String> = redis::cmd("SET")
            .arg(&k)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(wait_ms.max(1))
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            return Ok(None);
        }
        let left: i64 = conn.pttl(&k).await?;
        Ok(Some(left.max(1) as u64))
    }

    /// A channel's stored description and title.
    pub async fn channel(&self, name: &str) -> anyhow::Result<Option<(String, Option<String>)>> {
        let value: Option<String> = self.conn().get(channel_key(name, "info")).await?;
        Ok(value
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .map(|v| {
                (
                    v["description"].as_str().unwrap_or_default().to_string(),
                    v["title"].as_str().map(str::to_string),
                )
            }))
    }

    /// Sets a channel's description and title.
    pub async fn set_channel(
        &self,
        name: &str,
        description: &str,
        title: Option<&str>,
    ) -> anyhow::Result<()> {
        let value = serde_json::json!({"description": description, "title": title}).to_string();
        let _: () = self.conn().set(channel_key(name, "info"), value).await?;
        Ok(())
    }

    /// Followers of the channel.
    pub async fn followers(&self, channel: &str) -> anyhow::Result<u64> {
        Ok(self.conn().hlen(channel_key(channel, "followers")).await?)
    }

    /// Changes and reads a relationship.
    pub async fn relate(
        &self,
        channel: &str,
        user: &str,
        change: Change,
        now: u64,
    ) -> anyhow::Result<Relationship> {
        let (follows, subs) = (
            channel_key(channel, "followers"),
            channel_key(channel, "subscriptions"),
        );
        let mut conn = self.conn();
        match change {
            Change::None => {}
            Change::Follow => {
                let _: bool = conn.hset_nx(&follows, user, now).await?;
            }
            Change::Unfollow => {
                let _: u64 = conn.hdel(&follows, user).await?;
            }
            Change::Subscribe(tier) => {
                let old: Option<String> = conn.hget(&subs, user).await?;
                let since = old
                    .as_deref()
                    .and_then(|o| o.split_once(':'))
                    .and_then(|(_, s)| s.parse::<u64>().ok())
                    .unwrap_or(now);
                let _: () = conn.hset(&subs, user, format!("{tier}:{since}")).await?;
            }
            Change::Unsubscribe => {
                let _: u64 = conn.hdel(&subs, user).await?;
            }
        }
        let followed_at: Option<u64> = conn.hget(&follows, user).await?;
        let sub: Option<String> = conn.hget(&subs, user).await?;
        let subscription = sub.as_deref().and_then(|s| {
            let (tier, since) = s.split_once(':')?;
            Some(Subscription {
                tier: tier.parse().ok()?,
                since: since.parse().ok()?,
            })
        });
        Ok(Relationship {
            following: followed_at.is_some(),
            followed_at,
            subscription,
        })
    }

    /// Viewers of the room on every node whose count has not expired.
    pub async fn viewers(&self, room: &str) -> anyhow::Result<u64> {
        let counts: HashMap<String, String> = self.conn().hgetall(key(room, "viewers")).await?;
        let now = now_ms();
        Ok(counts
            .values()
            .filter_map(|v| v.split_once(':'))
            .filter_map(|(n, until)| Some((n.parse::<u64>().ok()?, until.parse::<u64>().ok()?)))
            .filter(|(_, until)| *until > now)
            .map(|(n, _)| n)
            .sum())
    }

    /// Writes this node's viewer count of every room and reads back the totals.
    async fn presence(&self, hub: &Hub) -> anyhow::Result<()> {
        let until = now_ms() + 3 * self.presence_interval.as_millis() as u64;
        let mut conn = self.conn();
        for room in hub.rooms() {
            let k = key(room.name(), "viewers");
            let _: () = conn
                .hset(&k, &self.node, format!("{}:{until}", room.viewers()))
                .await?;
            let _: bool = conn
                .pexpire(&k, 3 * self.presence_interval.as_millis() as i64)
                .await?;
            room.set_viewers_everywhere(self.viewers(room.name()).await?);
        }
        Ok(())
    }
}

/// A node id that differs between processes and restarts.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_frame_starts_as_the_script_expects() {
        let m = Message {
            id: String::new(),
            offset: 0,
            user: User {
                id: "u".into(),
                name: "U".into(),
            },
            text: "\",\"offset\":0,".into(),
            emotes: vec![],
            sent_at: 1,
        };
        let text = ServerFrame::Msg(&m).text();
        let tail = text.strip_prefix(MSG_HEAD).expect("the head");
        let rebuilt = format!(r#"{{"op":"msg","id":"demo-7-1","offset":7{tail}"#);
        let back: Message = serde_json::from_str(&rebuilt).expect("a message");
        assert_eq!((back.offset, back.id.as_str()), (7, "demo-7-1"));
        assert_eq!(back.text, m.text);
    }
}
