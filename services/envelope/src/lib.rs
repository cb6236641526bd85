//! Envelope encryption through key_manager, called only through `aerekos-sdk`: a fresh data key
//! per thing sealed (key_manager returns it in plaintext and wrapped), the wrapped copy stored
//! beside it, unwrapped again by key_manager for reads. A rotated key still unwraps what older
//! versions wrapped. storage_manager seals objects with it, secrets_manager secret versions.
//!
//! Without a cache every read asks key_manager, so a disabled or deleted key makes what it
//! protects unreadable at once (storage_manager). With [`Envelope::with_cache`] an unwrapped key
//! is kept for at most the cache's lifetime, so a disabled key takes effect within it
//! (secrets_manager, whose reads of one secret are frequent and each would otherwise cost a
//! second trip through the gateway).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

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
    cache: Option<std::sync::Arc<DataKeyCache>>,
}

/// Unwrapped data keys by what unwrapped them (key, wrapped copy, context), each kept for
/// `lifetime` from its unwrapping, at most `capacity` of them; wiped when dropped.
struct DataKeyCache {
    lifetime: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, DataKeyBytes)>>,
}

impl DataKeyCache {
    fn entry_key(key_ref: &str, wrapped: &str, context: &HashMap<String, String>) -> String {
        let mut context: Vec<_> = context.iter().collect();
        context.sort();
        let mut out = format!("{key_ref}\0{wrapped}");
        for (k, v) in context {
            out.push('\0');
            out.push_str(k);
            out.push('\0');
            out.push_str(v);
        }
        out
    }

    fn get(&self, entry: &str) -> Option<DataKeyBytes> {
        let mut entries = self.entries.lock().expect("data key cache lock");
        let (at, key) = entries.get(entry)?;
        if at.elapsed() < self.lifetime {
            return Some(key.clone());
        }
        // Expired: wiped now, not when the cache fills.
        entries.remove(entry);
        None
    }

    fn put(&self, entry: String, key: &DataKeyBytes) {
        let mut entries = self.entries.lock().expect("data key cache lock");
        // Expired keys are wiped at each unwrapping (a miss), so none outlives its lifetime by
        // more than the time to the next one.
        let lifetime = self.lifetime;
        entries.retain(|_, (at, _)| at.elapsed() < lifetime);
        if entries.len() >= self.capacity {
            // Still full of live keys: the oldest goes.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(entry, (Instant::now(), key.clone()));
    }

    /// Forgets every key unwrapped under `key_ref` (key_manager refused it).
    fn forget(&self, key_ref: &str) {
        let prefix = format!("{key_ref}\0");
        self.entries
            .lock()
            .expect("data key cache lock")
            .retain(|k, _| !k.starts_with(&prefix));
    }
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
        Self {
            service,
            client,
            cache: None,
        }
    }

    /// Keeps unwrapped data keys for `lifetime` (at most `capacity` of them), so reading the same
    /// thing again within it does not ask key_manager; a disabled or deleted key then takes
    /// effect within `lifetime` rather than at once. A zero lifetime keeps none.
    pub fn with_cache(mut self, lifetime: Duration, capacity: usize) -> Self {
        self.cache = (!lifetime.is_zero() && capacity > 0).then(|| {
            std::sync::Arc::new(DataKeyCache {
                lifetime,
                capacity,
                entries: Mutex::new(HashMap::new()),
            })
        });
        self
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

    /// Unwraps a data key `new_data_key` made under `key_ref` and `context` (from the cache when
    /// there is one and it holds the key).
    pub async fn open_data_key(
        &self,
        key_ref: &str,
        wrapped: &str,
        context: &HashMap<String, String>,
    ) -> ApiResult<DataKeyBytes> {
        let entry = self
            .cache
            .as_ref()
            .map(|_| DataKeyCache::entry_key(key_ref, wrapped, context));
        if let (Some(cache), Some(entry)) = (&self.cache, &entry)
            && let Some(key) = cache.get(entry)
        {
            return Ok(key);
        }
        let response = self
            .client()?
            .decrypt()
            .key(key_ref)
            .body_map(|b| b.ciphertext(wrapped).context(context.clone()))
            .send()
            .await;
        let response = match response {
            Ok(r) => r.into_inner(),
            Err(e) => {
                if let Some(cache) = &self.cache {
                    cache.forget(key_ref);
                }
                return Err(self.refused(key_ref, e.into()));
            }
        };
        let key = decode_key(&response.plaintext)?;
        if let (Some(cache), Some(entry)) = (&self.cache, entry) {
            cache.put(entry, &key);
        }
        Ok(key)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(lifetime_ms: u64, capacity: usize) -> DataKeyCache {
        DataKeyCache {
            lifetime: Duration::from_millis(lifetime_ms),
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn a_cached_key_is_served_within_its_lifetime_only() {
        let c = cache(50, 10);
        let entry = DataKeyCache::entry_key(
            "k",
            "wrapped",
            &HashMap::from([("secret".into(), "a".into())]),
        );
        c.put(entry.clone(), &Zeroizing::new(vec![1; 32]));
        assert_eq!(c.get(&entry).unwrap().as_slice(), &[1; 32]);
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get(&entry).is_none(), "expired");
    }

    #[test]
    fn entries_differ_by_key_wrapped_copy_and_context_and_the_oldest_goes_when_full() {
        let ctx = |v: &str| HashMap::from([("secret".to_owned(), v.to_owned())]);
        let a = DataKeyCache::entry_key("k", "w", &ctx("a"));
        assert_ne!(a, DataKeyCache::entry_key("k", "w", &ctx("b")));
        assert_ne!(a, DataKeyCache::entry_key("k2", "w", &ctx("a")));
        assert_ne!(a, DataKeyCache::entry_key("k", "w2", &ctx("a")));
        let c = cache(60_000, 2);
        for (i, e) in ["one", "two", "three"].iter().enumerate() {
            c.put(
                DataKeyCache::entry_key("k", e, &ctx("a")),
                &Zeroizing::new(vec![i as u8; 32]),
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            c.get(&DataKeyCache::entry_key("k", "one", &ctx("a")))
                .is_none(),
            "the oldest went"
        );
        assert!(
            c.get(&DataKeyCache::entry_key("k", "three", &ctx("a")))
                .is_some()
        );
        c.forget("k");
        assert!(
            c.get(&DataKeyCache::entry_key("k", "three", &ctx("a")))
                .is_none(),
            "forgotten with its key"
        );
    }
}
