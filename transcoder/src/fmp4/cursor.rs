//! A bounds-checked big-endian reader over a byte slice.
//!
//! Every read returns an error instead of panicking, so the box parsers above it can be fed
//! arbitrary bytes.

use super::Fmp4Error;

/// Reads big-endian integers and sub-slices from a byte slice, never past its end.
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// The box being read, for error messages.
    context: [u8; 4],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8], context: [u8; 4]) -> Self {
        Self {
            data,
            pos: 0,
            context,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Fmp4Error> {
        if self.remaining() < n {
            return Err(Fmp4Error::invalid(
                self.context,
                format!(
                    "needs {n} more bytes at offset {} but only {} remain",
                    self.pos,
                    self.remaining()
                ),
            ));
        }
        let slice = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Fmp4Error> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Fmp4Error> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Fmp4Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Result<u32, Fmp4Error> {
        let b = self.take(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Fmp4Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, Fmp4Error> {
        Ok(self.u32()? as i32)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Fmp4Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads a full box's version and 24-bit flags.
    pub(crate) fn version_and_flags(&mut self) -> Result<(u8, u32), Fmp4Error> {
        let version = self.u8()?;
        let flags = self.u24()?;
        Ok((version, flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_values_and_refuses_to_overrun() {
        let data = [0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0xff];
        let mut c = Cursor::new(&data, *b"test");
        assert_eq!(c.u16().expect("2 bytes"), 1);
        assert_eq!(c.u32().expect("4 bytes"), 2);
        assert_eq!(c.remaining(), 1);
        let err = c.u16().expect_err("only one byte left");
        assert!(err.to_string().contains("test"), "{err}");
        assert_eq!(c.u8().expect("one byte"), 0xff);
    }
}
