//! Finishing broadcasts: the checkpoints of a live session, the VOD written when it ends, the
//! recovery of a session an earlier run left unfinished, and reading finished broadcasts back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::catalog::{EventKind, Metadata};
use super::render::{self, Header, Kind, Listed};
use super::{
    Replay, Session, SessionState, SessionSummary, Stored, StreamReplay, parse_session_id,
};

impl Replay {
    /// Writes the live session's playlists so far (EVENT playlists, no end), when
    /// `checkpoint_every` has passed since the last time. Counted as pending writes, so the
    /// VOD written at the end always lands after them.
    pub(super) fn checkpoint(&self, sr: &StreamReplay, session: &Arc<Session>) {
        {
            let mut last = session.checkpointed.lock();
            if last.elapsed() < self.settings.checkpoint_every
                || session.state() != SessionState::Live
            {
                return;
            }
            *last = std::time::Instant::now();
        }
        let stream = sr.stream.name();
        let (playlists, _, _) = session_playlists(sr, session, Kind::Event);
        let mut objects: Vec<(String, Bytes)> = sr
            .stream
            .renditions()
            .iter()
            .zip(playlists)
            .map(|(r, text)| {
                (
                    format!("{stream}/{}/{}/index.m3u8", session.id, r.name()),
                    Bytes::from(text),
                )
            })
            .collect();
        if let Some(master) = sr.stream.master_playlist() {
            objects.push((format!("{stream}/{}/master.m3u8", session.id), master));
        }
        for (key, bytes) in objects {
            session.pending.start();
            let s = session.clone();
            self.archive
                .put(key, vec![bytes], move |_| s.pending.finish());
        }
    }

    /// Finishes, as a VOD, a session an earlier run of the origin was recording when it
    /// stopped without ending it (a crash): its last checkpoint becomes the VOD.
    async fn recover(&self, sr: &StreamReplay, id: &str) -> Option<SessionSummary> {
        let stream = sr.stream.name();
        let base = format!("{stream}/{id}");
        let mut names = Vec::new();
        let mut duration = None;
        let mut last_end = None;
        for r in sr.stream.renditions() {
            let key = format!("{base}/{}/index.m3u8", r.name());
            let Ok(Some(bytes)) = self.archive.get(&key).await else {
                continue;
            };
            let vod = finish_checkpoint(&String::from_utf8_lossy(&bytes));
            if duration.is_none() {
                duration = Some(playlist_duration(&vod));
                last_end = playlist_end(&vod);
            }
            if !self.archive.put_now(&key, Bytes::from(vod)).await {
                return None;
            }
            names.push(r.name().to_string());
        }
        let Some(duration) = duration else {
            tracing::warn!(%stream, session = %id, "a session left unfinished by an earlier run has no checkpoint; its media stays in the archive without playlists");
            return None;
        };
        let started = parse_session_id(id)?;
        let meta = self.catalog.metadata(stream).unwrap_or_default();
        let thumbnail = self.archive.get(&format!("{base}/thumbnail.jpg")).await;
        let summary = SessionSummary {
            stream: stream.to_string(),
            session: id.to_string(),
            title: meta.title,
            description: meta.description,
            state: "recovered".to_string(),
            started: humantime::format_rfc3339_millis(started).to_string(),
            ended: humantime::format_rfc3339_millis(last_end.unwrap_or(started)).to_string(),
            duration,
            renditions: names,
            missing_segments: 0,
            master: format!("/vod/{base}/master.m3u8"),
            thumbnail: matches!(thumbnail, Ok(Some(_)))
                .then(|| format!("/vod/{base}/thumbnail.jpg")),
        };
        let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
        if !self
            .archive
            .put_now(&format!("{base}/session.json"), Bytes::from(json))
            .await
        {
            return None;
        }
        self.archive
            .metrics()
            .sessions
            .with_label_values(&["recovered"])
            .inc();
        tracing::warn!(%stream, session = %id, duration_s = duration, "a session an earlier run left unfinished (a crash) is finished as a VOD from its last checkpoint");
        Some(summary)
    }

