//! How a server (a service, a worker) comes to trust the conductor's tokens: it fetches the
//! conductor's published public key (`GET /api/auth/jwks`) through `aerekos-sdk` and builds a
//! `TokenVerifier` from it. This sits apart from `aerekos-common` so the conductor, which uses
//! common, never depends on its own client.

use std::time::Duration;

use aerekos_common::auth::TokenVerifier;

/// The verifier for `conductor_url`'s tokens, retrying for up to `wait` while the conductor starts.
pub async fn conductor_verifier(conductor_url: &str, wait: Duration) -> Result<TokenVerifier, String> {
    let conductor = aerekos_sdk::Conductor::new(conductor_url);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match conductor.get_jwks().send().await {
            Ok(jwks) => {
                let jwks = jwks.into_inner();
                let jwk = jwks.keys.first().ok_or_else(|| "the conductor published no key".to_owned())?;
                return TokenVerifier::from_ed25519_jwk(&jwk.kid, &jwk.x).map_err(|e| e.to_string());
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(conductor = conductor_url, error = %e, "waiting for the conductor's public key");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("{conductor_url}: {e}")),
        }
    }
}
