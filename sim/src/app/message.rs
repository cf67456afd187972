//! Messages and headers as the `rdkafka` crate has them: the `Message` trait,
//! `BorrowedMessage` (what `recv` hands out) and `OwnedMessage`, `OwnedHeaders`
//! with `Header`, and `ToBytes` for keys and payloads.
//!
//! kafsim follows every record by a unique value (`history::Value`). A record
//! an application produces carries it in a header, `kafsim.value`; a record
//! made from an input carries the input in `kafsim.derived-from`
//! (`AppContext::derived_from`). Both are kafsim's own: the API overwrites
//! them on every send, so copying an input's headers to its output is safe.

use crate::history::Value;
use bytes::Bytes;
use std::marker::PhantomData;
use std::sync::Arc;

/// The header that names a record's value for the checkers.
pub const VALUE_HEADER: &str = "kafsim.value";
/// The header that names the input a record was made from.
pub const DERIVED_FROM_HEADER: &str = "kafsim.derived-from";

/// Something that can be a key or a payload (rdkafka's `ToBytes`).
pub trait ToBytes {
    fn to_bytes(&self) -> &[u8];
}

impl ToBytes for [u8] {
    fn to_bytes(&self) -> &[u8] {
        self
    }
}

impl ToBytes for str {
    fn to_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl ToBytes for String {
    fn to_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl ToBytes for Vec<u8> {
    fn to_bytes(&self) -> &[u8] {
        self
    }
}

impl<const N: usize> ToBytes for [u8; N] {
    fn to_bytes(&self) -> &[u8] {
        self
    }
}

impl ToBytes for () {
    fn to_bytes(&self) -> &[u8] {
        &[]
    }
}

impl<T: ToBytes + ?Sized> ToBytes for &T {
    fn to_bytes(&self) -> &[u8] {
        (*self).to_bytes()
    }
}

/// One header: a name and an optional value (rdkafka's `Header`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header<'a, V> {
    pub key: &'a str,
    pub value: Option<V>,
}

/// Read access to a message's headers (rdkafka's `Headers`).
pub trait Headers {
    fn count(&self) -> usize;
    /// The header at `index`; None past the end.
    fn try_get(&self, index: usize) -> Option<Header<'_, &[u8]>>;

    /// The header at `index`. Panics past the end, as rdkafka's does.
    fn get(&self, index: usize) -> Header<'_, &[u8]> {
        self.try_get(index).unwrap_or_else(|| panic!("header index {index} out of bounds ({} headers)", self.count()))
    }

    fn iter(&self) -> HeadersIter<'_, Self>
    where
        Self: Sized,
    {
        HeadersIter { headers: self, index: 0 }
    }
}

pub struct HeadersIter<'a, H> {
    headers: &'a H,
    index: usize,
}

impl<'a, H: Headers> Iterator for HeadersIter<'a, H> {
    type Item = Header<'a, &'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.headers.try_get(self.index)?;
        self.index += 1;
        Some(header)
    }
}

/// Headers a message owns (rdkafka's `OwnedHeaders`); also what `recv`'s
/// messages lend (rdkafka lends `BorrowedHeaders`, with the same `Headers` methods).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedHeaders {
    entries: Vec<(Arc<str>, Option<Bytes>)>,
}

impl OwnedHeaders {
    pub fn new() -> OwnedHeaders {
        OwnedHeaders::default()
    }

    pub fn new_with_capacity(capacity: usize) -> OwnedHeaders {
        OwnedHeaders { entries: Vec::with_capacity(capacity) }
    }

    /// Adds a header after the others.
    pub fn insert<V: ToBytes + ?Sized>(mut self, header: Header<'_, &V>) -> OwnedHeaders {
        let value = header.value.map(|value| Bytes::copy_from_slice(value.to_bytes()));
        self.entries.push((header.key.into(), value));
        self
    }

    /// The value of the first header named `name`.
    pub(crate) fn value_of(&self, name: &str) -> Option<&Bytes> {
        self.entries.iter().find(|(key, _)| &**key == name).and_then(|(_, value)| value.as_ref())
    }

    /// These headers less kafsim's own, then `extra`: what a send writes.
    pub(crate) fn to_record_headers(&self, extra: Vec<(Arc<str>, Bytes)>) -> kafsim_model::record::RecordHeaders {
        let own = |key: &str| key == VALUE_HEADER || key == DERIVED_FROM_HEADER;
        let kept = self.entries.iter().filter(|(key, _)| !own(key)).map(|(key, value)| (key.clone(), value.clone().unwrap_or_default()));
        Arc::new(kept.chain(extra).collect())
    }

