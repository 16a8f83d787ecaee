//! The web client, embedded in the binary: `/` (the page), `/app.js` (its
//! rendering), `/client.js` (the reference protocol client, documented in
//! `proto/CLIENT.md`), `/sw.js` (the service worker showing Web Push
//! notifications; at the root, so its scope is the whole page),
//! `/style.css` and the icon, `/favicon.svg` — also at
//! `/favicon.ico`, where browsers look for one without asking the page, so
//! no request of theirs ends in a 404. Plain ES modules: no build step, and
//! nothing is loaded from the internet.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// Only this origin's scripts, styles, images, media and sockets: a message
/// can never bring in code, and the page talks to nothing else.
const CSP: &str = "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; \
                   connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The page's icon (SVG; every browser that shows icons reads it).
const FAVICON: &str = include_str!("../assets/favicon.svg");

/// (path, `Content-Type`, body) of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "/client.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/client.js"),
    ),
    (
        "/sw.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/sw.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    ("/favicon.svg", "image/svg+xml", FAVICON),
    ("/favicon.ico", "image/svg+xml", FAVICON),
];

/// Mounts the page and its assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, content_type, body) in ASSETS {
        cfg.route(
            path,
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type(*content_type)
                    .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
                    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .body(*body)
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, test};

    async fn get(path: &str) -> (u16, String, String) {
        let app = test::init_service(App::new().configure(configure)).await;
        let response =
            test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = String::from_utf8_lossy(&test::read_body(response).await).into_owned();
        (status, content_type, body)
    }

    #[actix_web::test]
    async fn every_file_the_page_names_is_served() {
        let (status, _, page) = get("/").await;
        assert_eq!(status, 200);
        let named: Vec<&str> = page
            .split(['"', '\''])
            .filter(|s| s.starts_with('/') && s.len() > 1)
            .collect();
        assert!(
            named.contains(&"/favicon.svg"),
            "the page names its icon: {named:?}"
        );
        for path in named {
            let (status, content_type, body) = get(path).await;
            assert_eq!(status, 200, "{path}");
            assert!(!content_type.is_empty() && !body.is_empty(), "{path}");
        }
    }

    #[actix_web::test]
    async fn a_browser_asking_for_favicon_ico_gets_the_icon_not_a_404() {
        let (status, content_type, body) = get("/favicon.ico").await;
        assert_eq!((status, content_type.as_str()), (200, "image/svg+xml"));
        assert!(body.starts_with("<svg"), "{body}");
    }
}
