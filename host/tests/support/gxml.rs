//! A small reader of Ganglia XML (gmond's or gmetad's) for tests: hosts, their metrics,
//! each metric's attributes and extras, whatever wraps them (GRID, CLUSTER).

#![allow(dead_code)] // Each test binary uses its own part of this module.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

#[derive(Debug, Default)]
pub struct Document {
    pub hosts: Vec<Host>,
}

#[derive(Debug, Default)]
pub struct Host {
    pub attrs: Vec<(String, String)>,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Default)]
pub struct Metric {
    pub attrs: Vec<(String, String)>,
    /// EXTRA_ELEMENT (NAME, VAL) pairs in document order.
    pub extras: Vec<(String, String)>,
}

impl Document {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts
            .iter()
            .find(|host| attr(&host.attrs, "NAME") == name)
    }
}

impl Host {
    pub fn attr(&self, name: &str) -> &str {
        attr(&self.attrs, name)
    }

    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics
            .iter()
            .find(|metric| metric.attr("NAME") == name)
    }
}

impl Metric {
    pub fn attr(&self, name: &str) -> &str {
        attr(&self.attrs, name)
    }

    /// Values of every extra called `name`, in document order.
    pub fn extra(&self, name: &str) -> Vec<&str> {
        self.extras
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> &'a str {
    attrs
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

/// Parses a whole document; an ill-formed one is an error.
pub fn parse(xml: &str) -> Result<Document, String> {
    let mut reader = Reader::from_str(xml);
    let mut document = Document::default();
    loop {
        let event = reader
            .read_event()
            .map_err(|error| format!("XML error at byte {}: {error}", reader.buffer_position()))?;
        match event {
            Event::Start(tag) | Event::Empty(tag) => element(&mut document, &tag)?,
            Event::Eof => return Ok(document),
            _ => {}
        }
    }
}

fn element(document: &mut Document, tag: &BytesStart<'_>) -> Result<(), String> {
    let attrs = attributes(tag)?;
    match tag.name().as_ref() {
        b"HOST" => document.hosts.push(Host {
            attrs,
            metrics: Vec::new(),
        }),
        b"METRIC" => current_host(document)?.metrics.push(Metric {
            attrs,
            extras: Vec::new(),
        }),
        b"EXTRA_ELEMENT" => {
            let metric = current_host(document)?
                .metrics
                .last_mut()
                .ok_or("EXTRA_ELEMENT outside a METRIC")?;
            metric.extras.push((
                attr(&attrs, "NAME").to_owned(),
                attr(&attrs, "VAL").to_owned(),
            ));
        }
        _ => {}
    }
    Ok(())
}

fn current_host(document: &mut Document) -> Result<&mut Host, String> {
    document
        .hosts
        .last_mut()
        .ok_or_else(|| "METRIC outside a HOST".to_owned())
}

fn attributes(tag: &BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    tag.attributes()
        .map(|attribute| {
            let attribute = attribute.map_err(|error| error.to_string())?;
            let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
            let value = attribute
                .unescape_value()
                .map_err(|error| error.to_string())?;
            Ok((key, value.into_owned()))
        })
        .collect()
}
