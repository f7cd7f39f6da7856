//! Who may act: every action needs the dashboard token, in an `Authorization: Bearer` header,
//! and must come from the dashboard's own page.
//!
//! The token is sent in a header, never a cookie, so a page of another site cannot make the
//! operator's browser send it (a cross-site request with that header needs a CORS preflight,
//! which the worker never grants). The origin checks refuse such a request even so, before
//! the token is looked at.

use axum::http::{HeaderMap, StatusCode, header};

use super::{ApiError, Dashboard};

/// Refuses an action unless `headers` carry the token, from the dashboard's own origin.
///
/// # Errors
///
/// 403 when actions are off (no token configured) or the request comes from another site;
/// 401 when the token is missing or wrong.
pub(super) fn authorize(dashboard: &Dashboard, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &dashboard.token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "actions are off: the worker has no dashboard token (--dashboard-token or JOBS_DASHBOARD_TOKEN)",
        ));
    };
    if cross_site(headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "refused: the request comes from another site",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match given {
        Some(given) if token.matches(given) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "refused: wrong dashboard token",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "refused: this action needs the dashboard token",
        )),
    }
}

/// Whether the browser says the request comes from another site: `Sec-Fetch-Site` other than
/// `same-origin` or `none`, or an `Origin` whose host is not the `Host` asked.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return true;
    }
    match text(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let origin_host = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            text(header::HOST) != Some(origin_host)
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn same_origin_and_tools_pass_other_sites_do_not() {
        assert!(!cross_site(&headers(&[])), "curl sends neither header");
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://evil.example"),
        ])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(cross_site(&headers(&[("origin", "null")])));
    }
}
