//! NATS credentials files (`.creds`): a user JWT and the user's NKEY seed.
//! Signing in sends the JWT and the server's nonce signed with the seed's
//! Ed25519 key.

use base64::Engine;
use ring::signature::Ed25519KeyPair;

pub struct Creds {
    pub jwt: String,
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Creds(hidden)")
    }
}

impl Creds {
    /// Parses the text of a credentials file. Errors never quote it.
    pub fn parse(text: &str) -> Result<Creds, String> {
        let jwt = block_after(text, "BEGIN NATS USER JWT")
            .ok_or("no user JWT block (-----BEGIN NATS USER JWT-----)")?;
        let seed = block_after(text, "BEGIN USER NKEY SEED")
            .ok_or("no NKEY seed block (-----BEGIN USER NKEY SEED-----)")?;
        let raw = base32_decode(seed).ok_or("the NKEY seed is not base32")?;
        // prefix byte pair, 32 bytes of seed, CRC-16
        if raw.len() != 36 || raw[0] >> 3 != 18 {
            return Err("the NKEY seed is not a seed (it must start with S)".into());
        }
        if crc16(&raw[..34]) != u16::from_le_bytes([raw[34], raw[35]]) {
            return Err("the NKEY seed's checksum does not match".into());
        }
        let key = Ed25519KeyPair::from_seed_unchecked(&raw[2..34])
            .map_err(|_| "the NKEY seed is not an Ed25519 key")?;
        Ok(Creds {
            jwt: jwt.to_owned(),
            key,
        })
    }

    /// The server nonce signed, as CONNECT's `sig` wants it.
    pub fn sign(&self, nonce: &str) -> String {
        let sig = self.key.sign(nonce.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref())
    }
}

/// The first non-empty line after the line containing `marker`.
fn block_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let mut lines = text.lines();
    lines.find(|l| l.contains(marker))?;
    lines
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("---"))
}

/// RFC 4648 base32 without padding, as NKEYs use.
fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// CRC-16/XMODEM, the checksum of NKEYs.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ED25519, KeyPair, UnparsedPublicKey};

    fn base32_encode(data: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let (mut acc, mut bits, mut out) = (0u32, 0u32, String::new());
        for &b in data {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(A[((acc >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            out.push(A[((acc << (5 - bits)) & 31) as usize] as char);
        }
        out
    }

    fn seed_text(seed: [u8; 32]) -> String {
        // user seed: 'S' then 'U'
        let mut raw = vec![(18 << 3) | (20 >> 2), (20 & 3) << 6];
        raw.extend_from_slice(&seed);
        let crc = crc16(&raw);
        raw.extend_from_slice(&crc.to_le_bytes());
        base32_encode(&raw)
    }

    #[test]
    fn parses_and_signs() {
        let seed = seed_text([7u8; 32]);
        assert!(seed.starts_with("SU"), "{seed}");
        let text = format!(
            "-----BEGIN NATS USER JWT-----\neyJhbGciOi.x.y\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        let creds = Creds::parse(&text).unwrap();
        assert_eq!(creds.jwt, "eyJhbGciOi.x.y");
        let sig = creds.sign("nonce123");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap();
        let public = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        UnparsedPublicKey::new(&ED25519, public.public_key().as_ref())
            .verify(b"nonce123", &raw)
            .unwrap();
        assert!(!format!("{creds:?}").contains(&seed));
    }

    #[test]
    fn rejects_bad_files_without_quoting_them() {
        assert!(Creds::parse("nothing").is_err());
        let mut seed = seed_text([1u8; 32]);
        seed.replace_range(10..11, if &seed[10..11] == "A" { "B" } else { "A" });
        let text = format!(
            "-----BEGIN NATS USER JWT-----\nj\n-----\n-----BEGIN USER NKEY SEED-----\n{seed}\n"
        );
        let e = Creds::parse(&text).unwrap_err();
        assert!(!e.contains(&seed), "{e}");
        assert_eq!(base32_decode("MZXW6==="), Some(b"foo".to_vec()));
    }
}
