//! Pub/sub on one Redis: a RESP2 subscriber connection with
//! `SUBSCRIBE`/`UNSUBSCRIBE`.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use redis::aio::PubSubSink;

use super::{Batch, COMMAND_TIMEOUT, Connected, Incoming, Sent, Shared, Sink, bounded};

/// Connects to one Redis.
pub(super) struct Connector {
    pub(super) client: redis::Client,
}

impl super::Connector for Connector {
    fn connect<'a>(&'a self, shared: &'a Shared) -> BoxFuture<'a, Result<Connected, String>> {
        async move {
            let pubsub = tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let (mut sink, stream) = pubsub.split();
            sink.subscribe(shared.health_channels())
                .await
                .map_err(|e| e.to_string())?;
            let stream = stream
                .map(|message| Incoming::Message {
                    channel: message.get_channel_name().to_owned(),
                    payload: Bytes::copy_from_slice(message.get_payload_bytes()),
                })
                .boxed();
            Ok((Arc::new(Subscriber(sink)) as Arc<dyn Sink>, stream))
        }
        .boxed()
    }
}

struct Subscriber(PubSubSink);

impl Sink for Subscriber {
    fn apply(&self, batch: Batch) -> Sent {
        let mut sink = self.0.clone();
        async move {
            let attempt = async {
                if !batch.subscribe.is_empty() {
                    sink.subscribe(&batch.subscribe).await?;
                }
                if !batch.unsubscribe.is_empty() {
                    sink.unsubscribe(&batch.unsubscribe).await?;
                }
                Ok::<(), redis::RedisError>(())
            };
            let result = bounded(attempt).await;
            (batch, result)
        }
        .boxed()
    }
}
