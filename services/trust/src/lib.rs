//! How a server (a service, a worker) comes to trust the conductor's tokens: it fetches the
//! conductor's published public key (`GET /api/auth/jwks`) through `aerekos-sdk` and builds a
//! `TokenVerifier` from it, and follows the conductor's revocation feed so that verifier refuses
//! revoked tokens within about a round trip. This sits apart from `aerekos-common` so the
//! conductor, which uses common, never depends on its own client.

use std::time::Duration;

use aerekos_common::auth::{Revocations, TokenVerifier};

/// How long one request to the revocation feed waits for news (the conductor allows 30 s; the
/// SDK's client gives up after 60 s).
const FEED_WAIT_SECS: u64 = 25;

/// The verifier for `conductor_url`'s tokens, retrying for up to `wait` while the conductor starts.
/// It refuses revoked tokens: a background task follows the conductor's revocation feed for as
/// long as the verifier (or a clone) is alive.
/// `conductor` is a client without credentials, believing the servers its caller trusts (the
/// cluster CA when the conductor serves TLS).
pub async fn conductor_verifier(
    conductor: &aerekos_sdk::Conductor,
    wait: Duration,
) -> Result<TokenVerifier, String> {
    let verifier = fetch_verifier(conductor, wait).await?;
    tokio::spawn(follow_revocations(
        conductor.clone(),
        verifier.revocations().clone(),
    ));
    Ok(verifier)
}

/// Keeps one long poll of the revocation feed open and adds what it names to `revocations`. While
/// the conductor is away it tries again every second; what was revoked before stays refused.
async fn follow_revocations(conductor: aerekos_sdk::Conductor, revocations: Revocations) {
    let mut after = 0;
    let mut failing_since: Option<tokio::time::Instant> = None;
    while !revocations.is_abandoned() {
        match conductor
            .get_revocations()
            .after(after)
            .wait_secs(FEED_WAIT_SECS)
            .send()
            .await
        {
            Ok(feed) => {
                let feed = feed.into_inner();
                for r in &feed.revocations {
                    revocations.revoke(&r.token_id, r.expires_at);
                }
                if !feed.revocations.is_empty() {
                    tracing::info!(count = feed.revocations.len(), "learned of revoked tokens");
                }
                if failing_since.take().is_some() {
                    tracing::info!("following the conductor's revocation feed again");
                }
                after = feed.next_after;
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                // Once at first, then about every minute: the conductor may be away for long.
                let elapsed = since.elapsed();
                if elapsed < Duration::from_secs(1) || elapsed.as_secs() % 60 == 0 {
                    tracing::warn!(error = %e, "the conductor's revocation feed is unreachable; tokens revoked meanwhile are refused once it answers");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn fetch_verifier(
    conductor: &aerekos_sdk::Conductor,
    wait: Duration,
) -> Result<TokenVerifier, String> {
    let conductor_url = {
        use aerekos_sdk::conductor::ClientInfo as _;
        conductor.baseurl().to_owned()
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match conductor.get_jwks().send().await {
            Ok(jwks) => {
                let jwks = jwks.into_inner();
                let jwk = jwks
                    .keys
                    .first()
                    .ok_or_else(|| "the conductor published no key".to_owned())?;
                return TokenVerifier::from_ed25519_jwk(&jwk.kid, &jwk.x)
                    .map_err(|e| e.to_string());
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(conductor = %conductor_url, error = %e, "waiting for the conductor's public key");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("{conductor_url}: {e}")),
        }
    }
}
