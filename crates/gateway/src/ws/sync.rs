//! Catching up: the counters and missed messages when a user connection
//! opens, and `sync` pages later.

use chat_protocol::ServerFrame;
use chat_store::InboxEntry;

use super::handler::{Ctx, Outcome};

/// Most frames one `sync` (or the replay after connecting) delivers.
pub(crate) const SYNC_MAX: usize = 500;

/// How a user connection catches up when it opens.
pub(crate) enum Replay {
    /// Nothing to replay (the lobby).
    None,
    /// Hand over what arrived while the user had no connection (the seed's
    /// clients, which know nothing of sync).
    Offline,
    /// Everything in the inbox after this `seq` (`?since=`).
    Since(u64),
}

/// When a user connection opens: the unread counters, then the messages it
/// missed — everything after `?since=`, or, for clients that do not sync
/// (the seed's), what arrived while the user had no connection. Written
/// straight to the socket, ahead of live deliveries queued meanwhile.
pub(crate) async fn catch_up(ctx: &Ctx<'_>, replay: Replay) -> Outcome {
    if matches!(replay, Replay::None) {
        return Outcome::Continue;
    }
    let store = &ctx.gw.store;
    // Counters first, and only then anything that consumes the offline list.
    let counts = match store.unread(ctx.user).await {
        Ok(counts) => counts,
        Err(e) => return ctx.replies.unavailable(None, &e),
    };
    let rooms = match ctx.gw.rooms.room_unread(ctx.user).await {
        Ok(rooms) => rooms,
        Err(e) => return ctx.replies.unavailable(None, &e),
    };
    let mut frames = vec![ServerFrame::Unread { counts, rooms }.to_json()];
    match replay {
        Replay::None => {}
        Replay::Since(since) => match page(ctx, None, since, SYNC_MAX).await {
            Ok(page) => frames.extend(page),
            Err(outcome) => return outcome,
        },
        Replay::Offline => match store.take_offline(ctx.user).await {
            Ok(entries) => frames.extend(entries.into_iter().map(|e| e.frame)),
            Err(e) => return ctx.replies.unavailable(None, &e),
        },
    }
    Outcome::Write(frames)
}

/// `sync {since, limit}`: the inbox after `since`.
pub(crate) async fn sync(
    ctx: &Ctx<'_>,
    id: Option<String>,
    since: u64,
    limit: Option<u32>,
) -> Outcome {
    match page(ctx, id, since, page_limit(limit)).await {
        Ok(frames) => Outcome::Write(frames),
        Err(outcome) => outcome,
    }
}

/// The inbox after `since` (at most `limit` frames), then `synced`.
async fn page(
    ctx: &Ctx<'_>,
    id: Option<String>,
    since: u64,
    limit: usize,
) -> Result<Vec<String>, Outcome> {
    let entries = ctx
        .gw
        .store
        .inbox_since(ctx.user, since, limit + 1)
        .await
        .map_err(|e| ctx.replies.unavailable(id.as_deref(), &e))?;
    Ok(frames(entries, id, None, since, limit))
}

/// A `sync`'s page size: `limit` within 1..=[`SYNC_MAX`], [`SYNC_MAX`] when absent.
pub(crate) fn page_limit(limit: Option<u32>) -> usize {
    limit.map_or(SYNC_MAX, |l| (l as usize).clamp(1, SYNC_MAX))
}

/// The first `limit` of `entries` (fetched after `since`, one more than
/// `limit` if there are), then `synced` saying where they stop and whether
/// more wait.
pub(crate) fn frames(
    entries: Vec<InboxEntry>,
    id: Option<String>,
    room: Option<String>,
    since: u64,
    limit: usize,
) -> Vec<String> {
    let more = entries.len() > limit;
    let mut until = since;
    let mut frames = Vec::with_capacity(entries.len().min(limit) + 1);
    for InboxEntry { seq, frame } in entries.into_iter().take(limit) {
        until = seq;
        frames.push(frame);
    }
    frames.push(
        ServerFrame::Synced {
            id,
            room,
            until,
            more,
        }
        .to_json(),
    );
    frames
}
