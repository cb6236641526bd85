//! The audit trail: who asked the conductor to change what, and what came of it.
//!
//! One middleware ([`Audited`]) in front of the conductor's own API records every request that
//! changes something (any method but GET, HEAD and OPTIONS) and the reads that reveal secrets,
//! refused ones included: the actor (from the token, checked again here; `worker:<id>` for a
//! worker's credential; `anonymous` otherwise), the operation, the path, the status answered, the
//! request id and the client's address. The record is written before the answer leaves, so a
//! change that was answered is never missing from the trail. A login names the username asked for
//! (see [`set_actor`]). Worker chatter (heartbeats, state reports) is left out: the registry and
//! the moves and backups are its record. Values (passwords, tokens, bodies) are never recorded.
//! Requests the gateway forwards to a service are the service's to audit (key_manager keeps its own).

use std::{cell::RefCell, sync::Arc, time::Duration};

use aerekos_common::{ApiError, ApiResult, edge::current_request_id};
use poem::{Endpoint, IntoResponse, Request, Response, http::Method};
use poem_openapi::OperationId;

use crate::{
    AppState,
    model::{AuditEvent, AuditPage},
    store::{
        Db, audit,
        audit::{AuditFilter, AuditRow},
        now_ms,
    },
};

/// Changes that are not recorded: a worker's periodic reports.
const UNRECORDED: &[&str] = &[
    "worker_heartbeat",
    "report_instance_status",
    "report_transfer",
    "report_backup",
];
/// Reads that are recorded because they hand out secrets or the whole state.
const RECORDED_READS: &[&str] = &["get_registration_token", "export_platform"];
/// How long records are kept.
pub const RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

tokio::task_local! {
    static ACTOR: RefCell<Option<String>>;
}

/// Names the actor of the request being served when its token does not (a login: `user:<name>`).
pub fn set_actor(actor: String) {
    let _ = ACTOR.try_with(|a| *a.borrow_mut() = Some(actor));
}

pub struct Audited<E> {
    inner: E,
    state: Arc<AppState>,
}

impl<E> Audited<E> {
    pub fn new(inner: E, state: Arc<AppState>) -> Self {
        Self { inner, state }
    }
}

impl<E: Endpoint> Endpoint for Audited<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let method = req.method().clone();
        let target = req.uri().path().to_owned();
        let client_ip = Some(aerekos_common::net::peer_address(&req).to_string());
        let bearer = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let (resp, actor) = ACTOR
            .scope(RefCell::new(None), async {
                let resp = match self.inner.call(req).await {
                    Ok(out) => out.into_response(),
                    Err(err) => {
                        let op = err.data::<OperationId>().map(|op| op.0);
                        let mut resp = err.into_response();
                        if let Some(op) = op {
                            resp.set_data(OperationId(op));
                        }
                        resp
                    }
                };
                (resp, ACTOR.with(|a| a.borrow_mut().take()))
            })
            .await;
        let Some(action) = resp.data::<OperationId>().map(|op| op.0) else {
            return Ok(resp); // no operation matched: nothing was touched
        };
        let is_read = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        let recorded = if is_read {
            RECORDED_READS.contains(&action)
        } else {
            !UNRECORDED.contains(&action)
        };
        if recorded {
            let actor = actor.unwrap_or_else(|| self.actor(bearer.as_deref(), &target));
            let row = AuditRow {
                id: 0,
                at: now_ms(),
                actor,
                action: action.to_owned(),
                target,
                status: i64::from(resp.status().as_u16()),
                request_id: current_request_id(),
                client_ip,
            };
            if let Err(e) = audit::insert_many(&self.state.db, &[row]).await {
                tracing::error!(error = %e, action, "writing the audit record failed");
            }
        }
        Ok(resp)
    }
}

impl<E> Audited<E> {
    fn actor(&self, bearer: Option<&str>, path: &str) -> String {
        let Some(token) = bearer else {
            return "anonymous".to_owned();
        };
        if let Ok(claims) = self.state.auth.verify(token) {
            return match aerekos_common::auth::Caller::from_claims(&claims) {
                Ok(caller) => caller.actor(),
                Err(_) => "anonymous".to_owned(),
            };
        }
        // A worker's credential is not a token; the worker's id is in the path it may use.
        match path
            .strip_prefix("/api/workers/")
            .and_then(|rest| rest.split('/').next())
        {
            Some(id) if uuid::Uuid::parse_str(id).is_ok() => format!("worker:{id}"),
            _ => "anonymous".to_owned(),
        }
    }
}

/// The most events one page of `GET /api/audit` holds.
pub const MAX_PAGE: i64 = 1000;

/// `GET /api/audit`: newest first, `limit` at a time, paged by `before`.
pub async fn list(db: &Db, mut filter: AuditFilter) -> ApiResult<AuditPage> {
    if !(1..=MAX_PAGE).contains(&filter.limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let limit = filter.limit;
    filter.limit += 1; // one more tells whether there is a next page
    let mut rows = audit::list(db, &filter).await.map_err(ApiError::internal)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_before = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(AuditPage {
        events: rows
            .into_iter()
            .map(|r| AuditEvent {
                id: r.id,
                at: aerekos_common::db::from_ms(r.at),
                actor: r.actor,
                action: r.action,
                target: r.target,
                status: r.status as u16,
                request_id: r.request_id,
                client_ip: r.client_ip,
            })
            .collect(),
        next_before,
    })
}

/// Deletes records older than [`RETENTION`].
pub async fn prune(db: &Db) -> Result<(), sqlx::Error> {
    audit::delete_before(db, now_ms() - RETENTION.as_millis() as i64).await
}
