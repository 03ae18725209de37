//! A streaming RDB verifier: fed the file in pieces as they arrive, it checks the header
//! (`REDIS` + 4 digits, or `VALKEY` + 3), the end-of-file opcode `0xFF` and the trailing
//! 8-byte little-endian CRC64 over everything before it, without ever holding more than a few
//! bytes. A transfer is only trusted once [`RdbVerifier::finish`] says so: the upload is
//! completed on that answer, and aborted on any other.

use crc::{CRC_64_REDIS, Crc, Digest, Table};

/// Redis's CRC64 (Jones polynomial, reflected, init 0) with a 16-entry slice table: about
/// 3 GB/s, so checking never slows the transfer.
static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// `REDIS0010` / `VALKEY080`: both magic strings plus their digits are 9 bytes.
const HEADER_LEN: usize = 9;
/// The checksum trailer: 8 bytes after the `0xFF` end-of-file opcode.
const TRAILER_LEN: usize = 8;
const EOF_OPCODE: u8 = 0xFF;

/// What a verified RDB says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdbSummary {
    /// The format version from the header (`10` for Redis 7.0).
    pub version: u16,
    /// The CRC64 from the trailer; `None` when the server wrote zeros (`rdbchecksum no`),
    /// in which case only the structure was checked.
    pub crc64: Option<u64>,
    /// Size of the RDB in bytes.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    #[error("the RDB is {bytes} bytes, shorter than a header and a checksum")]
    TooShort { bytes: u64 },
    #[error(
        "the RDB does not start with `REDIS` or `VALKEY` and a version (starts with {found:?})"
    )]
    BadHeader { found: String },
    #[error("the RDB does not end with the end-of-file opcode 0xFF (found {found:#04x})")]
    NoEndOfFile { found: u8 },
    #[error("CRC64 mismatch: the RDB says {expected:#018x}, its bytes give {actual:#018x}")]
    CrcMismatch { expected: u64, actual: u64 },
}

/// Feed with [`RdbVerifier::update`], then [`RdbVerifier::finish`].
pub struct RdbVerifier {
    digest: Digest<'static, u64, Table<16>>,
    header: Vec<u8>,
    /// The last up-to-8 bytes seen: the trailer, once the stream ends. Everything before them
    /// is already in the digest.
    tail: Vec<u8>,
    /// The last byte fed to the digest: the end-of-file opcode, once the stream ends.
    last_digested: Option<u8>,
    bytes: u64,
}

impl Default for RdbVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl RdbVerifier {
    pub fn new() -> Self {
        Self {
            digest: CRC64.digest(),
            header: Vec::with_capacity(HEADER_LEN),
            tail: Vec::with_capacity(2 * TRAILER_LEN),
            last_digested: None,
            bytes: 0,
        }
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if self.header.len() < HEADER_LEN {
            let take = (HEADER_LEN - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
        }
        // Delay the last 8 bytes: they may be the trailer, which the CRC does not cover.
        if data.len() >= TRAILER_LEN {
            let tail = std::mem::take(&mut self.tail);
            self.digest_bytes(&tail);
            let (body, new_tail) = data.split_at(data.len() - TRAILER_LEN);
            self.digest_bytes(body);
            self.tail = tail;
            self.tail.clear();
            self.tail.extend_from_slice(new_tail);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > TRAILER_LEN {
                let excess = self.tail.len() - TRAILER_LEN;
                let head: Vec<u8> = self.tail.drain(..excess).collect();
                self.digest_bytes(&head);
            }
        }
    }

    fn digest_bytes(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.digest.update(bytes);
            self.last_digested = Some(last);
        }
    }

