//! Prometheus metrics.

use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    writes: IntCounterVec,
    submissions: IntCounterVec,
    validation: HistogramVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("gateway_http_requests_total", "HTTP requests by method, route and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("gateway_http_request_seconds", "HTTP request latency by route").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let writes = IntCounterVec::new(Opts::new("gateway_writes_total", "Committed writes by kind"), &["kind"])
            .expect("valid metric");
        let submissions = IntCounterVec::new(
            Opts::new("gateway_submissions_total", "Submissions by kind and outcome (accepted, replaced, unchanged, rejected)"),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        let validation = HistogramVec::new(
            HistogramOpts::new("gateway_validation_seconds", "Profile validation time per submission")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1]),
            &["kind"],
        )
        .expect("valid metric");
        registry.register(Box::new(submissions.clone())).expect("unique metric");
        registry.register(Box::new(validation.clone())).expect("unique metric");
        registry.register(Box::new(requests.clone())).expect("unique metric");
        registry.register(Box::new(latency.clone())).expect("unique metric");
        registry.register(Box::new(writes.clone())).expect("unique metric");
        Metrics { registry, requests, latency, writes, submissions, validation }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests.with_label_values(&[method, route, &status.to_string()]).inc();
        self.latency.with_label_values(&[route]).observe(elapsed.as_secs_f64());
    }

    pub fn count_write(&self, kind: &str) {
        self.writes.with_label_values(&[kind]).inc();
    }

    pub fn count_submission(&self, kind: &str, outcome: &str) {
        self.submissions.with_label_values(&[kind, outcome]).inc();
    }

    pub fn observe_validation(&self, kind: &str, elapsed: Duration) {
        self.validation.with_label_values(&[kind]).observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("utf-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
