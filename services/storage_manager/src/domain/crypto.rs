//! The at-rest format of encrypted objects: the plaintext cut into 64 KiB chunks, each sealed with
//! AES-256-GCM under the object's own data key.
//!
//! A chunk's nonce is (domain, chunk index, last-chunk flag): `domain` keeps the nonces of an upload's
//! parts apart from each other and from the final object (which share one data key), the index stops
//! chunks being reordered, and the flag stops a file being cut short at a chunk boundary unnoticed.
//! A range read decrypts only the chunks it covers.

// aes-gcm 0.10 takes generic-array 0.14 types, which that crate now marks deprecated.
#![allow(deprecated)]

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{AeadInPlace, generic_array::GenericArray},
};

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// The GCM tag after each chunk.
pub const TAG: usize = 16;

pub struct DataKey {
    cipher: Aes256Gcm,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the object's bytes do not authenticate under its data key (chunk {0}): they were changed or cut short"
)]
pub struct Tampered(pub u64);

impl DataKey {
    pub fn new(key: &[u8]) -> Option<Self> {
        (key.len() == 32).then(|| Self {
            cipher: Aes256Gcm::new(GenericArray::from_slice(key)),
        })
    }

    /// Encrypts `buf` (one chunk of plaintext) in place and appends its tag.
    pub fn seal(&self, domain: u32, index: u64, last: bool, buf: &mut Vec<u8>) {
        self.cipher
            .encrypt_in_place(&nonce(domain, index, last), b"", buf)
            .expect("a 64 KiB chunk is within GCM's limits");
    }

    /// Decrypts one sealed chunk (ciphertext + tag) in place.
    pub fn open(
        &self,
        domain: u32,
        index: u64,
        last: bool,
        buf: &mut Vec<u8>,
    ) -> Result<(), Tampered> {
        self.cipher
            .decrypt_in_place(&nonce(domain, index, last), b"", buf)
            .map_err(|_| Tampered(index))
    }
}

fn nonce(domain: u32, index: u64, last: bool) -> Nonce<aes_gcm::aes::cipher::consts::U12> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&domain.to_be_bytes());
    n[4..11].copy_from_slice(&index.to_be_bytes()[1..]);
    n[11] = u8::from(last);
    *Nonce::from_slice(&n)
}

/// How many chunks `plain` bytes take (an empty object is one empty, authenticated chunk).
pub fn chunk_count(plain: u64) -> u64 {
    plain.div_ceil(CHUNK as u64).max(1)
}

/// The size on disk of `plain` bytes sealed.
#[cfg(test)]
pub fn sealed_len(plain: u64) -> u64 {
    plain + chunk_count(plain) * TAG as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_open_only_where_they_were_sealed() {
        let key = DataKey::new(&[7u8; 32]).unwrap();
        let mut buf = b"hello".to_vec();
        key.seal(0, 3, true, &mut buf);
        assert_eq!(buf.len(), 5 + TAG);
        assert!(
            key.open(0, 2, true, &mut buf.clone()).is_err(),
            "another index"
        );
        assert!(
            key.open(0, 3, false, &mut buf.clone()).is_err(),
            "not flagged last"
        );
        assert!(
            key.open(1, 3, true, &mut buf.clone()).is_err(),
            "another domain"
        );
        key.open(0, 3, true, &mut buf).unwrap();
        assert_eq!(buf, b"hello");
    }

    #[test]
    fn sizes() {
        assert_eq!(chunk_count(0), 1);
        assert_eq!(sealed_len(0), 16);
        assert_eq!(chunk_count(CHUNK as u64), 1);
        assert_eq!(chunk_count(CHUNK as u64 + 1), 2);
    }
}
