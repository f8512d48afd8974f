//! Benchmark module: declares `count` double metrics (param, default 100) named
//! `<prefix>0` .. `<prefix>N-1` (param `prefix`, default `bench_`), and answers each with
//! a value that moves on every call. The handler does as little as a metric can, so the
//! host's cost per metric shows.

use wasmond_guest::{Metric, MetricValue, Module, Params, ValueType};

struct Bench {
    prefix: String,
    count: usize,
    calls: u64,
}

impl Module for Bench {
    fn init(params: &Params) -> Result<(Self, Vec<Metric>), String> {
        let prefix = params.get("prefix").unwrap_or("bench_").to_string();
        let count = params.parse_or("count", 100usize)?;
        let metrics = (0..count)
            .map(|i| Metric::new(format!("{prefix}{i}"), ValueType::Double).units("units").group("bench"))
            .collect();
        Ok((Bench { prefix, count, calls: 0 }, metrics))
    }

    fn handle(&mut self, metric: &str) -> Result<MetricValue, String> {
        let index: usize = metric
            .strip_prefix(self.prefix.as_str())
            .and_then(|n| n.parse().ok())
            .filter(|&i| i < self.count)
            .ok_or_else(|| format!("unknown metric {metric}"))?;
        self.calls += 1;
        Ok(MetricValue::Double(self.calls as f64 + index as f64))
    }
}

wasmond_guest::export_module!(Bench);
