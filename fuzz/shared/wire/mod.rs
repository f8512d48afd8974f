//! The host's wire codecs, compiled from their source files for the fuzz targets: the XDR
//! codec and the wire-safety rules (and printf subset) that the metric types call.

#[path = "../../../host/src/wire/format.rs"]
pub mod format;
#[path = "../../../host/src/wire/safe.rs"]
pub mod safe;
#[path = "../../../host/src/wire/xdr.rs"]
pub mod xdr;
