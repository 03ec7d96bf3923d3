//! AMF0, the encoding of RTMP commands and metadata: decoding from untrusted bytes and encoding
//! what the server answers.
//!
//! Decoding never panics and never allocates more than the input justifies: every length and
//! count is checked against the bytes that remain before anything is allocated, and nesting is
//! limited to [`MAX_DEPTH`]. References, typed objects, XML documents and the AVM+ switch are
//! refused with [`Amf0Error::UnsupportedType`]; RTMP publishers do not send them.

use bytes::{BufMut, BytesMut};

/// Deepest nesting of objects and arrays accepted; real commands nest two or three levels.
pub const MAX_DEPTH: usize = 32;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;
const DATE: u8 = 0x0b;
const LONG_STRING: u8 = 0x0c;

/// One AMF0 value.
///
/// ```
/// use corral_origin::ingest::rtmp::amf0::{self, Amf0Value};
///
/// let mut out = bytes::BytesMut::new();
/// amf0::encode(&Amf0Value::from("connect"), &mut out);
/// assert_eq!(amf0::decode_all(&out).unwrap(), vec![Amf0Value::from("connect")]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// An IEEE 754 double.
    Number(f64),
    /// A boolean.
    Boolean(bool),
    /// A string of at most 65535 bytes (longer ones are encoded as long strings).
    String(String),
    /// An anonymous object: properties in their order on the wire.
    Object(Vec<(String, Amf0Value)>),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// An associative array, as `onMetaData` carries.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// A dense array.
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the Unix epoch, and a time zone that the specification says to ignore.
    Date {
        /// Milliseconds since 1970-01-01 UTC.
        millis: f64,
        /// Reserved; written as sent.
        timezone: i16,
    },
    /// A string longer than 65535 bytes.
    LongString(String),
}

impl Amf0Value {
    /// The text of a string or long string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a number.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The first property called `key` of an object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => {
                props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// An object built from `(key, value)` pairs, for the answers the server sends.
    pub fn object<'a>(props: impl IntoIterator<Item = (&'a str, Amf0Value)>) -> Self {
        Amf0Value::Object(props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Amf0Value::String(s.to_owned())
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Amf0Value::Number(n)
    }
}

/// Why AMF0 bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Amf0Error {
    /// The input ended inside a value.
    #[error("AMF0 value truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Where the missing bytes start.
        offset: usize,
        /// How many were missing.
        needed: usize,
    },
    /// A type marker this decoder does not handle (reference, typed object, XML, AVM+...).
    #[error("AMF0 type marker {marker:#04x} at offset {offset} is not supported")]
    UnsupportedType {
        /// The marker.
        marker: u8,
        /// Where it was.
        offset: usize,
    },
    /// Objects or arrays nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 values nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A strict array announced more elements than the remaining bytes could hold.
    #[error("AMF0 strict array of {count} elements cannot fit in the {remaining} bytes left")]
    CountTooLarge {
        /// The announced count.
        count: u32,
        /// Bytes left in the input.
        remaining: usize,
    },
}

