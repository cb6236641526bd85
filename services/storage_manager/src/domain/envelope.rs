//! Envelope encryption through key_manager, called only through `aerekos-sdk`: a fresh data key
//! per object (key_manager returns it in plaintext and wrapped), the wrapped copy stored beside the
//! object, unwrapped again by key_manager for every read. So a disabled or deleted key makes its
//! objects unreadable at once, and a rotated key still unwraps what older versions wrapped.

use std::sync::Arc;

use aerekos_common::{ApiError, ApiResult, edge::current_request_id};
use aerekos_sdk::{KeyManager, SdkError, Transport};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use zeroize::Zeroizing;

use super::crypto::DataKey;

#[derive(Clone)]
pub struct Envelope {
    client: Option<KeyManager>,
}

impl Envelope {
    /// `token`: this service's token; without one, encryption is refused with a message.
    pub fn new(key_manager_url: &str, token: Option<String>) -> Self {
        let client = token.map(|token| {
            let transport = Transport::new().with_token(token).with_request_id_source(|| Some(current_request_id()));
            KeyManager::with_transport(key_manager_url, transport)
        });
        Self { client }
    }

    fn client(&self) -> ApiResult<&KeyManager> {
        self.client.as_ref().ok_or_else(|| {
            ApiError::unavailable(
                "encryption_unavailable",
                "storage_manager has no service token (AEREKOS_SERVICE_TOKEN) to call key_manager with, so it cannot \
                 encrypt or decrypt objects",
            )
        })
    }

    /// Checks that `key_ref` names a key_manager key this service may use (when a bucket's default
    /// encryption is set), so mistakes show at configuration time rather than at the first upload.
    pub async fn check_key(&self, key_ref: &str) -> ApiResult<()> {
        self.client()?.get_key().key(key_ref).send().await.map(|_| ()).map_err(|e| refused(key_ref, e.into()))
    }

    /// A new data key under `key_ref`: the key to seal with, and its wrapped copy to store.
    pub async fn new_data_key(&self, key_ref: &str) -> ApiResult<(Arc<DataKey>, String)> {
        let response = self
            .client()?
            .generate_data_key()
            .key(key_ref)
            .body_map(|b| b.bits(256_u32))
            .send()
            .await
            .map_err(|e| refused(key_ref, e.into()))?
            .into_inner();
        let plaintext = response.plaintext.ok_or_else(|| ApiError::internal("key_manager returned no plaintext data key"))?;
        Ok((Arc::new(decode_key(&plaintext)?), response.ciphertext))
    }

    /// Unwraps an object's data key.
    pub async fn open_data_key(&self, key_ref: &str, wrapped: &str) -> ApiResult<Arc<DataKey>> {
        let response = self
            .client()?
            .decrypt()
            .key(key_ref)
            .body_map(|b| b.ciphertext(wrapped))
            .send()
            .await
            .map_err(|e| refused(key_ref, e.into()))?
            .into_inner();
        Ok(Arc::new(decode_key(&response.plaintext)?))
    }
}

fn decode_key(b64: &str) -> ApiResult<DataKey> {
    let bytes = Zeroizing::new(STANDARD.decode(b64).map_err(ApiError::internal)?);
    DataKey::new(&bytes).ok_or_else(|| ApiError::internal("key_manager returned a data key that is not 32 bytes"))
}

/// key_manager's refusal, said in terms of this object or bucket.
fn refused(key_ref: &str, e: SdkError) -> ApiError {
    match &e {
        SdkError::Api { status: 404, .. } => {
            ApiError::bad_request("encryption_key_not_found", format!("key_manager has no key {key_ref:?} (or it was deleted)"))
        }
        SdkError::Api { status: 401 | 403, body } => ApiError::unavailable(
            "encryption_unavailable",
            format!("key_manager refused storage_manager's credentials for key {key_ref:?}: {}", body.message),
        ),
        SdkError::Api { status, body } if *status < 500 => ApiError::conflict(
            "encryption_key_unusable",
            format!("key_manager key {key_ref:?} cannot be used: {} ({})", body.message, body.code),
        ),
        _ => ApiError::unavailable("encryption_unavailable", format!("key_manager could not be reached for key {key_ref:?}: {e}")),
    }
}
