//! Marking a conversation or a room read, and telling everyone concerned.

use std::sync::Arc;

use chat_broker::{Broker, channel, envelope};
use chat_protocol::ServerFrame;

use crate::StoreError;
use crate::messages::{MessageStore, ReadMarker};
use crate::rooms::{RoomError, RoomRead, RoomStore};

/// Marks `reader`'s conversation with `peer` read up to message `up_to`.
/// When the marker moved, publishes the reader's new counters to all the
/// reader's connections and a `receipt` to the peer's; a stale read (at or
/// before the marker) and an unknown message change and publish nothing.
/// The read is durable once the store has it; the publishes only make the
/// other devices know sooner (they also get the counters when they next
/// connect).
///
/// Errors: [`StoreError::Unavailable`] when the store or the broker cannot
/// be reached (a publish failure after a stored read is reported too: the
/// caller may retry, which is then a stale read).
pub async fn mark_read(
    store: &dyn MessageStore,
    broker: &Arc<dyn Broker>,
    reader: &str,
    peer: &str,
    up_to: &str,
) -> Result<ReadMarker, StoreError> {
    let marker = store.mark_read(reader, peer, up_to).await?;
    let ReadMarker::Moved(counts) = &marker else {
        return Ok(marker);
    };
    let unread = ServerFrame::Unread {
        counts: counts.clone(),
        rooms: Default::default(),
    }
    .to_json();
    let receipt = ServerFrame::Receipt {
        from: reader.to_owned(),
        up_to: up_to.to_owned(),
        room: None,
    }
    .to_json();
    let mine = broker
        .publish(&channel::user(reader), envelope::text(&unread))
        .await;
    let theirs = broker
        .publish(&channel::user(peer), envelope::text(&receipt))
        .await;
    mine.and(theirs)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(marker)
}

/// Marks `reader`'s place in `room` up to entry `up_to` (an id). When the
/// marker moved, every connection of the reader gets `unread` with all
/// their direct counters and the room's new count, and — while the room
/// has at most `receipts_max` members — the room gets a `receipt` (in a
/// larger room a receipt per read would cost every member a frame per
/// reader). A stale read and an unknown entry publish nothing.
///
/// Errors: those of [`RoomStore::mark_room_read`], and
/// [`RoomError::Store`] when a publish fails after the marker moved (a
/// retry is then a stale read).
#[allow(clippy::too_many_arguments)]
pub async fn mark_room_read(
    messages: &dyn MessageStore,
    rooms: &dyn RoomStore,
    broker: &Arc<dyn Broker>,
    reader: &str,
    room: &str,
    up_to: &str,
    receipts_max: u64,
) -> Result<RoomRead, RoomError> {
    let read = rooms.mark_room_read(room, reader, up_to).await?;
    let RoomRead::Moved { unread, members } = &read else {
        return Ok(read);
    };
    let counts = messages.unread(reader).await?;
    let frame = ServerFrame::Unread {
        counts,
        rooms: [(room.to_owned(), *unread)].into_iter().collect(),
    }
    .to_json();
    let published = broker
        .publish(&channel::user(reader), envelope::text(&frame))
        .await;
    let receipt = if *members <= receipts_max {
        let receipt = ServerFrame::Receipt {
            from: reader.to_owned(),
            up_to: up_to.to_owned(),
            room: Some(room.to_owned()),
        }
        .to_json();
        broker
            .publish(&channel::room(room), envelope::text(&receipt))
            .await
    } else {
        Ok(())
    };
    published
        .and(receipt)
        .map_err(|e| RoomError::Store(StoreError::Unavailable(e.to_string())))?;
    Ok(read)
}
