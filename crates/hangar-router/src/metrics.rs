//! Prometheus metrics, served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The `server` label of requests for a server that is not in the catalog.
pub const UNKNOWN_SERVER: &str = "(unknown)";

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub instances_running: IntGauge,
    pub cold_starts: IntCounterVec,
    pub cold_start_seconds: HistogramVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "hangar_requests_total",
                "MCP requests by server and HTTP status",
            ),
            &["server", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "hangar_request_duration_seconds",
                "Time to the response head, by server",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["server"],
        )
        .expect("valid metric");
        let instances_running = IntGauge::new("hangar_instances_running", "Instances running now")
            .expect("valid metric");
        let cold_starts = IntCounterVec::new(
            Opts::new("hangar_cold_starts_total", "Instances started on demand"),
            &["server"],
        )
        .expect("valid metric");
        let cold_start_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hangar_cold_start_seconds",
                "Time from first request to a ready instance",
            )
            .buckets(vec![0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]),
            &["server"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(instances_running.clone()),
            Box::new(cold_starts.clone()),
            Box::new(cold_start_seconds.clone()),
        ] {
            registry.register(c).expect("metrics register once");
        }
        Metrics {
            registry,
            requests,
            latency,
            instances_running,
            cold_starts,
            cold_start_seconds,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
