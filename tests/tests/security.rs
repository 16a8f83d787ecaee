//! The token matrix on every endpoint of a jwt-mode `chatd` (WebSocket,
//! presence, media): whatever is wrong with a token, the answer is 401 and
//! nothing is served. And whatever was tried, no secret and no token shows
//! up in the service's log.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_auth::Authenticator;
use chat_testkit::PNG_1X1;
use chat_testkit::process::Service;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "the-security-test-secret-32-bytes!";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed(alg: jsonwebtoken::Algorithm, claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Every way a token can be wrong, by name.
fn bad_tokens() -> Vec<(&'static str, Option<String>)> {
    let alg = jsonwebtoken::Algorithm::HS256;
    let valid_claims = json!({"sub": "alice", "iat": now(), "exp": now() + 300});
    vec![
        ("no token", None),
        ("not a jwt", Some("not.a.token".into())),
        (
            "another secret",
            Some(signed(
                alg,
                valid_claims.clone(),
                "some-other-secret-also-32-bytes!!",
            )),
        ),
        (
            "expired",
            Some(signed(
                alg,
                json!({"sub": "alice", "iat": now() - 600, "exp": now() - 300}),
                SECRET,
            )),
        ),
        (
            "no exp",
            Some(signed(alg, json!({"sub": "alice", "iat": now()}), SECRET)),
        ),
        (
            "no sub",
            Some(signed(
                alg,
                json!({"iat": now(), "exp": now() + 300}),
                SECRET,
            )),
        ),
        // The right secret under another algorithm: only HS256 is accepted.
        (
            "HS384",
            Some(signed(
                jsonwebtoken::Algorithm::HS384,
                valid_claims.clone(),
                SECRET,
            )),
        ),
        (
            "HS512",
            Some(signed(jsonwebtoken::Algorithm::HS512, valid_claims, SECRET)),
        ),
        // An unsigned token: header {"alg":"none"}, claims for alice, no signature.
        (
            "alg none",
            Some(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0."
                    .into(),
            ),
        ),
    ]
}

fn multipart(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    let part = reqwest::multipart::Part::bytes(PNG_1X1.to_vec()).file_name("a.png");
    client
        .post(url)
        .multipart(reqwest::multipart::Form::new().part("file", part))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_every_bad_token_and_no_secret_is_logged() {
    let data = tempfile::tempdir().unwrap();
    let chatd = Service::start(
        "chatd",
        &[],
        &[
            ("CHAT_DATA_DIR", data.path().to_str().unwrap()),
            ("CHAT_AUTH", "jwt"),
            ("CHAT_JWT_SECRET", SECRET),
            ("RUST_LOG", "debug"),
        ],
    )
    .await
    .unwrap();
    let base = format!("http://{}", chatd.addr());
    let client = reqwest::Client::new();
    let good = Authenticator::jwt(SECRET.as_bytes())
        .mint("alice", Duration::from_secs(300))
        .unwrap();

    // With a good token everything works, so a 401 below is the token's doing.
    let uploaded: Value = multipart(&client, &format!("{base}/api/v1/media"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let media = uploaded["id"].as_str().expect("an upload id").to_owned();
    let endpoints = [
        ("GET", "/ws/alice/".to_owned()),
        ("GET", "/ws/".to_owned()),
        ("GET", "/api/v1/unread".to_owned()),
        ("POST", "/api/v1/read".to_owned()),
        ("GET", "/api/v1/presence/bob".to_owned()),
        ("GET", "/api/v1/conversations/bob/messages".to_owned()),
        ("POST", "/api/v1/media".to_owned()),
        ("GET", format!("/api/v1/media/{media}")),
        ("DELETE", format!("/api/v1/media/{media}")),
    ];
    let request = |method: &str, path: &str, token: Option<&str>, in_query: bool| {
        let mut url = format!("{base}{path}");
        if let (Some(token), true) = (token, in_query) {
            url.push_str(&format!("?token={token}"));
        }
        let mut request = match method {
            "POST" if path.ends_with("/media") => multipart(&client, &url),
            "POST" => client
                .post(&url)
                .json(&json!({"peer": "bob", "up_to": "01JDQZ7V8Y3M5T2K9W4XN6B1CE"})),
            "DELETE" => client.delete(&url),
            _ => client.get(&url),
        };
        if let (Some(token), false) = (token, in_query) {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for (method, path) in &endpoints {
        for (what, token) in bad_tokens() {
            for in_query in [false, true] {
                let response = request(method, path, token.as_deref(), in_query)
                    .await
                    .unwrap();
                assert_eq!(
                    response.status(),
                    401,
                    "{method} {path}, {what}{}",
                    if in_query { " (in the query)" } else { "" }
                );
            }
        }
    }
    // Nothing refused went through (the media is still there), and with the
    // good token every endpoint answers: the 401s were the tokens' doing.
    for (method, path) in &endpoints {
        let status = request(method, path, Some(&good), false)
            .await
            .unwrap()
            .status();
        // A read naming no message of the conversation is refused after
        // authentication, as not found.
        let not_found_read = path == "/api/v1/read" && status == 404;
        assert!(
            status.is_success() || status == 400 || not_found_read,
            "{method} {path} with a good token: {status}"
        );
    }
    let status = request("GET", &format!("/api/v1/media/{media}"), Some(&good), false)
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "deleted by the good token only");

    let log = chatd.log();
    assert!(log.contains("listening on"), "the log was captured");
    assert!(!log.contains(SECRET), "the jwt secret appears in the log");
    assert!(!log.contains(&good), "a token appears in the log");
    for (what, token) in bad_tokens() {
        if let Some(token) = token.filter(|t| t.len() > 20) {
            assert!(!log.contains(&token), "a {what} token appears in the log");
        }
    }
    let media_secret =
        std::fs::read_to_string(data.path().join("media.secret")).unwrap_or_default();
    assert!(
        media_secret.trim().is_empty() || !log.contains(media_secret.trim()),
        "the media secret appears in the log"
    );
}
