//! The gateway's Prometheus metrics.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Every metric the gateway exports. Cloning shares the underlying series.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// Open WebSocket connections by endpoint (`lobby`, `user`).
    pub connections: IntGaugeVec,
    /// Frames received from clients, by endpoint.
    pub frames_in: IntCounterVec,
    /// Frames written to clients, by endpoint.
    pub frames_out: IntCounterVec,
    /// `error` frames sent, by code.
    pub frame_errors: IntCounterVec,
    /// Publish → local enqueue time of fanned-out frames.
    pub fanout_latency: Histogram,
    /// Time to handle one client frame (decode, store, publish, queue the answer).
    pub frame_handling: Histogram,
    /// Failed Redis operations (publish, subscribe, connect, health).
    pub redis_errors: IntCounter,
    /// Connections closed with 1013 because their outbound queue was full.
    pub slow_consumer_disconnects: IntCounter,
    /// Frames refused by a full outbound queue.
    pub queue_overflows: IntCounter,
    /// Frames refused by the per-connection rate limit.
    pub rate_limited_frames: IntCounter,
    /// Connections closed by the heartbeat (no sign of life in time).
    pub idle_disconnects: IntCounter,
    /// Upgrades refused because the connection cap was reached.
    pub refused_over_capacity: IntCounter,
    /// Upgrades refused because their client address started too many.
    pub refused_per_ip: IntCounter,
    /// Broker payloads this version could not read.
    pub dropped_envelopes: IntCounter,
}

impl GatewayMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            connections: IntGaugeVec::new(
                Opts::new("chat_gateway_connections", "Open WebSocket connections"),
                &["endpoint"],
            )?,
            frames_in: IntCounterVec::new(
                Opts::new(
                    "chat_gateway_frames_in_total",
                    "Frames received from clients",
                ),
                &["endpoint"],
            )?,
            frames_out: IntCounterVec::new(
                Opts::new("chat_gateway_frames_out_total", "Frames written to clients"),
                &["endpoint"],
            )?,
            frame_errors: IntCounterVec::new(
                Opts::new(
                    "chat_gateway_frame_errors_total",
                    "Error frames sent, by code",
                ),
                &["code"],
            )?,
            fanout_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "chat_gateway_fanout_latency_seconds",
                    "Time from publish to the frame being queued for local connections",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0,
                ]),
            )?,
            frame_handling: Histogram::with_opts(
                HistogramOpts::new(
                    "chat_gateway_frame_handling_seconds",
                    "Time to handle one client frame, from reading it to queueing its answer",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0,
                ]),
            )?,
            redis_errors: IntCounter::new("chat_redis_errors_total", "Failed Redis operations")?,
            slow_consumer_disconnects: IntCounter::new(
                "chat_gateway_slow_consumer_disconnects_total",
                "Connections closed (1013) because their outbound queue was full",
            )?,
            queue_overflows: IntCounter::new(
                "chat_gateway_queue_overflows_total",
                "Frames refused by a full outbound queue",
            )?,
            rate_limited_frames: IntCounter::new(
                "chat_gateway_rate_limited_frames_total",
                "Frames refused by the per-connection rate limit",
            )?,
            idle_disconnects: IntCounter::new(
                "chat_gateway_idle_disconnects_total",
                "Connections closed by the heartbeat",
            )?,
            refused_over_capacity: IntCounter::new(
                "chat_gateway_refused_over_capacity_total",
                "Upgrades refused at the connection cap",
            )?,
            refused_per_ip: IntCounter::new(
                "chat_gateway_refused_per_ip_total",
                "Upgrades refused by the per-address limit (429)",
            )?,
            dropped_envelopes: IntCounter::new(
                "chat_gateway_dropped_envelopes_total",
                "Broker payloads that could not be read",
            )?,
        };
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.frames_in.clone()))?;
        registry.register(Box::new(m.frames_out.clone()))?;
        registry.register(Box::new(m.frame_errors.clone()))?;
        registry.register(Box::new(m.fanout_latency.clone()))?;
        registry.register(Box::new(m.frame_handling.clone()))?;
        registry.register(Box::new(m.redis_errors.clone()))?;
        registry.register(Box::new(m.slow_consumer_disconnects.clone()))?;
        registry.register(Box::new(m.queue_overflows.clone()))?;
        registry.register(Box::new(m.rate_limited_frames.clone()))?;
        registry.register(Box::new(m.idle_disconnects.clone()))?;
        registry.register(Box::new(m.refused_over_capacity.clone()))?;
        registry.register(Box::new(m.refused_per_ip.clone()))?;
        registry.register(Box::new(m.dropped_envelopes.clone()))?;
        Ok(m)
    }
}
