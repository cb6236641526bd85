//! A version's value at rest: AES-256-GCM under the version's own data key (from key_manager),
//! stored as nonce ‖ ciphertext ‖ tag. The additional data binds it to its secret, version and
//! kind, so sealed bytes moved to another row, version or kind do not open.

// aes-gcm 0.10 takes generic-array 0.14 types, which that crate now marks deprecated.
#![allow(deprecated)]

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload, generic_array::GenericArray},
};
use rand::RngCore as _;
use zeroize::Zeroizing;

const NONCE: usize = 12;

fn additional_data(secret: &str, version: u64, kind: &str) -> Vec<u8> {
    let mut aad = b"aerekos-secret\0".to_vec();
    aad.extend_from_slice(secret.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(kind.as_bytes());
    aad
}

fn cipher(key: &[u8]) -> Option<Aes256Gcm> {
    (key.len() == 32).then(|| Aes256Gcm::new(GenericArray::from_slice(key)))
}

/// Seals `plaintext` (version `version` of `secret`, of `kind`) under `key` (32 bytes).
pub fn seal(
    key: &[u8],
    secret: &str,
    version: u64,
    kind: &str,
    plaintext: &[u8],
) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = cipher(key)?
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &additional_data(secret, version, kind),
            },
        )
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Some(out)
}

/// Opens what [`seal`] made; None if it does not authenticate.
pub fn open(
    key: &[u8],
    secret: &str,
    version: u64,
    kind: &str,
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, body) = sealed.split_at_checked(NONCE)?;
    cipher(key)?
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &additional_data(secret, version, kind),
            },
        )
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_as_itself() {
        let key = [7u8; 32];
        let sealed = seal(&key, "apps/shop/db", 3, "bytes", b"hunter2").unwrap();
        assert_eq!(
            open(&key, "apps/shop/db", 3, "bytes", &sealed)
                .unwrap()
                .as_slice(),
            b"hunter2"
        );
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert!(
            open(&key, "apps/shop/db", 4, "bytes", &sealed).is_none(),
            "another version"
        );
        assert!(
            open(&key, "apps/shop/other", 3, "bytes", &sealed).is_none(),
            "another secret"
        );
        assert!(
            open(&key, "apps/shop/db", 3, "json", &sealed).is_none(),
            "another kind"
        );
        assert!(
            open(&[8u8; 32], "apps/shop/db", 3, "bytes", &sealed).is_none(),
            "another key"
        );
        assert!(
            open(&key, "apps/shop/db", 3, "bytes", &sealed[..5]).is_none(),
            "cut short"
        );
    }
}
