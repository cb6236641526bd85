//! The S3 edge: a listener of its own (`CONDUCTOR_S3_PORT`, 9000 by default) where every request
//! is storage_manager's S3 protocol, forwarded to a healthy instance with its `Host` unchanged. S3
//! clients are pointed at one fixed address and never need an instance's port; the instance
//! checks the SigV4 signature and the bucket's policy itself (no bearer token here).

use std::sync::Arc;

use poem::{Endpoint, Request, Response, http::StatusCode};
use poem_openapi::OperationId;

use crate::{AppState, gateway::Forwarder};

/// The service whose protocol the edge speaks.
const SERVICE: &str = "storage_manager";

pub struct S3Edge {
    state: Arc<AppState>,
    forwarder: Arc<Forwarder>,
}

impl S3Edge {
    pub fn new(state: Arc<AppState>, forwarder: Arc<Forwarder>) -> Self {
        Self { state, forwarder }
    }
}

/// An S3 error document (what S3 clients parse), for the edge's own refusals.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{}</RequestId></Error>",
        aerekos_common::edge::current_request_id()
    );
    let mut resp = Response::builder()
        .status(status)
        .content_type("application/xml")
        .header("retry-after", "5")
        .body(body);
    resp.set_data(OperationId("s3_edge"));
    resp
}

impl Endpoint for S3Edge {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let Some(route) = self.state.routes.snapshot().services.get(SERVICE).cloned() else {
            return Ok(s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "storage_manager is not deployed on this platform: deploy it (POST /api/services/storage_manager/deploy)",
            ));
        };
        let mut resp = self.forwarder.forward(req, SERVICE, &route, true).await;
        resp.set_data(OperationId("s3_edge"));
        Ok(resp)
    }
}
