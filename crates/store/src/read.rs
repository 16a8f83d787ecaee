//! Marking a conversation read, and telling everyone concerned.

use std::sync::Arc;

use chat_broker::{Broker, channel, envelope};
use chat_protocol::ServerFrame;

use crate::StoreError;
use crate::messages::{MessageStore, ReadMarker};

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
    }
    .to_json();
    let receipt = ServerFrame::Receipt {
        from: reader.to_owned(),
        up_to: up_to.to_owned(),
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
