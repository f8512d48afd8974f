//! The gmetric XDR codec: Ganglia 3.7.2's UDP messages, ids 128 to 136, without I/O.
//!
//! Layout per the reference's LAYOUT.md §1: every field is a big-endian 4-byte word or an
//! XDR string (length, bytes, zero padding to 4). A message is one datagram: `encode`
//! refuses one over the datagram limit (gmond's `max_udp_msg_len`, 1464) rather than
//! truncate it, and `decode` accepts exactly one canonical message, so that decoding and
//! re-encoding any accepted datagram gives back the same bytes. It rejects trailing bytes,
//! short input, non-zero padding, bad booleans, unknown ids, types and slopes, out-of-range
//! 16-bit values, non-UTF-8 strings and extra counts the datagram cannot hold. Nothing in
//! here panics on any input.
//!
//! Value ids follow the value's type: `uint16` 129, `int16` 130, `int32` 131, `uint32` 132,
//! `string` 133, `float` 134, `double` 135. gmond has no 8-bit value message: `int8` and
//! `uint8` go out as 130 and 129 (a whole word, like every 16-bit value), so they decode
//! as `Int16`/`UInt16`; the metadata's type still says `int8`/`uint8`.

use crate::metric::{MetricValue, Slope, ValueType};

/// gmond's default `max_udp_msg_len`: one XDR message in a 1500-byte MTU datagram.
pub const MAX_UDP_MSG_LEN: usize = 1464;

/// Message ids (`Ganglia_msg_formats` in gmond's `gm_protocol.x`).
pub mod id {
    pub(crate) const METADATA: u32 = 128;
    pub(crate) const USHORT: u32 = 129;
    pub(crate) const SHORT: u32 = 130;
    pub(crate) const INT: u32 = 131;
    pub(crate) const UINT: u32 = 132;
    pub(crate) const STRING: u32 = 133;
    pub(crate) const FLOAT: u32 = 134;
    pub(crate) const DOUBLE: u32 = 135;
    pub(crate) const METADATA_REQUEST: u32 = 136;
}

/// The fields every message starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// The sender's host name, or `"IP:name"` when `spoof` is set.
    pub host: String,
    pub name: String,
    pub spoof: bool,
}

/// Id 128: a metric's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub header: Header,
    pub value_type: ValueType,
    pub units: String,
    pub slope: Slope,
    pub tmax: u32,
    /// 0 = never expires.
    pub dmax: u32,
    /// Key/value extras in wire order (`GROUP`, `DESC`, `TITLE`, `SPOOF_HOST`, ...).
    pub extras: Vec<(String, String)>,
}

/// Ids 129 to 135: a metric's value, with the printf format for its XML `VAL`.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub header: Header,
    pub format: String,
    pub value: MetricValue,
}

/// One gmetric message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Metadata(Metadata),
    Value(Value),
    /// Id 136: "send me the metadata of `header.name`".
    MetadataRequest(Header),
}

impl Message {
    pub fn header(&self) -> &Header {
        match self {
            Message::Metadata(metadata) => &metadata.header,
            Message::Value(value) => &value.header,
            Message::MetadataRequest(header) => header,
        }
    }

    /// The message's id on the wire.
    pub fn id(&self) -> u32 {
        match self {
            Message::Metadata(_) => id::METADATA,
            Message::Value(value) => value_id(&value.value),
            Message::MetadataRequest(_) => id::METADATA_REQUEST,
        }
    }
}

