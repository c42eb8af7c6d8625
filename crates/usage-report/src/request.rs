//! What every request goes through, whatever its route: a span naming its
//! method, its route and (once authenticated) its admin, in which every log
//! of the request is written; its count and time by route; and the bearer
//! token that makes it an admin's ([`Authed`]). Logs never carry a token, a
//! query string or PII: the route is the matched path (`/v1/exports/{export_id}`),
//! and an admin is named by id.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, request::Parts};
use axum::middleware::Next;
use axum::response::Response;
use usage_report::admins::Admin;
use usage_report::error::ApiError;

use crate::api::AppState;

/// The span of one request: `method`, `route` (the matched path, never the
/// query string; `unmatched` for no route) and `admin`, empty until
/// [`Authed`] records the admin's id into it.
pub(crate) fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        admin = tracing::field::Empty,
    )
}

/// Counts and times every request by route; logs route, status, duration.
pub(crate) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.request(&route, status, seconds);
    tracing::debug!(%method, %route, status, ms = seconds * 1000.0, "request");
    response
}

/// The authenticated admin of a request (`Authorization: Bearer <token>`).
pub(crate) struct Authed(pub(crate) Admin);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Authed, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        let admin = state
            .admins
            .authenticate(token)
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        // Into the request span ([`request_span`]): every log of the request
        // from here on names its admin.
        tracing::Span::current().record("admin", tracing::field::display(&admin.id));
        Ok(Authed(admin))
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex, PoisonError};

    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;
    use tracing_subscriber::fmt::MakeWriter;

    use crate::api::tests::{state, ROUTER, TOKEN};
    use crate::api::{router, AppState};

    /// What the subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    async fn get(state: &AppState, uri: &str, token: Option<&str>) -> StatusCode {
        let mut request = Request::get(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Body::empty()).expect("a request");
        router(state.clone())
            .oneshot(request)
            .await
            .expect("answered")
            .status()
    }

    /// The line a request's log is written on (the one of `observe`).
    fn request_line<'a>(logs: &'a str, route: &str) -> &'a str {
        logs.lines()
            .find(|l| l.contains(&format!("route={route}")) && l.contains("status="))
            .unwrap_or_else(|| panic!("no request log for {route} in:\n{logs}"))
    }

    #[tokio::test]
    async fn request_logs_name_the_route_and_the_admin_never_the_query() {
        let _one_at_a_time = ROUTER.lock().await;
        let exports = std::env::temp_dir().join(format!(
            "usage-report-request-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let state = state(&exports);
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        let me = get(&state, "/v1/me?q=jane%40example.com", Some(TOKEN)).await;
        let refused = get(&state, "/v1/exports/x1?token=s3cret", None).await;
        let unmatched = get(&state, "/nowhere?email=bob%40example.com", None).await;
        let _ = std::fs::remove_dir_all(&exports);

        assert_eq!(
            (me, refused, unmatched),
            (
                StatusCode::OK,
                StatusCode::UNAUTHORIZED,
                StatusCode::NOT_FOUND
            )
        );
        let logs = logs.text();
        let line = request_line(&logs, "/v1/me");
        assert!(
            line.contains("request{method=GET route=/v1/me admin=ada}"),
            "{line}"
        );
        let line = request_line(&logs, "/v1/exports/{export_id}");
        assert!(
            !line.contains("admin="),
            "no admin before one is known: {line}"
        );
        request_line(&logs, "unmatched");
        for secret in [TOKEN, "jane", "s3cret", "x1", "bob", "ada@example.com"] {
            assert!(!logs.contains(secret), "{secret:?} logged:\n{logs}");
        }
    }
}