    /// Writes a finished session's VOD playlists and summary.
    pub(super) async fn finalize(&self, sr: &StreamReplay, session: &Session) {
        let stream = sr.stream.name();
        if !session
            .pending
            .idle_within(self.settings.finalize_timeout)
            .await
        {
            tracing::error!(%stream, session = %session.id, pending = session.pending.count(), "archive writes still pending after archive.finalize_timeout; they are listed as gaps");
        }
        let names: Vec<String> = sr
            .stream
            .renditions()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        let (playlists, duration, missing) = session_playlists(sr, session, Kind::Vod);
        let base = format!("{stream}/{}", session.id);
        let mut ok = true;
        for (name, text) in names.iter().zip(playlists) {
            ok &= self
                .archive
                .put_now(&format!("{base}/{name}/index.m3u8"), Bytes::from(text))
                .await;
        }
        match sr.stream.master_playlist() {
            Some(master) => {
                ok &= self
                    .archive
                    .put_now(&format!("{base}/master.m3u8"), master)
                    .await;
            }
            None => ok = false,
        }
        let ended = session.ended().unwrap_or_else(SystemTime::now);
        let meta = self.catalog.metadata(stream).unwrap_or_default();
        let thumbnail = self.archive.get(&format!("{base}/thumbnail.jpg")).await;
        let summary = SessionSummary {
            stream: stream.to_string(),
            session: session.id.clone(),
            title: meta.title,
            description: meta.description,
            state: if missing == 0 {
                "archived"
            } else {
                "incomplete"
            }
            .to_string(),
            started: humantime::format_rfc3339_millis(session.started).to_string(),
            ended: humantime::format_rfc3339_millis(ended).to_string(),
            duration,
            renditions: names,
            missing_segments: missing,
            master: format!("/vod/{base}/master.m3u8"),
            thumbnail: matches!(thumbnail, Ok(Some(_)))
                .then(|| format!("/vod/{base}/thumbnail.jpg")),
        };
        let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
        ok &= self
            .archive
            .put_now(&format!("{base}/session.json"), Bytes::from(json))
            .await;
        let result = match (ok, missing) {
            (false, _) => "failed",
            (true, 0) => "archived",
            (true, _) => "incomplete",
        };
        self.archive
            .metrics()
            .sessions
            .with_label_values(&[result])
            .inc();
        session.inner.lock().state = if ok {
            SessionState::Archived
        } else {
            SessionState::Failed
        };
        if ok {
            tracing::info!(%stream, session = %session.id, duration_s = duration, missing, vod = %summary.master, "session archived");
            let master = summary.master.clone();
            self.catalog.add_past(summary);
            self.catalog
                .emit(EventKind::Archived, stream, Some(&session.id), master);
        } else {
            tracing::error!(%stream, session = %session.id, "the session's VOD playlists could not be written to the archive");
        }
    }

    /// Reads what the archive holds of earlier runs: past broadcasts and streams' metadata.
    pub async fn load(&self) {
        for name in self.streams.keys() {
            match self.archive.get(&format!("{name}/meta.json")).await {
                Ok(Some(bytes)) => match serde_json::from_slice::<Metadata>(&bytes) {
                    Ok(meta) => self.catalog.set_metadata(name, Some(meta)),
                    Err(e) => {
                        tracing::warn!(stream = %name, error = %e, "unreadable meta.json in the archive")
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(stream = %name, error = %e, "cannot read the archive"),
            }
            let sessions = match self.archive.list_dirs(name).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, "cannot list the archive");
                    continue;
                }
            };
            let sr = &self.streams[name];
            for id in sessions {
                match self.archive.get(&format!("{name}/{id}/session.json")).await {
                    Ok(Some(bytes)) => match serde_json::from_slice::<SessionSummary>(&bytes) {
                        Ok(summary) => self.catalog.add_past(summary),
                        Err(e) => {
                            tracing::warn!(stream = %name, session = %id, error = %e, "unreadable session.json")
                        }
                    },
                    // Begun before this run started, never finished: an earlier run crashed.
                    Ok(None)
                        if parse_session_id(&id)
                            .is_some_and(|t| t + Duration::from_secs(1) < self.started) =>
                    {
                        if let Some(summary) = self.recover(sr, &id).await {
                            let master = summary.master.clone();
                            self.catalog.add_past(summary);
                            self.catalog
                                .emit(EventKind::Archived, name, Some(&id), master);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(stream = %name, session = %id, error = %e, "cannot read the archive")
                    }
                }
            }
        }
        tracing::info!(
            past = self.catalog.past().len(),
            "past broadcasts read from the archive"
        );
    }

