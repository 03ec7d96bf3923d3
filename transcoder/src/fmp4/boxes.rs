//! ISO-BMFF box headers and iteration over a box's children.

use super::Fmp4Error;
use super::cursor::Cursor;

/// A four-character box type, e.g. `*b"moof"`.
pub type FourCc = [u8; 4];

/// Renders a four-character code for messages, escaping bytes that are not printable ASCII.
pub fn fourcc_str(fourcc: FourCc) -> String {
    fourcc
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// The header of one box: its type, the length of the header and the length of the whole box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    /// The box type.
    pub box_type: FourCc,
    /// Bytes taken by the header itself (8, or 16 with a 64-bit size).
    pub header_len: usize,
    /// Bytes taken by the whole box, header included.
    pub total_len: u64,
}

impl BoxHeader {
    /// Parses a header from the start of `data`.
    ///
    /// Returns `Ok(None)` when `data` is too short to hold the whole header yet. A size of zero
    /// ("to the end of the file") has no meaning in a live stream and is refused, as is a size
    /// smaller than the header itself.
    pub fn parse(data: &[u8]) -> Result<Option<BoxHeader>, Fmp4Error> {
        if data.len() < 8 {
            return Ok(None);
        }
        let size32 = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let box_type = [data[4], data[5], data[6], data[7]];
        let (header_len, total_len) = match size32 {
            0 => {
                return Err(Fmp4Error::invalid(
                    box_type,
                    "size 0 (box runs to end of file) is not allowed in a live stream",
                ));
            }
            1 => {
                if data.len() < 16 {
                    return Ok(None);
                }
                let mut large = [0u8; 8];
                large.copy_from_slice(&data[8..16]);
                (16usize, u64::from_be_bytes(large))
            }
            n => (8usize, u64::from(n)),
        };
        if total_len < header_len as u64 {
            return Err(Fmp4Error::invalid(
                box_type,
                format!("declared size {total_len} is smaller than its {header_len}-byte header"),
            ));
        }
        Ok(Some(BoxHeader {
            box_type,
            header_len,
            total_len,
        }))
    }
}

/// One child box found inside a parent's payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildBox<'a> {
    pub(crate) box_type: FourCc,
    /// The child's payload, header excluded.
    pub(crate) payload: &'a [u8],
}

/// Iterates over the boxes packed in `payload`; a child that overruns the payload is an error.
pub(crate) struct Children<'a> {
    payload: &'a [u8],
    pos: usize,
    parent: FourCc,
}

impl<'a> Children<'a> {
    pub(crate) fn new(payload: &'a [u8], parent: FourCc) -> Self {
        Self {
            payload,
            pos: 0,
            parent,
        }
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<ChildBox<'a>, Fmp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.payload.len() {
            return None;
        }
        let rest = &self.payload[self.pos..];
        let header = match BoxHeader::parse(rest) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.pos = self.payload.len();
                return Some(Err(Fmp4Error::invalid(
                    self.parent,
                    format!("{} trailing bytes do not form a box header", rest.len()),
                )));
            }
            Err(e) => {
                self.pos = self.payload.len();
                return Some(Err(e));
            }
        };
        if header.total_len > rest.len() as u64 {
            self.pos = self.payload.len();
            return Some(Err(Fmp4Error::invalid(
                self.parent,
                format!(
                    "child '{}' declares {} bytes but only {} remain",
                    fourcc_str(header.box_type),
                    header.total_len,
                    rest.len()
                ),
            )));
        }
        let total = header.total_len as usize;
        let child = ChildBox {
            box_type: header.box_type,
            payload: &rest[header.header_len..total],
        };
        self.pos += total;
        Some(Ok(child))
    }
}

/// Finds the first child of the given type, or `None`.
pub(crate) fn find_child<'a>(
    payload: &'a [u8],
    parent: FourCc,
    wanted: FourCc,
) -> Result<Option<ChildBox<'a>>, Fmp4Error> {
    for child in Children::new(payload, parent) {
        let child = child?;
        if child.box_type == wanted {
            return Ok(Some(child));
        }
    }
    Ok(None)
}

/// Finds a required child, failing with a message that names the parent.
pub(crate) fn require_child<'a>(
    payload: &'a [u8],
    parent: FourCc,
    wanted: FourCc,
) -> Result<ChildBox<'a>, Fmp4Error> {
    find_child(payload, parent, wanted)?
        .ok_or_else(|| Fmp4Error::invalid(parent, format!("has no '{}' box", fourcc_str(wanted))))
}

/// Follows a path of nested boxes, e.g. `[mdia, minf, stbl]`, and returns the last one's payload.
pub(crate) fn descend<'a>(
    payload: &'a [u8],
    parent: FourCc,
    path: &[FourCc],
) -> Result<&'a [u8], Fmp4Error> {
    let mut current = payload;
    let mut current_type = parent;
    for &step in path {
        current = require_child(current, current_type, step)?.payload;
        current_type = step;
    }
    Ok(current)
}

/// A cursor over a box payload, tagged with the box type for its error messages.
pub(crate) fn cursor(payload: &[u8], box_type: FourCc) -> Cursor<'_> {
    Cursor::new(payload, box_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_32_and_64_bit_sizes() {
        let h = BoxHeader::parse(&[0, 0, 0, 16, b'm', b'o', b'o', b'f'])
            .expect("valid")
            .expect("complete");
        assert_eq!((h.box_type, h.header_len, h.total_len), (*b"moof", 8, 16));
        let mut large = vec![0, 0, 0, 1, b'm', b'd', b'a', b't'];
        large.extend_from_slice(&20u64.to_be_bytes());
        let h = BoxHeader::parse(&large).expect("valid").expect("complete");
        assert_eq!((h.header_len, h.total_len), (16, 20));
        assert_eq!(BoxHeader::parse(&large[..12]).expect("valid so far"), None);
    }

    #[test]
    fn refuses_size_zero_and_sizes_below_the_header() {
        assert!(BoxHeader::parse(&[0, 0, 0, 0, b'm', b'd', b'a', b't']).is_err());
        assert!(BoxHeader::parse(&[0, 0, 0, 7, b'f', b'r', b'e', b'e']).is_err());
    }

    #[test]
    fn children_reports_a_child_that_overruns_its_parent() {
        let payload = [0, 0, 0, 12, b'f', b'r', b'e', b'e', 0, 0];
        let mut it = Children::new(&payload, *b"moov");
        let err = it.next().expect("one item").expect_err("overrun");
        assert!(err.to_string().contains("free"), "{err}");
        assert!(it.next().is_none());
    }

    #[test]
    fn fourcc_str_escapes_unprintable_bytes() {
        assert_eq!(fourcc_str(*b"moof"), "moof");
        assert_eq!(fourcc_str([0, b'a', 0xff, b'b']), "\\x00a\\xffb");
    }
}
