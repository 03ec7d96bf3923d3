//! The embedded store: messages, bans, room modes, channels, follows and subscriptions in
//! SQLite (WAL), so a restart loses nothing. One connection behind a mutex; callers reach it
//! through `tokio::task::spawn_blocking`.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::emotes::Emote;
use crate::protocol::{Message, Modes, Relationship, Subscription, User};

/// A ban in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Why.
    pub reason: String,
    /// Until when (unix seconds); `None` for good.
    pub until: Option<u64>,
}

/// See the module documentation.
pub struct Store {
    db: Mutex<Connection>,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS messages (
                 room TEXT NOT NULL,
                 offset INTEGER NOT NULL,
                 id TEXT NOT NULL UNIQUE,
                 user_id TEXT NOT NULL,
                 user_name TEXT NOT NULL,
                 text TEXT NOT NULL,
                 emotes TEXT NOT NULL,
                 sent_at INTEGER NOT NULL,
                 deleted INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (room, offset)
             );
             CREATE TABLE IF NOT EXISTS bans (
                 room TEXT NOT NULL,
                 user_id TEXT NOT NULL,
                 reason TEXT NOT NULL,
                 until INTEGER,
                 PRIMARY KEY (room, user_id)
             );
             CREATE TABLE IF NOT EXISTS modes (
                 room TEXT PRIMARY KEY,
                 slow_mode INTEGER NOT NULL,
                 followers_only INTEGER
             );
             CREATE TABLE IF NOT EXISTS channels (
                 name TEXT PRIMARY KEY,
                 description TEXT NOT NULL,
                 title TEXT
             );
             CREATE TABLE IF NOT EXISTS follows (
                 channel TEXT NOT NULL,
                 user_id TEXT NOT NULL,
                 since INTEGER NOT NULL,
                 PRIMARY KEY (channel, user_id)
             );
             CREATE TABLE IF NOT EXISTS subscriptions (
                 channel TEXT NOT NULL,
                 user_id TEXT NOT NULL,
                 tier INTEGER NOT NULL,
                 since INTEGER NOT NULL,
                 PRIMARY KEY (channel, user_id)
             );",
        )?;
        Ok(Self { db: Mutex::new(db) })
    }

    /// The room's last offset (0 when empty).
    pub fn top(&self, room: &str) -> anyhow::Result<u64> {
        let db = self.db.lock();
        let top: Option<i64> = db.query_row(
            "SELECT MAX(offset) FROM messages WHERE room = ?1",
            params![room],
            |r| r.get(0),
        )?;
        Ok(top.unwrap_or(0) as u64)
    }

    /// Appends a message at the room's next offset and returns it.
    pub fn append(
        &self,
        room: &str,
        user: &User,
        text: &str,
        emotes: Vec<Emote>,
        sent_at: u64,
    ) -> anyhow::Result<Message> {
        let mut db = self.db.lock();
        let tx = db.transaction()?;
        let top: Option<i64> = tx.query_row(
            "SELECT MAX(offset) FROM messages WHERE room = ?1",
            params![room],
            |r| r.get(0),
        )?;
        let offset = top.unwrap_or(0) as u64 + 1;
        let id = format!("{room}-{offset}-{sent_at:x}");
        tx.execute(
            "INSERT INTO messages (room, offset, id, user_id, user_name, text, emotes, sent_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                room,
                offset as i64,
                id,
                user.id,
                user.name,
                text,
                serde_json::to_string(&emotes)?,
                sent_at as i64
            ],
        )?;
        tx.commit()?;
        Ok(Message {
            id,
            offset,
            user: user.clone(),
            text: text.to_string(),
            emotes,
            sent_at,
        })
    }

    /// Up to `limit` messages of the room before offset `before` (all when `None`), newest
    /// first, deleted ones left out.
    pub fn page(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> anyhow::Result<Vec<Message>> {
        let db = self.db.lock();
        let mut stmt = db.prepare_cached(
            "SELECT id, offset, user_id, user_name, text, emotes, sent_at FROM messages
             WHERE room = ?1 AND offset < ?2 AND deleted = 0
             ORDER BY offset DESC LIMIT ?3",
        )?;
        let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
        let rows = stmt.query_map(params![room, before, limit as i64], message_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` messages of the room after offset `since`, oldest first, deleted ones
    /// left out.
    pub fn since(&self, room: &str, since: u64, limit: usize) -> anyhow::Result<Vec<Message>> {
        let db = self.db.lock();
        let mut stmt = db.prepare_cached(
            "SELECT id, offset, user_id, user_name, text, emotes, sent_at FROM messages
             WHERE room = ?1 AND offset > ?2 AND deleted = 0
             ORDER BY offset ASC LIMIT ?3",
        )?;
        let since = since.min(i64::MAX as u64) as i64;
        let rows = stmt.query_map(params![room, since, limit as i64], message_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks message `id` of the room deleted; whether it was there.
    pub fn delete(&self, room: &str, id: &str) -> anyhow::Result<bool> {
        let db = self.db.lock();
        let n = db.execute(
            "UPDATE messages SET deleted = 1 WHERE room = ?1 AND id = ?2 AND deleted = 0",
            params![room, id],
        )?;
        Ok(n > 0)
    }

    /// Bans `user_id` from the room.
    pub fn ban(&self, room: &str, user_id: &str, ban: &Ban) -> anyhow::Result<()> {
        let db = self.db.lock();
        db.execute(
            "INSERT INTO bans (room, user_id, reason, until) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (room, user_id) DO UPDATE SET reason = ?3, until = ?4",
            params![room, user_id, ban.reason, ban.until.map(|u| u as i64)],
        )?;
        Ok(())
    }

    /// Lifts a ban; whether there was one.
    pub fn unban(&self, room: &str, user_id: &str) -> anyhow::Result<bool> {
        let db = self.db.lock();
        let n = db.execute(
            "DELETE FROM bans WHERE room = ?1 AND user_id = ?2",
            params![room, user_id],
        )?;
        Ok(n > 0)
    }

    /// The ban of `user_id` in the room that is in force at `now` (unix seconds).
    pub fn banned(&self, room: &str, user_id: &str, now: u64) -> anyhow::Result<Option<Ban>> {
        let db = self.db.lock();
        let ban = db
            .query_row(
                "SELECT reason, until FROM bans WHERE room = ?1 AND user_id = ?2",
                params![room, user_id],
                |r| {
                    Ok(Ban {
                        reason: r.get(0)?,
                        until: r.get::<_, Option<i64>>(1)?.map(|u| u as u64),
                    })
                },
            )
            .optional()?;
        Ok(ban.filter(|b| b.until.is_none_or(|u| u > now)))
    }

    /// The room's modes (all off when never set).
    pub fn modes(&self, room: &str) -> anyhow::Result<Modes> {
        let db = self.db.lock();
        let modes = db
            .query_row(
                "SELECT slow_mode, followers_only FROM modes WHERE room = ?1",
                params![room],
                |r| {
                    Ok(Modes {
                        slow_mode: r.get::<_, i64>(0)? as u32,
                        followers_only: r.get::<_, Option<i64>>(1)?.map(|m| m as u32),
                    })
                },
            )
            .optional()?;
        Ok(modes.unwrap_or_default())
    }

    /// Sets the room's modes.
    pub fn set_modes(&self, room: &str, modes: &Modes) -> anyhow::Result<()> {
        let db = self.db.lock();
        db.execute(
            "INSERT INTO modes (room, slow_mode, followers_only) VALUES (?1, ?2, ?3)
             ON CONFLICT (room) DO UPDATE SET slow_mode = ?2, followers_only = ?3",
            params![
                room,
                i64::from(modes.slow_mode),
                modes.followers_only.map(i64::from)
            ],
        )?;
        Ok(())
    }

    /// A channel's description and live title, when it has been set.
    pub fn channel(&self, name: &str) -> anyhow::Result<Option<(String, Option<String>)>> {
        let db = self.db.lock();
        Ok(db
            .query_row(
                "SELECT description, title FROM channels WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Sets a channel's description and live title.
    pub fn set_channel(
        &self,
        name: &str,
        description: &str,
        title: Option<&str>,
    ) -> anyhow::Result<()> {
        let db = self.db.lock();
        db.execute(
            "INSERT INTO channels (name, description, title) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET description = ?2, title = ?3",
            params![name, description, title],
        )?;
        Ok(())
    }

    /// The channel's follower count.
    pub fn followers(&self, channel: &str) -> anyhow::Result<u64> {
        let db = self.db.lock();
        let n: i64 = db.query_row(
            "SELECT COUNT(*) FROM follows WHERE channel = ?1",
            params![channel],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Makes `user_id` follow the channel from `now` (unix ms); following again keeps the
    /// first date.
    pub fn follow(&self, channel: &str, user_id: &str, now: u64) -> anyhow::Result<()> {
        let db = self.db.lock();
        db.execute(
            "INSERT INTO follows (channel, user_id, since) VALUES (?1, ?2, ?3)
             ON CONFLICT (channel, user_id) DO NOTHING",
            params![channel, user_id, now as i64],
        )?;
        Ok(())
    }

    /// Ends a follow.
    pub fn unfollow(&self, channel: &str, user_id: &str) -> anyhow::Result<()> {
        let db = self.db.lock();
        db.execute(
            "DELETE FROM follows WHERE channel = ?1 AND user_id = ?2",
            params![channel, user_id],
        )?;
        Ok(())
    }

    /// Subscribes `user_id` to the channel at `tier` (a change of tier keeps the first date).
    pub fn subscribe(
        &self,
        channel: &str,
        user_id: &str,
        tier: u8,
        now: u64,
    ) -> anyhow::Result<()> {
        let db = self.db.lock();
        db.execute(
            "INSERT INTO subscriptions (channel, user_id, tier, since) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (channel, user_id) DO UPDATE SET tier = ?3",
            params![channel, user_id, i64::from(tier), now as i64],
        )?;
        Ok(())
    }

    /// Ends a subscription.
    pub fn unsubscribe(&self, channel: &str, user_id: &str) -> anyhow::Result<()> {
        let db = self.db.lock();
        db.execute(
            "DELETE FROM subscriptions WHERE channel = ?1 AND user_id = ?2",
            params![channel, user_id],
        )?;
        Ok(())
    }

    /// What `user_id` is to the channel.
    pub fn relationship(&self, channel: &str, user_id: &str) -> anyhow::Result<Relationship> {
        let db = self.db.lock();
        let followed_at: Option<i64> = db
            .query_row(
                "SELECT since FROM follows WHERE channel = ?1 AND user_id = ?2",
                params![channel, user_id],
                |r| r.get(0),
            )
            .optional()?;
        let subscription = db
            .query_row(
                "SELECT tier, since FROM subscriptions WHERE channel = ?1 AND user_id = ?2",
                params![channel, user_id],
                |r| {
                    Ok(Subscription {
                        tier: r.get::<_, i64>(0)? as u8,
                        since: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()?;
        Ok(Relationship {
            following: followed_at.is_some(),
            followed_at: followed_at.map(|t| t as u64),
            subscription,
        })
    }
}

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let emotes: String = r.get(5)?;
    Ok(Message {
        id: r.get(0)?,
        offset: r.get::<_, i64>(1)? as u64,
        user: User {
            id: r.get(2)?,
            name: r.get(3)?,
        },
        text: r.get(4)?,
        emotes: serde_json::from_str(&emotes).unwrap_or_default(),
        sent_at: r.get::<_, i64>(6)? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_page_newest_first_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("chat-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("chat.sqlite");
        let user = User {
            id: "u".into(),
            name: "U".into(),
        };
        {
            let store = Store::open(&path).expect("opens");
            for i in 0..5 {
                store
                    .append("demo", &user, &format!("m{i}"), vec![], 1000 + i)
                    .expect("appends");
            }
            store
                .append("other", &user, "x", vec![], 1)
                .expect("appends");
            let id3 = store.page("demo", Some(4), 1).expect("page")[0].id.clone();
            assert!(store.delete("demo", &id3).expect("deletes"));
        }
        let store = Store::open(&path).expect("reopens");
        assert_eq!(store.top("demo").expect("top"), 5);
        let texts = |p: Vec<Message>| p.into_iter().map(|m| m.text).collect::<Vec<_>>();
        assert_eq!(
            texts(store.page("demo", None, 2).expect("page")),
            ["m4", "m3"]
        );
        assert_eq!(
            texts(store.page("demo", Some(4), 10).expect("page")),
            ["m1", "m0"],
            "m2 deleted"
        );
        store
            .ban(
                "demo",
                "u",
                &Ban {
                    reason: "spam".into(),
                    until: Some(100),
                },
            )
            .expect("bans");
        assert!(store.banned("demo", "u", 50).expect("reads").is_some());
        assert!(
            store.banned("demo", "u", 150).expect("reads").is_none(),
            "expired"
        );
        assert!(
            store.banned("other", "u", 50).expect("reads").is_none(),
            "per room"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