/// Reads AMF0 values one after another from a byte slice.
#[derive(Debug, Clone)]
pub struct Amf0Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Amf0Reader<'a> {
    /// A reader at the start of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { input, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.input.get(self.pos..).unwrap_or_default()
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    /// Reads the next value.
    pub fn read(&mut self) -> Result<Amf0Value, Amf0Error> {
        self.value(0)
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        let offset = self.pos;
        let marker = self.u8()?;
        Ok(match marker {
            NUMBER => Amf0Value::Number(self.f64()?),
            BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            STRING => {
                let len = usize::from(self.u16()?);
                Amf0Value::String(self.text(len)?)
            }
            OBJECT => Amf0Value::Object(self.properties(depth)?),
            NULL => Amf0Value::Null,
            UNDEFINED => Amf0Value::Undefined,
            ECMA_ARRAY => {
                // The count is only a hint (encoders get it wrong); the end marker is what counts.
                self.take(4)?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            STRICT_ARRAY => {
                let count = self.u32()?;
                let remaining = self.rest().len();
                // Every element takes at least its marker byte.
                if count as usize > remaining {
                    return Err(Amf0Error::CountTooLarge { count, remaining });
                }
                let child = self.deeper(depth)?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(child)?);
                }
                Amf0Value::StrictArray(items)
            }
            DATE => {
                let millis = self.f64()?;
                let timezone = i16::from_be_bytes(self.array::<2>()?);
                Amf0Value::Date { millis, timezone }
            }
            LONG_STRING => {
                let len = self.u32()? as usize;
                Amf0Value::LongString(self.text(len)?)
            }
            marker => return Err(Amf0Error::UnsupportedType { marker, offset }),
        })
    }

    /// Reads `key, value` pairs up to the object end marker (an empty key then 0x09).
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let child = self.deeper(depth)?;
        let mut props = Vec::new();
        loop {
            let len = usize::from(self.u16()?);
            if len == 0 && self.rest().first() == Some(&OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let key = self.text(len)?;
            let value = self.value(child)?;
            props.push((key, value));
        }
    }

    fn deeper(&self, depth: usize) -> Result<usize, Amf0Error> {
        if depth >= MAX_DEPTH {
            return Err(Amf0Error::TooDeep);
        }
        Ok(depth + 1)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        let rest = self.rest();
        if rest.len() < n {
            return Err(Amf0Error::Truncated {
                offset: self.pos,
                needed: n - rest.len(),
            });
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    /// Strings are UTF-8 by the specification; encoders that send Latin-1 get replacement
    /// characters rather than a dropped connection.
    fn text(&mut self, len: usize) -> Result<String, Amf0Error> {
        let bytes = self.take(len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// Decodes every value in `input`.
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut reader = Amf0Reader::new(input);
    let mut values = Vec::new();
    while !reader.is_empty() {
        values.push(reader.read()?);
    }
    Ok(values)
}

/// Appends the encoding of `value` to `out`.
///
/// Strings longer than 65535 bytes are written as long strings; property names longer than
/// 65535 bytes (which no answer of ours has) are cut to fit.
pub fn encode(value: &Amf0Value, out: &mut BytesMut) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.put_u8(STRING);
                out.put_u16(len);
                out.put_slice(s.as_bytes());
            }
            Err(_) => encode_long_string(s, out),
        },
        Amf0Value::Object(props) => {
            out.put_u8(OBJECT);
            encode_properties(props, out);
        }
        Amf0Value::Null => out.put_u8(NULL),
        Amf0Value::Undefined => out.put_u8(UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.put_u8(ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            encode_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.put_u8(STRICT_ARRAY);
            // No message of ours comes near 2^32 elements; the count saturates rather than wraps.
            out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
            for item in items {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.put_u8(DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
        Amf0Value::LongString(s) => encode_long_string(s, out),
    }
}

fn encode_long_string(s: &str, out: &mut BytesMut) {
    let bytes = &s.as_bytes()[..s.len().min(u32::MAX as usize)];
    out.put_u8(LONG_STRING);
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

fn encode_properties(props: &[(String, Amf0Value)], out: &mut BytesMut) {
    for (key, value) in props {
        let key = &key.as_bytes()[..key.len().min(usize::from(u16::MAX))];
        out.put_u16(key.len() as u16);
        out.put_slice(key);
        encode(value, out);
    }
    out.put_u16(0);
    out.put_u8(OBJECT_END);
}

/// Encodes `values` one after another, as a command or data message carries them.
pub fn encode_all(values: &[Amf0Value]) -> BytesMut {
    let mut out = BytesMut::new();
    for value in values {
        encode(value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bytes_of(value: &Amf0Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(value, &mut out);
        out.to_vec()
    }

    #[test]
    fn every_supported_type_round_trips() {
        let value = Amf0Value::StrictArray(vec![
            Amf0Value::Number(29.97),
            Amf0Value::Boolean(true),
            Amf0Value::from("live"),
            Amf0Value::object([("app", Amf0Value::from("live")), ("n", Amf0Value::Null)]),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(1280.0))]),
            Amf0Value::Date {
                millis: 1.7e12,
                timezone: -60,
            },
            Amf0Value::LongString("x".repeat(70_000)),
        ]);
        let bytes = bytes_of(&value);
        assert_eq!(decode_all(&bytes), Ok(vec![value]));
    }

    #[test]
    fn known_encodings_match_the_specification() {
        assert_eq!(
            bytes_of(&Amf0Value::from("ab")),
            [0x02, 0x00, 0x02, b'a', b'b']
        );
        assert_eq!(
            bytes_of(&Amf0Value::Number(1.0)),
            [0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes_of(&Amf0Value::object([("a", Amf0Value::Null)])),
            [0x03, 0x00, 0x01, b'a', 0x05, 0x00, 0x00, 0x09]
        );
        let long = bytes_of(&Amf0Value::String("y".repeat(65_536)));
        assert_eq!(long[0], LONG_STRING, "too long for a short string");
    }

    #[test]
    fn ecma_array_counts_are_not_trusted() {
        // Count says 1000; one property follows, then the end marker.
        let bytes = [
            0x08, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x01, b'k', 0x01, 0x01, 0x00, 0x00, 0x09,
        ];
        assert_eq!(
            decode_all(&bytes),
            Ok(vec![Amf0Value::EcmaArray(vec![(
                "k".into(),
                Amf0Value::Boolean(true)
            )])])
        );
    }

    #[test]
    fn a_strict_array_count_beyond_the_input_is_refused_before_allocating() {
        let bytes = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x05];
        assert_eq!(
            decode_all(&bytes),
            Err(Amf0Error::CountTooLarge {
                count: u32::MAX,
                remaining: 1
            })
        );
    }

    #[test]
    fn nesting_is_limited() {
        let mut bytes = Vec::new();
        for _ in 0..=MAX_DEPTH {
            bytes.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        bytes.push(0x05);
        assert_eq!(decode_all(&bytes), Err(Amf0Error::TooDeep));

        let mut ok = Vec::new();
        for _ in 0..MAX_DEPTH {
            ok.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        ok.push(0x05);
        assert!(decode_all(&ok).is_ok(), "exactly MAX_DEPTH levels are fine");
    }

    #[test]
    fn truncated_and_unsupported_input_is_an_error() {
        assert_eq!(
            decode_all(&[0x02, 0x00, 0x05, b'a']),
            Err(Amf0Error::Truncated {
                offset: 3,
                needed: 4
            })
        );
        assert_eq!(
            decode_all(&[0x03, 0x00, 0x01, b'a', 0x05]),
            Err(Amf0Error::Truncated {
                offset: 5,
                needed: 2
            }),
            "an object without its end marker"
        );
        assert_eq!(
            decode_all(&[0x07, 0x00, 0x01]),
            Err(Amf0Error::UnsupportedType {
                marker: 0x07,
                offset: 0
            })
        );
        assert_eq!(
            decode_all(&[0x09]),
            Err(Amf0Error::UnsupportedType {
                marker: 0x09,
                offset: 0
            }),
            "an object end outside an object"
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_rather_than_refused() {
        assert_eq!(
            decode_all(&[0x02, 0x00, 0x02, b'a', 0xe9]),
            Ok(vec![Amf0Value::from("a\u{fffd}")])
        );
    }

    #[test]
    fn lookups_read_objects_and_arrays() {
        let v = Amf0Value::object([("app", Amf0Value::from("live"))]);
        assert_eq!(v.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert_eq!(v.get("tcUrl"), None);
        assert_eq!(Amf0Value::Number(1.5).as_number(), Some(1.5));
        assert_eq!(Amf0Value::Null.as_str(), None);
    }

    fn value() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            (-1e15f64..1e15).prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            ".{0,20}".prop_map(Amf0Value::String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            ((-1e13f64..1e13), any::<i16>())
                .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
            ".{0,20}".prop_map(Amf0Value::LongString),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            let props = prop::collection::vec(("[a-zA-Z]{1,8}", inner.clone()), 0..6);
            prop_oneof![
                props.clone().prop_map(Amf0Value::Object),
                props.prop_map(Amf0Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Amf0Value::StrictArray),
            ]
        })
    }

    proptest! {
        #[test]
        fn encoding_then_decoding_gives_back_the_values(values in prop::collection::vec(value(), 0..4)) {
            let bytes = encode_all(&values);
            prop_assert_eq!(decode_all(&bytes), Ok(values));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&bytes);
        }
    }
}