/// The id of the value message that carries `value`.
pub(crate) fn value_id(value: &MetricValue) -> u32 {
    match value {
        MetricValue::UInt8(_) | MetricValue::UInt16(_) => id::USHORT,
        MetricValue::Int8(_) | MetricValue::Int16(_) => id::SHORT,
        MetricValue::Int32(_) => id::INT,
        MetricValue::UInt32(_) => id::UINT,
        MetricValue::String(_) => id::STRING,
        MetricValue::Float(_) => id::FLOAT,
        MetricValue::Double(_) => id::DOUBLE,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message {name:?} would be {len} bytes, over the {limit}-byte datagram limit")]
    TooLong {
        name: String,
        len: usize,
        limit: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{field} at byte {offset}: the datagram ends first")]
    Truncated { field: &'static str, offset: usize },
    #[error("unknown message id {0}")]
    UnknownId(u32),
    #[error("{field} at byte {offset}: boolean must be 0 or 1, not {value}")]
    BadBool {
        field: &'static str,
        offset: usize,
        value: u32,
    },
    #[error("{field} at byte {offset}: non-zero padding after the string")]
    BadPadding { field: &'static str, offset: usize },
    #[error("{field} at byte {offset}: not UTF-8")]
    NotUtf8 { field: &'static str, offset: usize },
    #[error("unknown metric type {0:?}")]
    UnknownType(String),
    #[error("unknown slope {0}")]
    UnknownSlope(u32),
    #[error("value {value} does not fit the 16-bit type of message id {id}")]
    OutOfRange { id: u32, value: u32 },
    #[error("{count} extras cannot fit in the {remaining} bytes left at byte {offset}")]
    TooManyExtras {
        count: u32,
        remaining: usize,
        offset: usize,
    },
    #[error("metadata names metric {body:?} but its header says {header:?}")]
    NameMismatch { header: String, body: String },
    #[error("{0} bytes left over after the message")]
    TrailingBytes(usize),
}

/// Appends `message` to `out`, refusing it if it exceeds [`MAX_UDP_MSG_LEN`].
pub fn encode(message: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_with_limit(message, MAX_UDP_MSG_LEN, out)
}

/// Appends `message` to `out`, refusing it (leaving `out` as it was) if it would take
/// more than `limit` bytes.
pub(crate) fn encode_with_limit(
    message: &Message,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let len = encoded_len(message);
    // Under 4 GiB, every XDR length and count below fits its u32.
    let limit = limit.min(u32::MAX as usize);
    if len > limit {
        let name = message.header().name.clone();
        return Err(EncodeError::TooLong { name, len, limit });
    }
    out.reserve(len);
    put_u32(out, message.id());
    put_header(out, message.header());
    match message {
        Message::Metadata(metadata) => put_metadata_body(out, metadata),
        Message::Value(value) => {
            put_string(out, &value.format);
            put_value(out, &value.value);
        }
        Message::MetadataRequest(_) => {}
    }
    Ok(())
}

/// The number of bytes `message` takes on the wire.
pub(crate) fn encoded_len(message: &Message) -> usize {
    let header = message.header();
    let common = 4 + string_len(&header.host) + string_len(&header.name) + 4;
    common
        + match message {
            Message::Metadata(metadata) => {
                let extras: usize = metadata
                    .extras
                    .iter()
                    .map(|(k, v)| string_len(k) + string_len(v))
                    .sum();
                string_len(metadata.value_type.gmond_name())
                    + string_len(&header.name)
                    + string_len(&metadata.units)
                    + 4 * 4
                    + extras
            }
            Message::Value(value) => string_len(&value.format) + value_len(&value.value),
            Message::MetadataRequest(_) => 0,
        }
}

fn string_len(text: &str) -> usize {
    4 + text.len().div_ceil(4) * 4
}

fn value_len(value: &MetricValue) -> usize {
    match value {
        MetricValue::String(text) => string_len(text),
        MetricValue::Double(_) => 8,
        _ => 4,
    }
}

fn put_u32(out: &mut Vec<u8>, word: u32) {
    out.extend_from_slice(&word.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    put_u32(out, text.len() as u32);
    out.extend_from_slice(text.as_bytes());
    out.resize(out.len() + (4 - text.len() % 4) % 4, 0);
}

fn put_header(out: &mut Vec<u8>, header: &Header) {
    put_string(out, &header.host);
    put_string(out, &header.name);
    put_u32(out, u32::from(header.spoof));
}

fn put_metadata_body(out: &mut Vec<u8>, metadata: &Metadata) {
    put_string(out, metadata.value_type.gmond_name());
    put_string(out, &metadata.header.name);
    put_string(out, &metadata.units);
    put_u32(out, slope_code(metadata.slope));
    put_u32(out, metadata.tmax);
    put_u32(out, metadata.dmax);
    put_u32(out, metadata.extras.len() as u32);
    for (name, data) in &metadata.extras {
        put_string(out, name);
        put_string(out, data);
    }
}

fn put_value(out: &mut Vec<u8>, value: &MetricValue) {
    match value {
        MetricValue::String(text) => put_string(out, text),
        // XDR carries shorts as sign-extended words.
        MetricValue::Int8(v) => put_u32(out, i32::from(*v) as u32),
        MetricValue::Int16(v) => put_u32(out, i32::from(*v) as u32),
        MetricValue::Int32(v) => put_u32(out, *v as u32),
        MetricValue::UInt8(v) => put_u32(out, u32::from(*v)),
        MetricValue::UInt16(v) => put_u32(out, u32::from(*v)),
        MetricValue::UInt32(v) => put_u32(out, *v),
        MetricValue::Float(v) => put_u32(out, v.to_bits()),
        MetricValue::Double(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
    }
}

/// gmond's slope numbers (`ganglia_slope_t`).
fn slope_code(slope: Slope) -> u32 {
    match slope {
        Slope::Zero => 0,
        Slope::Positive => 1,
        Slope::Negative => 2,
        Slope::Both => 3,
        Slope::Unspecified => 4,
        Slope::Derivative => 5,
    }
}

fn slope_from_code(code: u32) -> Result<Slope, DecodeError> {
    let slope = match code {
        0 => Slope::Zero,
        1 => Slope::Positive,
        2 => Slope::Negative,
        3 => Slope::Both,
        4 => Slope::Unspecified,
        5 => Slope::Derivative,
        _ => return Err(DecodeError::UnknownSlope(code)),
    };
    Ok(slope)
}

/// Decodes one datagram holding exactly one message.
pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
    let mut input = Input {
        bytes: datagram,
        offset: 0,
    };
    let id = input.u32("id")?;
    if !(id::METADATA..=id::METADATA_REQUEST).contains(&id) {
        return Err(DecodeError::UnknownId(id));
    }
    let header = Header {
        host: input.string("host")?,
        name: input.string("name")?,
        spoof: input.bool("spoof")?,
    };
    let message = match id {
        id::METADATA => Message::Metadata(decode_metadata_body(&mut input, header)?),
        id::METADATA_REQUEST => Message::MetadataRequest(header),
        _ => {
            let format = input.string("fmt")?;
            let value = decode_value(&mut input, id)?;
            Message::Value(Value {
                header,
                format,
                value,
            })
        }
    };
    input.finish()?;
    Ok(message)
}

fn decode_metadata_body(input: &mut Input<'_>, header: Header) -> Result<Metadata, DecodeError> {
    let type_name = input.string("type")?;
    let value_type = match ValueType::from_gmond_name(&type_name) {
        // `int`/`uint` are python aliases, never wire names; accepting them would make
        // re-encoding differ from the datagram.
        Some(value_type) if value_type.gmond_name() == type_name => value_type,
        _ => return Err(DecodeError::UnknownType(type_name)),
    };
    let body_name = input.string("metadata name")?;
    if body_name != header.name {
        return Err(DecodeError::NameMismatch {
            header: header.name,
            body: body_name,
        });
    }
    let units = input.string("units")?;
    let slope = slope_from_code(input.u32("slope")?)?;
    let tmax = input.u32("tmax")?;
    let dmax = input.u32("dmax")?;
    let count = input.u32("extra count")?;
    // Each extra takes at least two empty strings: 8 bytes. This bounds the allocation.
    let remaining = input.remaining();
    if usize::try_from(count).map_or(true, |count| count > remaining / 8) {
        return Err(DecodeError::TooManyExtras {
            count,
            remaining,
            offset: input.offset,
        });
    }
    let mut extras = Vec::with_capacity(count as usize);
    for _ in 0..count {
        extras.push((input.string("extra name")?, input.string("extra data")?));
    }
    Ok(Metadata {
        header,
        value_type,
        units,
        slope,
        tmax,
        dmax,
        extras,
    })
}

fn decode_value(input: &mut Input<'_>, id: u32) -> Result<MetricValue, DecodeError> {
    let value = match id {
        id::USHORT => {
            let word = input.u32("value")?;
            MetricValue::UInt16(
                u16::try_from(word).map_err(|_| DecodeError::OutOfRange { id, value: word })?,
            )
        }
        id::SHORT => {
            let word = input.u32("value")?;
            let short = i16::try_from(word as i32)
                .map_err(|_| DecodeError::OutOfRange { id, value: word })?;
            MetricValue::Int16(short)
        }
        id::INT => MetricValue::Int32(input.u32("value")? as i32),
        id::UINT => MetricValue::UInt32(input.u32("value")?),
        id::STRING => MetricValue::String(input.string("value")?),
        id::FLOAT => MetricValue::Float(f32::from_bits(input.u32("value")?)),
        _ => MetricValue::Double(f64::from_bits(input.u64("value")?)),
    };
    Ok(value)
}

/// A read position in a datagram.
struct Input<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Input<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    fn take(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], DecodeError> {
        let truncated = DecodeError::Truncated {
            field,
            offset: self.offset,
        };
        let end = self.offset.checked_add(len).ok_or(truncated.clone())?;
        let taken = self.bytes.get(self.offset..end).ok_or(truncated)?;
        self.offset = end;
        Ok(taken)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let mut word = [0; 4];
        word.copy_from_slice(self.take(field, 4)?);
        Ok(u32::from_be_bytes(word))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut word = [0; 8];
        word.copy_from_slice(self.take(field, 8)?);
        Ok(u64::from_be_bytes(word))
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let offset = self.offset;
        match self.u32(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadBool {
                field,
                offset,
                value,
            }),
        }
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u32(field)? as usize;
        let start = self.offset;
        let bytes = self.take(field, len)?;
        let padding = self.take(field, (4 - len % 4) % 4)?;
        if padding.iter().any(|&byte| byte != 0) {
            return Err(DecodeError::BadPadding {
                field,
                offset: start + len,
            });
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(DecodeError::NotUtf8 {
                field,
                offset: start,
            }),
        }
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(DecodeError::TrailingBytes(left)),
        }
    }
}

#[cfg(test)]
mod tests;
