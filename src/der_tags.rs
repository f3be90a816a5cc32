//! The ASN.1 tag octets that the hand-written DER walkers match on. They live in one place
//! and are shared by bundle assembly, upload classification and external bundle parsing.
//! Full ASN.1 decoding goes through the `der`, `cms` and `x509-parser` crates. These walkers
//! exist only where the input must be judged before those crates can read it (a CMS wrapper
//! around anything, BER from other encoders), or where the output bytes must be exact.

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const UTC_TIME: u8 = 0x17;
pub const GENERALIZED_TIME: u8 = 0x18;
/// An OCTET STRING in constructed form (BER segments).
pub const CONSTRUCTED_OCTET_STRING: u8 = 0x24;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
/// `[0]` constructed, context-specific.
pub const CONTEXT_0: u8 = 0xa0;
/// `[1]` constructed, context-specific.
pub const CONTEXT_1: u8 = 0xa1;