    /// Checks header, end-of-file opcode and checksum of everything fed so far.
    pub fn finish(self) -> Result<RdbSummary, RdbError> {
        if self.bytes < (HEADER_LEN + 1 + TRAILER_LEN) as u64 {
            return Err(RdbError::TooShort { bytes: self.bytes });
        }
        let version = parse_header(&self.header)?;
        let last = self.last_digested.unwrap_or_default();
        if last != EOF_OPCODE {
            return Err(RdbError::NoEndOfFile { found: last });
        }
        let mut trailer = [0_u8; TRAILER_LEN];
        trailer.copy_from_slice(&self.tail);
        let expected = u64::from_le_bytes(trailer);
        let actual = self.digest.finalize();
        let crc64 = match expected {
            // `rdbchecksum no`: the server wrote no checksum, so there is nothing to compare.
            0 => None,
            _ if expected == actual => Some(expected),
            _ => return Err(RdbError::CrcMismatch { expected, actual }),
        };
        Ok(RdbSummary { version, crc64, bytes: self.bytes })
    }
}

fn parse_header(header: &[u8]) -> Result<u16, RdbError> {
    let digits = header
        .strip_prefix(b"REDIS")
        .or_else(|| header.strip_prefix(b"VALKEY"))
        .filter(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit));
    digits
        .and_then(|d| std::str::from_utf8(d).ok()?.parse().ok())
        .ok_or_else(|| RdbError::BadHeader { found: String::from_utf8_lossy(header).into_owned() })
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A minimal valid RDB: header, an auxiliary field, end opcode and its checksum.
    pub(crate) fn sample_rdb() -> Vec<u8> {
        let mut rdb = b"REDIS0010".to_vec();
        rdb.extend_from_slice(b"\xfa\x09redis-ver\x067.0.15");
        rdb.extend_from_slice(&[0xFE, 0x00, 0xFB, 0x01, 0x00, 0x00, 0x01, b'k', 0x01, b'v']);
        rdb.push(EOF_OPCODE);
        let crc = CRC64.checksum(&rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        rdb
    }

    fn verify_in_pieces(rdb: &[u8], piece: usize) -> Result<RdbSummary, RdbError> {
        let mut verifier = RdbVerifier::new();
        for chunk in rdb.chunks(piece.max(1)) {
            verifier.update(chunk);
        }
        verifier.finish()
    }

    #[test]
    fn a_valid_rdb_verifies_whatever_the_piece_sizes() {
        let rdb = sample_rdb();
        let expected = u64::from_le_bytes(rdb[rdb.len() - 8..].try_into().unwrap());
        for piece in [1, 3, 7, 8, 9, 13, rdb.len()] {
            let summary = verify_in_pieces(&rdb, piece).unwrap();
            assert_eq!(summary.version, 10);
            assert_eq!(summary.crc64, Some(expected));
            assert_eq!(summary.bytes, rdb.len() as u64);
        }
    }

    #[test]
    fn the_crc_over_a_valid_file_and_its_trailer_is_zero() {
        // The property redis-facts.md relies on: CRC_64_REDIS has no final XOR.
        assert_eq!(CRC64.checksum(&sample_rdb()), 0);
    }

    #[test]
    fn a_zero_trailer_means_checksums_were_disabled() {
        let mut rdb = sample_rdb();
        let len = rdb.len();
        rdb[len - 8..].fill(0);
        assert_eq!(verify_in_pieces(&rdb, 5).unwrap().crc64, None);
    }

    #[test]
    fn damage_is_named() {
        let rdb = sample_rdb();
        let mut flipped = rdb.clone();
        flipped[12] ^= 0x01;
        assert!(matches!(verify_in_pieces(&flipped, 4), Err(RdbError::CrcMismatch { .. })));
        let mut header = rdb.clone();
        header[0] = b'X';
        assert!(matches!(verify_in_pieces(&header, 4), Err(RdbError::BadHeader { .. })));
        let truncated = &rdb[..rdb.len() - 3];
        assert!(matches!(verify_in_pieces(truncated, 4), Err(RdbError::NoEndOfFile { .. })));
        assert_eq!(verify_in_pieces(b"REDIS", 2), Err(RdbError::TooShort { bytes: 5 }));
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_is_caught(position in 0_usize..40, bit in 0_u8..8, piece in 1_usize..20) {
            let mut rdb = sample_rdb();
            let position = position % rdb.len();
            rdb[position] ^= 1 << bit;
            prop_assert!(verify_in_pieces(&rdb, piece).is_err());
        }
    }
}
