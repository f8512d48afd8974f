//! gmond's XML document, rendered from a view of the store: the whole cluster for
//! `tcp_accept_channel`, and the pieces the interactive port cuts down. The store keeps
//! the data and knows nothing of XML; `wire::xml` writes the tags and knows nothing of
//! the store; this walks the one into the other.

use std::io;
use std::time::SystemTime;

use crate::store::{HostView, MetricView, Store, StoreConfig, View, seconds_between, unix_seconds};
use crate::wire::xml::{ClusterAttrs, GangliaXmlWriter, HostAttrs, MetricAttrs, render_extra_data};

/// The gmond XML document of the whole cluster as of `now`, rendered under the store's
/// read lock into a buffer of `capacity` bytes to start with (the last document's size
/// saves regrowing it).
pub fn document(store: &Store, now: SystemTime, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    // Writing into a Vec cannot fail; if the writer ever reports an error, the document
    // is cut short rather than a reader being taken down.
    let _ = store.with_view(|view| write_document(view, now, &mut out));
    out
}

fn write_document(view: View<'_>, now: SystemTime, out: &mut Vec<u8>) -> io::Result<()> {
    let mut xml = begin(view, now, out)?;
    for host in view.hosts() {
        write_host(&mut xml, host, None, view.config(), now)?;
    }
    xml.finish()?;
    Ok(())
}

/// Writes the prolog and opens `GANGLIA_XML` and the `CLUSTER`.
pub(crate) fn begin<'o>(
    view: View<'_>,
    now: SystemTime,
    out: &'o mut Vec<u8>,
) -> io::Result<GangliaXmlWriter<&'o mut Vec<u8>>> {
    let cluster = &view.config().cluster;
    GangliaXmlWriter::begin(
        out,
        &ClusterAttrs {
            name: &cluster.name,
            localtime: unix_seconds(now),
            owner: &cluster.owner,
            latlong: &cluster.latlong,
            url: &cluster.url,
        },
    )
}

/// Writes one `HOST` with `metrics` (`None`: all of its metrics).
pub(crate) fn write_host(
    xml: &mut GangliaXmlWriter<&mut Vec<u8>>,
    host: HostView<'_>,
    metrics: Option<&[MetricView<'_>]>,
    config: &StoreConfig,
    now: SystemTime,
) -> io::Result<()> {
    xml.host(&HostAttrs {
        name: host.name,
        ip: host.ip(),
        tags: "",
        reported: unix_seconds(host.last_heard()),
        tn: seconds_between(host.last_heard(), now),
        tmax: config.host_tmax,
        dmax: config.host_dmax,
        location: host.location(),
        gmond_started: host.gmond_started(),
    })?;
    match metrics {
        Some(metrics) => metrics
            .iter()
            .try_for_each(|metric| write_metric(xml, metric, now)),
        None => host
            .metrics()
            .try_for_each(|metric| write_metric(xml, &metric, now)),
    }
}

fn write_metric(
    xml: &mut GangliaXmlWriter<&mut Vec<u8>>,
    metric: &MetricView<'_>,
    now: SystemTime,
) -> io::Result<()> {
    // The extras are most of a metric's XML and change only with its metadata: they are
    // escaped once and kept beside the metadata for every later document.
    let extra_data = metric
        .extras_rendered
        .get_or_init(|| render_extra_data(&metric.meta.extras));
    xml.metric(&MetricAttrs {
        name: metric.name,
        value: &metric.sample.value,
        format: &metric.sample.format,
        value_type: metric.meta.value_type,
        units: &metric.meta.units,
        tn: seconds_between(metric.updated, now),
        tmax: metric.meta.tmax,
        dmax: metric.meta.dmax,
        slope: metric.meta.slope,
        extra_data,
    })
}
