//! Who may look and who may act: the access token, CSRF protection of
//! state-changing requests, and the headers that keep pages from running
//! anything but the dashboard's own script.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// The dashboard's secrets.
#[derive(Clone)]
pub(crate) struct Guard {
    /// The access token, when one is required.
    pub(crate) token: Option<String>,
    /// The per-process secret every form carries and every POST must send
    /// back: another site cannot read it from our pages.
    pub(crate) csrf: String,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// The content security policy: our script, styles and fetches only, no
/// inline script (so even markup that escaped escaping cannot run), no
/// framing, forms posting to ourselves only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

impl Guard {
    /// A guard with a fresh CSRF secret.
    pub(crate) fn new(token: Option<String>) -> Self {
        let csrf = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self { token, csrf }
    }

    /// Whether `headers` carry the token, as `Bearer <token>` or as the
    /// password of basic auth; always when no token is required.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if let Some(bearer) = value.strip_prefix("Bearer ") {
            return same(bearer.trim().as_bytes(), token.as_bytes());
        }
        let Some(basic) = value.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
            return false;
        };
        let password = match decoded.iter().position(|&b| b == b':') {
            Some(colon) => &decoded[colon + 1..],
            None => return false,
        };
        same(password, token.as_bytes())
    }

    /// Why a POST must be refused, if it must: a CSRF secret that does not
    /// match, or a request another site started.
    pub(crate) fn refuses(&self, headers: &HeaderMap, csrf: &str) -> Option<&'static str> {
        if !same(csrf.as_bytes(), self.csrf.as_bytes()) {
            return Some("the form's CSRF token is missing or stale: reload the page");
        }
        let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
            return Some("cross-site request refused");
        }
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        match (origin, host) {
            (None, _) => None,
            (Some(origin), Some(host)) if origin_host(origin) == Some(host) => None,
            (Some(_), _) => Some("request from another origin refused"),
        }
    }
}

/// The `host[:port]` of an origin such as `http://127.0.0.1:8080`.
fn origin_host(origin: &str) -> Option<&str> {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses requests without the token (except `/healthz`), asking the
/// browser for basic auth.
pub(crate) async fn authenticate(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" || guard.admits(request.headers()) {
        return next.run(request).await;
    }
    let challenge =
        HeaderValue::from_static("Basic realm=\"celeriac dashboard\", charset=\"UTF-8\"");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        "a token is required: send it as `Authorization: Bearer <token>` or as the basic-auth password\n",
    )
        .into_response()
}

/// Adds the security headers to every response. The referrer policy is
/// `same-origin`, not `no-referrer`: under `no-referrer` browsers send
/// `Origin: null` with form posts, which the origin check must refuse.
pub(crate) async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn the_token_is_taken_as_bearer_or_basic_password() {
        let guard = Guard::new(Some("s3cret".into()));
        assert!(guard.admits(&headers(&[("authorization", "Bearer s3cret")])));
        let basic = base64::engine::general_purpose::STANDARD.encode("any:s3cret");
        assert!(guard.admits(&headers(&[("authorization", &format!("Basic {basic}"))])));
        assert!(!guard.admits(&headers(&[("authorization", "Bearer wrong")])));
        assert!(!guard.admits(&headers(&[])));
        assert!(Guard::new(None).admits(&headers(&[])));
    }

    #[test]
    fn a_post_needs_the_csrf_secret_and_our_own_origin() {
        let guard = Guard::new(None);
        let csrf = guard.csrf.clone();
        let ours = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(guard.refuses(&ours, &csrf), None);
        assert!(guard.refuses(&ours, "guess").is_some());
        let theirs = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(guard.refuses(&theirs, &csrf).is_some());
        let cross = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(guard.refuses(&cross, &csrf).is_some());
    }
}
