//! Records that must be stored before a request is answered (an audit trail), written in batches.
//!
//! A writer task takes every record waiting, stores them in one transaction, then answers each
//! request: a request is answered only after its record is stored, and thousands of requests a
//! second share a handful of commits. key_manager and secrets_manager audit every use this way.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::{ApiError, ApiResult};

const MAX_BATCH: usize = 2048;

type Job<R> = (R, oneshot::Sender<bool>);

/// The sending side; clone it freely. The writer ends when every clone is dropped.
pub struct GroupCommit<R> {
    tx: mpsc::Sender<Job<R>>,
}

impl<R> Clone for GroupCommit<R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<R: Send + 'static> GroupCommit<R> {
    /// Starts the writer: `store` writes one batch in one transaction; a batch it fails to store
    /// is logged and its requests refused.
    pub fn start<F, Fut, E>(store: F) -> (Self, tokio::task::JoinHandle<()>)
    where
        F: Fn(Vec<R>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: std::fmt::Display,
    {
        let (tx, mut rx) = mpsc::channel::<Job<R>>(16 * 1024);
        let task = tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
                let (records, waiting): (Vec<R>, Vec<oneshot::Sender<bool>>) =
                    jobs.drain(..).unzip();
                let count = records.len();
                let stored = match store(records).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, records = count, "storing a batch of records failed; their requests are refused");
                        false
                    }
                };
                for done in waiting {
                    let _ = done.send(stored);
                }
            }
        });
        (Self { tx }, task)
    }

    /// Stores `record`; what cannot be recorded does not happen (503 `audit_unavailable`).
    pub async fn record(&self, record: R) -> ApiResult<()> {
        let (done, stored) = oneshot::channel();
        let unavailable = || {
            ApiError::unavailable(
                "audit_unavailable",
                "the audit log cannot be written; the operation was not performed",
            )
        };
        self.tx
            .send((record, done))
            .await
            .map_err(|_| unavailable())?;
        match stored.await {
            Ok(true) => Ok(()),
            _ => Err(unavailable()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn every_record_is_stored_before_it_is_answered_and_failures_refuse() {
        let stored = Arc::new(Mutex::new(Vec::new()));
        let sink = stored.clone();
        let (log, _writer) = GroupCommit::start(move |batch: Vec<u32>| {
            let sink = sink.clone();
            async move {
                if batch.contains(&13) {
                    return Err("13 is refused");
                }
                sink.lock().unwrap().extend(batch);
                Ok(())
            }
        });
        let answers = futures_util::future::join_all((100..200).map(|i| log.record(i))).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(stored.lock().unwrap().len(), 100);
        assert_eq!(
            log.record(13).await.unwrap_err().body().code,
            "audit_unavailable"
        );
    }
}
