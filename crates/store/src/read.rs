//! Marking a conversation read, and telling everyone concerned.

use std::sync::Arc;

use chat_broker::{Broker, channel, envelope};
use chat_protocol::ServerFrame;

use crate::store::{MessageStore, StoreError, Unread};

/// Marks `reader`'s conversation with `peer` read up to message `up_to`,
/// then publishes the reader's new counters to all the reader's connections
/// and a `receipt` to the peer's. The read is durable once the store has it;
/// the publishes only make the other devices know sooner (they also get the
/// counters when they next connect). Returns the reader's counters.
pub async fn mark_read(
    store: &dyn MessageStore,
    broker: &Arc<dyn Broker>,
    reader: &str,
    peer: &str,
    up_to: &str,
) -> Result<Unread, StoreError> {
    let counts = store.mark_read(reader, peer, up_to).await?;
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
    Ok(counts)
}
