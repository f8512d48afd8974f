//! The store as a Prometheus remote-write 1.0 request: a `WriteRequest` protobuf,
//! snappy-compressed (block format), one sample per series stamped with the snapshot's
//! time. Sans-IO: the sender in `net::remote_write` only queues and POSTs the bytes.
//!
//! The series are the exposition's samples ([`super::prometheus`]): the same families
//! (so the same names, sanitizing, unit and `_total`/`_info` suffixes, staleness and
//! conflict drops), the same labels, the same values. What differs is what the
//! protocol requires: the name is the `__name__` label, labels are sorted by name, and a
//! label whose value is empty is left out (as a scrape leaves it out: Prometheus takes
//! an empty label as no label). Remote write 1.0 carries samples only, so TYPE, HELP
//! and UNIT are not sent.
//!
//! The messages are hand-written `prost` derives of the spec's `remote.proto` and
//! `types.proto`, cut down to the fields 1.0 uses; no `protoc` is needed.

use std::sync::Arc;
use std::time::SystemTime;

use super::prometheus::families::Families;
use super::prometheus::{Kind, info_text, join_groups, labels, sample_value};
use crate::store::Store;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: the timestamp in milliseconds since the Unix epoch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// One snapshot of the store, ready to POST.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The snappy-compressed `WriteRequest`.
    pub body: Vec<u8>,
    /// Samples in it (one per series).
    pub samples: usize,
    /// Metrics left out as the exposition leaves them out (conflicting names or types).
    pub dropped: usize,
}

/// The `WriteRequest` of every live metric of `store` as of `now`, and how many metrics
/// were left out.
pub(crate) fn snapshot(store: &Arc<Store>, now: SystemTime) -> (WriteRequest, usize) {
    let timestamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    store.with_view(|view| {
        let cluster = view.config().cluster.name.as_str();
        let families = Families::collect(view, now, |found| found.member);
        let mut timeseries = Vec::with_capacity(families.samples());
        let (mut name, mut groups, mut text) = (String::new(), String::new(), String::new());
        for family in families.iter() {
            name.clear();
            name.push_str(families.name(family));
            name.push_str(family.kind.sample_suffix());
            for member in families.members(family) {
                let metric = member.metric;
                join_groups(metric, &mut groups);
                let mut pairs = Vec::with_capacity(6);
                pairs.push(("__name__", name.as_str()));
                pairs.extend(labels(cluster, member.host.name, &groups, metric.name));
                if family.kind == Kind::Info {
                    info_text(metric, &mut text);
                    pairs.push(("value", text.as_str()));
                }
                pairs.sort_unstable_by_key(|(name, _)| *name);
                let labels = pairs
                    .into_iter()
                    .filter(|(_, value)| !value.is_empty())
                    .map(|(name, value)| Label {
                        name: name.to_owned(),
                        value: value.to_owned(),
                    })
                    .collect();
                let value = sample_value(family.kind, &metric.sample.value);
                timeseries.push(TimeSeries {
                    labels,
                    samples: vec![Sample { value, timestamp }],
                });
            }
        }
        (WriteRequest { timeseries }, families.dropped)
    })
}

/// The request body of `request`: its protobuf encoding, snappy-compressed in the block
/// format (what `Content-Encoding: snappy` means to remote write, not the framed one).
/// Fails only past snappy's limit on one block (about 4 GiB).
pub fn encode(request: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    let protobuf = prost::Message::encode_to_vec(request);
    snap::raw::Encoder::new().compress_vec(&protobuf)
}

/// A snapshot of `store` as of `now`, encoded.
pub fn render(store: &Arc<Store>, now: SystemTime) -> Result<Batch, snap::Error> {
    let (request, dropped) = snapshot(store, now);
    Ok(Batch {
        body: encode(&request)?,
        samples: request.timeseries.len(),
        dropped,
    })
}

/// What went wrong reading a request body back (the tests' receiver).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("not a WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// The `WriteRequest` in a request body, as a receiver reads it.
pub fn decode(body: &[u8]) -> Result<WriteRequest, DecodeError> {
    let protobuf = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(prost::Message::decode(protobuf.as_slice())?)
}

#[cfg(test)]
mod tests;
