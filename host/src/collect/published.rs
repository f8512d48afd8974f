//! What goes out with each running metric: its descriptor, its metadata as peers get it
//! (titled by the group that selected it), its wire-safe format, and when its metadata
//! last went out. One row per metric; every group's slots point at rows by index, so a
//! metric in several groups sends its metadata once.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::select::MetricKey;
use crate::metric::{MetricDescriptor, MetricMeta, MetricValue, OutgoingMetric};
use crate::store::Place;
use crate::wire::safe;

#[derive(Default)]
pub(super) struct Published {
    rows: Vec<Row>,
    index: HashMap<MetricKey, usize>,
}

struct Row {
    /// The descriptor's name, shared by every value that goes out.
    name: Arc<str>,
    descriptor: Arc<MetricDescriptor>,
    meta: Arc<MetricMeta>,
    format: Arc<str>,
    metadata_sent: Option<Instant>,
    /// Where the metric's value goes in the store.
    store_place: Cell<Option<Place>>,
}

impl Published {
    /// Makes the rows those of `metrics` (each with the title its group gives it). A
    /// metric whose descriptor and metadata are unchanged keeps its row, and with it when
    /// its metadata last went out; any other starts as never sent.
    pub(super) fn rebuild<'a>(
        &mut self,
        metrics: impl IntoIterator<Item = (&'a MetricKey, &'a MetricDescriptor, Option<&'a str>)>,
    ) {
        let mut previous: Vec<Option<Row>> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(Some)
            .collect();
        let previous_index = std::mem::take(&mut self.index);
        // Metrics of one format share its string: every value sent touches it, and one
        // string in cache beats one per metric.
        let mut formats: HashSet<Arc<str>> = HashSet::new();
        for (key, descriptor, title) in metrics {
            let meta = MetricMeta::from_descriptor(descriptor, title, 0);
            let before = previous_index.get(key).and_then(|&i| previous[i].take());
            let mut row = match before {
                Some(row) if *row.meta == meta && *row.descriptor == *descriptor => row,
                _ => Row {
                    name: descriptor.name.as_str().into(),
                    descriptor: Arc::new(descriptor.clone()),
                    meta: Arc::new(meta),
                    format: safe::format(&descriptor.format, descriptor.value_type)
                        .as_ref()
                        .into(),
                    metadata_sent: None,
                    store_place: Cell::new(None),
                },
            };
            match formats.get(&row.format) {
                Some(shared) => row.format = Arc::clone(shared),
                None => {
                    formats.insert(Arc::clone(&row.format));
                }
            }
            self.index.insert(key.clone(), self.rows.len());
            self.rows.push(row);
        }
    }

    /// The row of a metric passed to the last [`rebuild`](Self::rebuild).
    pub(super) fn row_of(&self, key: &MetricKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// Row `row`'s metric with `value`, and with its metadata if that is due: never sent,
    /// asked for again, or last sent `send_metadata_interval` ago.
    pub(super) fn outgoing(
        &mut self,
        row: usize,
        value: &MetricValue,
        send_metadata_interval: Option<Duration>,
        now: Instant,
    ) -> Option<OutgoingMetric> {
        let row = self.rows.get_mut(row)?;
        let due = row.metadata_sent.is_none_or(|sent| {
            send_metadata_interval.is_some_and(|interval| sent + interval <= now)
        });
        if due {
            row.metadata_sent = Some(now);
        }
        Some(OutgoingMetric {
            metadata: due.then(|| row.meta.clone()),
            name: Arc::clone(&row.name),
            value: value.clone(),
            format: row.format.clone(),
        })
    }

    /// Where row `row`'s value went in the store, kept by the store.
    pub(super) fn store_place(&self, row: usize) -> Option<&Cell<Option<Place>>> {
        self.rows.get(row).map(|row| &row.store_place)
    }

    /// Sends the metadata of `metric` (`None`: of every metric) with its next value.
    pub(super) fn resend(&mut self, metric: Option<&str>) {
        for row in &mut self.rows {
            if metric.is_none_or(|name| row.descriptor.name == name) {
                row.metadata_sent = None;
            }
        }
    }
}
