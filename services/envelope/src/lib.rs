//! Envelope encryption through key_manager, called only through `aerekos-sdk`: a fresh data key
//! per thing sealed (key_manager returns it in plaintext and wrapped), the wrapped copy stored
//! beside it, unwrapped again by key_manager for every read. So a disabled or deleted key makes
//! what it protects unreadable at once, and a rotated key still unwraps what older versions
//! wrapped. storage_manager seals objects with it, secrets_manager secret versions.

use std::collections::HashMap;

use aerekos_common::{ApiError, ApiResult, edge::current_request_id};
use aerekos_sdk::{KeyManager, SdkError, Transport};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use zeroize::Zeroizing;

/// A data key's 32 plaintext bytes (wiped when dropped).
pub type DataKeyBytes = Zeroizing<Vec<u8>>;

/// Bits of every data key asked for: AES-256.
const DATA_KEY_BITS: u32 = 256;

#[derive(Clone)]
pub struct Envelope {
    /// The service sealing (named in refusals).
    service: &'static str,
    client: Option<KeyManager>,
}

impl Envelope {
    /// `token`: the service's own token for key_manager; without one every use is refused with a
    /// message saying so.
    pub fn new(service: &'static str, key_manager_url: &str, token: Option<String>) -> Self {
        let client = token.map(|token| {
            let transport = Transport::new()
                .with_token(token)
                .with_request_id_source(|| Some(current_request_id()));
            KeyManager::with_transport(key_manager_url, transport)
        });
        Self { service, client }
    }

    fn client(&self) -> ApiResult<&KeyManager> {
        self.client.as_ref().ok_or_else(|| {
            ApiError::unavailable(
                "encryption_unavailable",
                format!("{} has no service token (AEREKOS_SERVICE_TOKEN) to call key_manager with, so it cannot encrypt or decrypt", self.service),
            )
        })
    }

    /// Checks that `key_ref` names a key_manager key this service may use, so a mistake shows
    /// when it is configured rather than at the first use.
    pub async fn check_key(&self, key_ref: &str) -> ApiResult<()> {
        self.client()?
            .get_key()
            .key(key_ref)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.refused(key_ref, e.into()))
    }

    /// A new data key under `key_ref`, bound to `context` (key_manager's encryption context: the
    /// same must be given to open it): its plaintext to seal with, and its wrapped copy to store.
    pub async fn new_data_key(
        &self,
        key_ref: &str,
        context: &HashMap<String, String>,
    ) -> ApiResult<(DataKeyBytes, String)> {
        let response = self
            .client()?
            .generate_data_key()
            .key(key_ref)
            .body_map(|b| b.bits(DATA_KEY_BITS).context(context.clone()))
            .send()
            .await
            .map_err(|e| self.refused(key_ref, e.into()))?
            .into_inner();
        let plaintext = response
            .plaintext
            .ok_or_else(|| ApiError::internal("key_manager returned no plaintext data key"))?;
        Ok((decode_key(&plaintext)?, response.ciphertext))
    }

    /// Unwraps a data key `new_data_key` made under `key_ref` and `context`.
    pub async fn open_data_key(
        &self,
        key_ref: &str,
        wrapped: &str,
        context: &HashMap<String, String>,
    ) -> ApiResult<DataKeyBytes> {
        let response = self
            .client()?
            .decrypt()
            .key(key_ref)
            .body_map(|b| b.ciphertext(wrapped).context(context.clone()))
            .send()
            .await
            .map_err(|e| self.refused(key_ref, e.into()))?
            .into_inner();
        decode_key(&response.plaintext)
    }

    /// key_manager's refusal, said in terms of what the key protects.
    fn refused(&self, key_ref: &str, e: SdkError) -> ApiError {
        match &e {
            SdkError::Api { status: 404, .. } => ApiError::bad_request(
                "encryption_key_not_found",
                format!("key_manager has no key {key_ref:?} (or it was deleted)"),
            ),
            SdkError::Api {
                status: 401 | 403,
                body,
            } => ApiError::unavailable(
                "encryption_unavailable",
                format!(
                    "key_manager refused {}'s credentials for key {key_ref:?}: {}",
                    self.service, body.message
                ),
            ),
            SdkError::Api { status, body } if *status < 500 => ApiError::conflict(
                "encryption_key_unusable",
                format!(
                    "key_manager key {key_ref:?} cannot be used: {} ({})",
                    body.message, body.code
                ),
            ),
            _ => ApiError::unavailable(
                "encryption_unavailable",
                format!("key_manager could not be reached for key {key_ref:?}: {e}"),
            ),
        }
    }
}

fn decode_key(b64: &str) -> ApiResult<DataKeyBytes> {
    let bytes = Zeroizing::new(STANDARD.decode(b64).map_err(ApiError::internal)?);
    if bytes.len() != DATA_KEY_BITS as usize / 8 {
        return Err(ApiError::internal(
            "key_manager returned a data key that is not 32 bytes",
        ));
    }
    Ok(bytes)
}
