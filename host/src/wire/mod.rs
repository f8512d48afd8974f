//! The wire formats Ganglia peers speak, without any I/O.
//!
//! `xdr` encodes and decodes gmetric's UDP messages; `xml` writes gmond's XML document
//! (served over TCP) into any `Write`; `format` is the printf subset that renders each
//! metric's `VAL`; `safe` is what may go out (and come in) so that gmond's C code
//! handles it safely: formats, text, names and their lengths. Sockets live in `net`; the
//! cluster state these formats carry lives in `store`.

pub mod format;
pub mod safe;
pub mod xdr;
pub mod xml;
