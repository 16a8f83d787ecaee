//! The media service's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Uploads, bytes, durations and rejections.
#[derive(Clone)]
pub(crate) struct MediaMetrics {
    /// Stored uploads by kind.
    pub(crate) uploads: IntCounterVec,
    /// Bytes stored.
    pub(crate) bytes: IntCounter,
    /// Upload time, first byte to stored.
    pub(crate) duration: Histogram,
    /// Refused uploads by reason (error code).
    pub(crate) rejections: IntCounterVec,
}

impl MediaMetrics {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            uploads: IntCounterVec::new(
                Opts::new("chat_media_uploads_total", "Stored uploads by kind"),
                &["kind"],
            )?,
            bytes: IntCounter::new("chat_media_upload_bytes_total", "Bytes stored")?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "chat_media_upload_duration_seconds",
                    "Upload time, first byte to stored",
                )
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
            )?,
            rejections: IntCounterVec::new(
                Opts::new("chat_media_rejections_total", "Refused uploads by reason"),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.uploads.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.rejections.clone()))?;
        Ok(m)
    }
}
