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
//!
//! Every file of the bundle carries the security headers ([`security_headers`]): a strict CSP
//! (scripts only from the bundle, no inline script; API calls only to this origin and to the
//! workers' APIs, for instance output), no sniffing, no framing, no referrer to other origins, and
//! HSTS when the conductor serves TLS.

use poem::{
    Endpoint, IntoResponse, Request, Response,
    endpoint::EmbeddedFileEndpoint,
    http::{Method, StatusCode, header},
};
use rust_embed::RustEmbed;
use std::sync::Arc;

#[derive(RustEmbed)]
#[folder = "../dashboard/dist"]
struct Bundle;

const INDEX: &str = "index.html";

/// The origins, besides the conductor's own, that the dashboard's pages may call (the workers' APIs).
pub type ConnectSources = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

pub struct Dashboard<E> {
    inner: E,
    connect_sources: ConnectSources,
    /// The conductor serves TLS: browsers are told to use nothing else (HSTS).
    tls: bool,
}

impl<E> Dashboard<E> {
    pub fn new(inner: E, connect_sources: ConnectSources, tls: bool) -> Self {
        Self {
            inner,
            connect_sources,
            tls,
        }
    }
}

/// The Content-Security-Policy of the dashboard. Styles may be inline: react-native-web writes its
/// style sheet at run time (styles cannot run code; scripts are held to the bundle's own file).
pub fn content_security_policy(connect_sources: &[String]) -> String {
    let mut connect = String::from("'self'");
    for origin in connect_sources {
        // Only well-formed origins: a worker's api_url must not be able to inject directives. CSP
        // has no syntax for IPv6 literals, so those are left out (browsers ignore them anyway).
        if origin
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/.-".contains(&b))
        {
            connect.push(' ');
            connect.push_str(origin);
        }
    }
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         font-src 'self'; connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
         object-src 'none'"
    )
}

fn security_headers(resp: &mut Response, connect_sources: &[String], tls: bool) {
    let headers = resp.headers_mut();
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000"),
        );
    }
    if let Ok(csp) = header::HeaderValue::from_str(&content_security_policy(connect_sources)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        header::HeaderValue::from_static("same-origin"),
    );
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
        Err(e) if e.status() == StatusCode::NOT_MODIFIED => {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
        Err(e) => return Err(e),
    };
    // Fixed file names (no content hashes): browsers revalidate with the ETag every time.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
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
        // Every file of the bundle goes out with the security headers.
        let serve = |req: Request, file: String| async move {
            let mut resp = serve(req, &file).await?;
            security_headers(&mut resp, &(self.connect_sources)(), self.tls);
            poem::Result::Ok(resp)
        };
        if path == "/" || path == "/index.html" {
            return serve(req, INDEX.to_owned()).await;
        }
        let file = path.trim_start_matches('/');
        if Bundle::get(file).is_some() {
            return serve(req, file.to_owned()).await;
        }
        // Not a file of the bundle: the API's own paths first, then the app's client routes.
        let fallback = Request::builder()
            .method(req.method().clone())
            .uri_str("/")
            .finish();
        match self.inner.call(req).await {
            Ok(resp) => {
                let resp = resp.into_response();
                if resp.status() == StatusCode::NOT_FOUND {
                    serve(fallback, INDEX.to_owned()).await
                } else {
                    Ok(resp)
                }
            }
            Err(e) if e.status() == StatusCode::NOT_FOUND => {
                serve(fallback, INDEX.to_owned()).await
            }
            Err(e) => Err(e),
        }
    }
}