    pub(crate) fn from_record(headers: Option<&kafsim_model::record::RecordHeaders>) -> Option<OwnedHeaders> {
        let headers = headers?;
        Some(OwnedHeaders { entries: headers.iter().map(|(key, value)| (key.clone(), Some(value.clone()))).collect() })
    }
}

impl Headers for OwnedHeaders {
    fn count(&self) -> usize {
        self.entries.len()
    }

    fn try_get(&self, index: usize) -> Option<Header<'_, &[u8]>> {
        let (key, value) = self.entries.get(index)?;
        Some(Header { key, value: value.as_deref() })
    }
}

/// What every message offers (rdkafka's `Message`).
pub trait Message {
    type Headers: Headers;
    fn key(&self) -> Option<&[u8]>;
    fn payload(&self) -> Option<&[u8]>;
    fn topic(&self) -> &str;
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn headers(&self) -> Option<&Self::Headers>;

    /// The payload as UTF-8 text: None without one, Some(Err) if it is not text.
    fn payload_view<P: ?Sized + FromBytes>(&self) -> Option<Result<&P, P::Error>> {
        self.payload().map(P::from_bytes)
    }

    /// What kafsim knows of the message: its value and the consumer that read it.
    #[doc(hidden)]
    fn lineage(&self) -> Option<&Lineage>;
}

/// Bytes seen as a type (rdkafka's `FromBytes`), for `payload_view`.
pub trait FromBytes {
    type Error;
    fn from_bytes(bytes: &[u8]) -> Result<&Self, Self::Error>;
}

impl FromBytes for str {
    type Error = std::str::Utf8Error;
    fn from_bytes(bytes: &[u8]) -> Result<&str, Self::Error> {
        std::str::from_utf8(bytes)
    }
}

impl FromBytes for [u8] {
    type Error = ();
    fn from_bytes(bytes: &[u8]) -> Result<&[u8], ()> {
        Ok(bytes)
    }
}

/// Where a consumed message came from, for the history: its value, and the
/// group that read it (None for a consumer outside any group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lineage {
    pub(crate) value: Value,
    pub(crate) group: Option<Arc<str>>,
}

/// A message that owns its data (rdkafka's `OwnedMessage`): what `detach` gives,
/// and what a failed send hands back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedMessage {
    pub(crate) key: Option<Bytes>,
    pub(crate) payload: Option<Bytes>,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) headers: Option<OwnedHeaders>,
    pub(crate) lineage: Option<Lineage>,
}

impl Message for OwnedMessage {
    type Headers = OwnedHeaders;

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn partition(&self) -> i32 {
        self.partition
    }

    fn offset(&self) -> i64 {
        self.offset
    }

    fn headers(&self) -> Option<&OwnedHeaders> {
        self.headers.as_ref()
    }

    fn lineage(&self) -> Option<&Lineage> {
        self.lineage.as_ref()
    }
}

/// A message `recv` handed out (rdkafka's `BorrowedMessage`). rdkafka's borrows
/// librdkafka's memory for `'a`; kafsim's owns its data and keeps the lifetime
/// only so that code written for rdkafka compiles unchanged.
#[derive(Clone, Debug)]
pub struct BorrowedMessage<'a> {
    pub(crate) message: OwnedMessage,
    pub(crate) _consumer: PhantomData<&'a ()>,
}

impl BorrowedMessage<'_> {
    /// The message, no longer tied to its consumer.
    pub fn detach(&self) -> OwnedMessage {
        self.message.clone()
    }
}

impl Message for BorrowedMessage<'_> {
    type Headers = OwnedHeaders;

    fn key(&self) -> Option<&[u8]> {
        self.message.key()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.message.payload()
    }

    fn topic(&self) -> &str {
        self.message.topic()
    }

    fn partition(&self) -> i32 {
        self.message.partition()
    }

    fn offset(&self) -> i64 {
        self.message.offset()
    }

    fn headers(&self) -> Option<&OwnedHeaders> {
        self.message.headers()
    }

    fn lineage(&self) -> Option<&Lineage> {
        self.message.lineage()
    }
}

/// A record's kafsim value: its `kafsim.value` header, else its payload (the
/// built-in producers write `producer:sequence` as the payload).
pub fn record_value(record: &kafsim_model::record::Record) -> Option<Value> {
    match record.header(VALUE_HEADER) {
        Some(value) => Value::decode(value),
        None => Value::decode(&record.value),
    }
}