    /// Deletes a past broadcast from the archive and the catalog; whether it existed.
    pub async fn delete_session(
        &self,
        stream: &str,
        session: &str,
    ) -> Result<bool, object_store::Error> {
        if self
            .streams
            .get(stream)
            .and_then(|s| s.current())
            .is_some_and(|s| {
                s.id == session
                    && s.state() != SessionState::Archived
                    && s.state() != SessionState::Failed
            })
        {
            return Ok(false);
        }
        let removed = self
            .archive
            .delete_all(&format!("{stream}/{session}/"))
            .await?;
        let listed = self.catalog.remove_past(stream, session);
        Ok(removed > 0 || listed)
    }

    /// An object of a finished broadcast: `file` under `/vod/{stream}/{session}/`.
    pub async fn vod_object(
        &self,
        stream: &str,
        session: &str,
        file: &str,
    ) -> Result<Option<Bytes>, object_store::Error> {
        self.archive
            .get(&format!("{stream}/{session}/{file}"))
            .await
    }
}

/// Each rendition's playlist of a whole session: a VOD (`Kind::Vod`) once it ended, or its
/// checkpoint so far (`Kind::Event`); with its duration and the segments listed as gaps
/// because their media is not archived (yet, for a checkpoint).
fn session_playlists(
    sr: &StreamReplay,
    session: &Session,
    kind: Kind,
) -> (Vec<String>, f64, usize) {
    let target = sr.stream.params().target_duration();
    let tags = sr.stream.dateranges(Some(session.started), session.ended());
    let inner = session.inner.lock();
    let mut missing = 0;
    let playlists = inner
        .tracks
        .iter()
        .map(|track| {
            let listed: Vec<Listed<'_>> = track
                .iter()
                .map(|(record, stored)| {
                    let lost = match kind {
                        Kind::Vod => matches!(stored, Stored::Failed | Stored::Pending),
                        _ => *stored == Stored::Failed,
                    };
                    missing += usize::from(lost);
                    Listed {
                        record,
                        missing: lost,
                    }
                })
                .collect();
            let header = Header {
                target_duration: target,
                tags: tags.clone(),
                ..Header::default()
            };
            render::segment_playlist(kind, &header, &listed)
        })
        .collect();
    let duration = inner
        .tracks
        .first()
        .map_or(0.0, |t| t.iter().map(|(r, _)| r.duration).sum());
    (playlists, duration, missing)
}

/// A checkpoint (an EVENT playlist) made into the VOD it would have become.
pub fn finish_checkpoint(text: &str) -> String {
    let mut vod = text.replace("#EXT-X-PLAYLIST-TYPE:EVENT\n", "#EXT-X-PLAYLIST-TYPE:VOD\n");
    if !vod.ends_with("#EXT-X-ENDLIST\n") {
        vod.push_str("#EXT-X-ENDLIST\n");
    }
    vod
}

/// The sum of a playlist's `EXTINF` durations.
pub(super) fn playlist_duration(text: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|d| d.split(',').next()?.parse::<f64>().ok())
        .sum()
}

/// When a playlist's last segment ends: its program date-time plus its duration.
pub(super) fn playlist_end(text: &str) -> Option<SystemTime> {
    let mut last = None;
    let mut at = None;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            at = humantime::parse_rfc3339(t).ok();
        } else if let Some(d) = line.strip_prefix("#EXTINF:")
            && let (Some(t), Some(d)) =
                (at, d.split(',').next().and_then(|d| d.parse::<f64>().ok()))
        {
            last = Some(t + Duration::from_secs_f64(d.max(0.0)));
        }
    }
    last
}
