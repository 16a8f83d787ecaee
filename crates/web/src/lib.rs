//! The web client, embedded in the binary: `/` (the page), `/app.js` (its
//! rendering), `/client.js` (the reference protocol client, documented in
//! `proto/CLIENT.md`) and `/style.css`. Plain ES modules: no build step, and
//! nothing is loaded from the internet.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// Only this origin's scripts, styles, images, media and sockets: a message
/// can never bring in code, and the page talks to nothing else.
const CSP: &str = "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; \
                   connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

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
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
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
