//! Key material and ciphertexts. AES-256-GCM (the `aes-gcm` crate) with a fresh random 96-bit nonce
//! per message; nothing here is a hand-rolled primitive.
//!
//! A ciphertext is `aerekos:v<version>:<base64(key id (16) ‖ nonce (12) ‖ sealed data ‖ tag (16))>`.
//! The additional authenticated data binds it to its key id, its version and the canonical encryption
//! context, so a changed byte, another key, another version or another context all fail to open it.
//!
//! Key material at rest is sealed under the master key the same way, with additional data naming the
//! key id and version, so material cannot be swapped between rows.

use std::collections::BTreeMap;

use aes_gcm::{
    Aes256Gcm, KeyInit as _, Nonce,
    aead::{Aead as _, Payload},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use rand::RngCore as _;
use uuid::Uuid;
use zeroize::Zeroizing;

const PREFIX: &str = "aerekos:v";
const NONCE_LEN: usize = 12;
const KEY_ID_LEN: usize = 16;

/// 32 bytes of key material, wiped from memory when dropped.
pub type Material = Zeroizing<[u8; 32]>;

pub fn random_material() -> Material {
    let mut m = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(m.as_mut());
    m
}

pub fn random_bytes(n: usize) -> Zeroizing<Vec<u8>> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf
}

/// An AES-256-GCM key ready to use (the cipher wipes its round keys when dropped).
pub struct SealingKey(Aes256Gcm);

impl SealingKey {
    pub fn new(material: &Material) -> Self {
        Self(Aes256Gcm::new_from_slice(material.as_ref()).expect("32-byte key"))
    }

    /// nonce ‖ sealed ‖ tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of a bounded message");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens nonce ‖ sealed ‖ tag; None if anything does not authenticate.
    pub fn open(&self, data: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if data.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.0
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad })
            .ok()
            .map(Zeroizing::new)
    }
}

/// The master key: seals and opens key material at rest.
pub struct MasterKey(SealingKey);

impl MasterKey {
    pub fn new(material: &Material) -> Self {
        Self(SealingKey::new(material))
    }

    fn aad(key_id: Uuid, version: u32) -> Vec<u8> {
        let mut aad = b"aerekos-kms-material-v1".to_vec();
        aad.extend_from_slice(key_id.as_bytes());
        aad.extend_from_slice(&version.to_be_bytes());
        aad
    }

    pub fn wrap(&self, key_id: Uuid, version: u32, material: &Material) -> Vec<u8> {
        self.0.seal(material.as_ref(), &Self::aad(key_id, version))
    }

    pub fn unwrap(&self, key_id: Uuid, version: u32, wrapped: &[u8]) -> Option<Material> {
        let opened = self.0.open(wrapped, &Self::aad(key_id, version))?;
        let bytes: [u8; 32] = opened.as_slice().try_into().ok()?;
        Some(Zeroizing::new(bytes))
    }
}

/// The encryption context in the one byte form both sides agree on (sorted keys, JSON).
pub fn canonical_context(context: &BTreeMap<String, String>) -> Vec<u8> {
    if context.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(context).expect("string map serializes")
    }
}

fn message_aad(key_id: Uuid, version: u32, context: &[u8]) -> Vec<u8> {
    let mut aad = b"aerekos-kms-v1".to_vec();
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(context);
    aad
}

pub fn encrypt(
    key: &SealingKey,
    key_id: Uuid,
    version: u32,
    plaintext: &[u8],
    context: &[u8],
) -> String {
    let sealed = key.seal(plaintext, &message_aad(key_id, version, context));
    let mut blob = Vec::with_capacity(KEY_ID_LEN + sealed.len());
    blob.extend_from_slice(key_id.as_bytes());
    blob.extend_from_slice(&sealed);
    format!("{PREFIX}{version}:{}", STANDARD.encode(blob))
}

/// A ciphertext taken apart (not yet authenticated).
pub struct ParsedCiphertext {
    pub key_id: Uuid,
    pub version: u32,
    sealed: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CiphertextError {
    Malformed(&'static str),
}

pub fn parse(ciphertext: &str) -> Result<ParsedCiphertext, CiphertextError> {
    let rest = ciphertext
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(CiphertextError::Malformed(
            "it does not start with aerekos:v",
        ))?;
    let (version, data) = rest
        .split_once(':')
        .ok_or(CiphertextError::Malformed("no ':' after the version"))?;
    let version: u32 = version
        .parse()
        .map_err(|_| CiphertextError::Malformed("the version is not a number"))?;
    if version == 0 {
        return Err(CiphertextError::Malformed("versions start at 1"));
    }
    let blob = STANDARD
        .decode(data)
        .map_err(|_| CiphertextError::Malformed("the data is not valid base64"))?;
    if blob.len() < KEY_ID_LEN + NONCE_LEN + 16 {
        return Err(CiphertextError::Malformed("it is too short"));
    }
    let key_id = Uuid::from_slice(&blob[..KEY_ID_LEN]).expect("16 bytes");
    Ok(ParsedCiphertext {
        key_id,
        version,
        sealed: blob[KEY_ID_LEN..].to_vec(),
    })
}

/// Opens a parsed ciphertext; None if it fails authentication (altered, or another context).
pub fn decrypt(
    key: &SealingKey,
    parsed: &ParsedCiphertext,
    context: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    key.open(
        &parsed.sealed,
        &message_aad(parsed.key_id, parsed.version, context),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_binding_is_checked() {
        let key = SealingKey::new(&random_material());
        let other = SealingKey::new(&random_material());
        let id = Uuid::new_v4();
        let ctx = canonical_context(&[("tenant".to_owned(), "a".to_owned())].into());
        let ct = encrypt(&key, id, 3, b"hello", &ctx);
        assert!(ct.starts_with("aerekos:v3:"));
        let parsed = parse(&ct).unwrap();
        assert_eq!((parsed.key_id, parsed.version), (id, 3));
        assert_eq!(decrypt(&key, &parsed, &ctx).unwrap().as_slice(), b"hello");
        assert!(decrypt(&key, &parsed, b"").is_none(), "context is bound");
        assert!(decrypt(&other, &parsed, &ctx).is_none(), "key is bound");
        // Claiming another version fails too.
        let forged = ct.replacen("aerekos:v3:", "aerekos:v2:", 1);
        assert!(decrypt(&key, &parse(&forged).unwrap(), &ctx).is_none());
        // Two encryptions of the same plaintext differ (fresh nonce).
        assert_ne!(encrypt(&key, id, 3, b"hello", &ctx), ct);
    }

    #[test]
    fn material_is_bound_to_its_key_and_version() {
        let master = MasterKey::new(&random_material());
        let m = random_material();
        let id = Uuid::new_v4();
        let wrapped = master.wrap(id, 1, &m);
        assert_eq!(master.unwrap(id, 1, &wrapped).unwrap().as_ref(), m.as_ref());
        assert!(master.unwrap(id, 2, &wrapped).is_none());
        assert!(master.unwrap(Uuid::new_v4(), 1, &wrapped).is_none());
    }
}
