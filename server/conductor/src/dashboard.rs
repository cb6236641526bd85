//! The web dashboard (`server/dashboard`), served by the conductor at `/` on its own port.
//!
//! The built bundle (`server/dashboard/dist`, committed and checked to be up to date by
//! `npm run check-dist`) is embedded into the executable at compile time, so `aerekos up` serves it
//! with no npm step. [`Dashboard`] sits in front of the gateway and the API:
//!
//! - `/api/…` (the conductor's API and the gateway's `/api/<service>/…`) and every method other than
//!   GET/HEAD go on untouched;
//! - `/` and `/index.html` are the app; a file of the bundle (`/assets/…`) is served as itself;
//! - any other GET the API does not know (`/workers/…`, `/keys`, a reload on a client route) is
//!   the app too, so the dashboard's own routing takes over. The API's own non-`/api` paths
//!   (`/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs`) answer as before.

use poem::{
    Endpoint, IntoResponse, Request, Response,
    endpoint::EmbeddedFileEndpoint,
    http::{Method, StatusCode, header},
};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../dashboard/dist"]
struct Bundle;

const INDEX: &str = "index.html";

pub struct Dashboard<E> {
    inner: E,
}

impl<E> Dashboard<E> {
    pub fn new(inner: E) -> Self {
        Self { inner }
    }
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// The embedded file `path` (relative to the bundle), answered to a GET or HEAD.
async fn serve(req: Request, path: &str) -> poem::Result<Response> {
    let head = req.method() == Method::HEAD;
    let mut req = req;
    if head {
        // The embedded endpoint answers GET only; a HEAD gets the same headers without the body.
        req.set_method(Method::GET);
    }
    let mut resp = match EmbeddedFileEndpoint::<Bundle>::new(path).call(req).await {
        Ok(resp) => resp,
        Err(e) if e.status() == StatusCode::NOT_MODIFIED => return Ok(StatusCode::NOT_MODIFIED.into_response()),
        Err(e) => return Err(e),
    };
    // Fixed file names (no content hashes): browsers revalidate with the ETag every time.
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    if head {
        resp.set_body(());
    }
    Ok(resp)
}

impl<E: Endpoint> Endpoint for Dashboard<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_owned();
        if is_api(&path) || !matches!(*req.method(), Method::GET | Method::HEAD) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        if path == "/" || path == "/index.html" {
            return serve(req, INDEX).await;
        }
        let file = path.trim_start_matches('/');
        if Bundle::get(file).is_some() {
            return serve(req, file).await;
        }
        // Not a file of the bundle: the API's own paths first, then the app's client routes.
        let fallback = Request::builder().method(req.method().clone()).uri_str("/").finish();
        match self.inner.call(req).await {
            Ok(resp) => {
                let resp = resp.into_response();
                if resp.status() == StatusCode::NOT_FOUND { serve(fallback, INDEX).await } else { Ok(resp) }
            }
            Err(e) if e.status() == StatusCode::NOT_FOUND => serve(fallback, INDEX).await,
            Err(e) => Err(e),
        }
    }
}
