//! The 16-byte trailer.

use super::error::{LtxError, be_u64};

/// Size of the trailer in bytes.
pub const TRAILER_SIZE: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Database checksum after the file is applied (0 without checksums).
    pub post_apply_checksum: u64,
    /// Checksum of the whole file, bit 63 set.
    pub file_checksum: u64,
}

impl Trailer {
    /// Decodes the trailer from the last [`TRAILER_SIZE`] bytes of `file_tail`.
    pub fn decode(file_tail: &[u8]) -> Result<Trailer, LtxError> {
        let at = file_tail
            .len()
            .checked_sub(TRAILER_SIZE)
            .ok_or_else(|| LtxError::truncated("trailer", TRAILER_SIZE, file_tail.len()))?;
        let trailer = Trailer {
            post_apply_checksum: be_u64(file_tail, at, "trailer")?,
            file_checksum: be_u64(file_tail, at.saturating_add(8), "trailer")?,
        };
        if trailer.file_checksum & (1 << 63) == 0 {
            return Err(LtxError::invalid(
                "trailer",
                "file checksum lacks its flag bit",
            ));
        }
        Ok(trailer)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn trailer(post: u64, file: u64) -> Vec<u8> {
        let mut b = post.to_be_bytes().to_vec();
        b.extend_from_slice(&file.to_be_bytes());
        b
    }

    #[test]
    fn reads_the_last_sixteen_bytes() {
        let mut tail = vec![0xaa; 5];
        tail.extend(trailer(7, 1 << 63 | 9));
        assert_eq!(
            Trailer::decode(&tail),
            Ok(Trailer {
                post_apply_checksum: 7,
                file_checksum: 1 << 63 | 9,
            })
        );
    }

    #[test]
    fn rejects_short_input_and_missing_flag_bit() {
        let t = trailer(0, 1 << 63 | 1);
        for n in 0..TRAILER_SIZE {
            assert!(matches!(
                Trailer::decode(&t[..n]),
                Err(LtxError::Truncated { .. })
            ));
        }
        assert!(Trailer::decode(&trailer(0, 1)).is_err());
        assert!(Trailer::decode(&trailer(0, 0)).is_err());
    }
}
