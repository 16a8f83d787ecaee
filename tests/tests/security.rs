//! The token matrix on every endpoint of a jwt-mode `chatd` (WebSocket,
//! presence, media), with a shared secret and with an identity provider's
//! JWKS: whatever is wrong with a token, the answer is 401 and nothing is
//! served. And whatever was tried, no secret and no token shows up in the
//! service's log.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location
#![allow(clippy::expect_used)] // a failed expect is a failed test, with its message

use chat_auth::Authenticator;
use chat_testkit::PNG_1X1;
use chat_testkit::identity::{JwksServer, TestKey};
use chat_testkit::process::Service;
use jsonwebtoken::Algorithm;
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
        (
            "not yet valid",
            Some(signed(
                alg,
                json!({"sub": "alice", "nbf": now() + 300, "exp": now() + 600}),
                SECRET,
            )),
        ),
        // Signed with the RSA key, which this chatd was not given.
        (
            "RS256 without a public key",
            Some(TestKey::Rsa.sign(Algorithm::RS256, None, &valid_claims)),
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
    // Every HMAC size, with claims as providers issue them.
    let claims = json!({"sub": "alice", "exp": now() as f64 + 300.5, "aud": "x", "scope": "a b"});
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let status = reqwest::Client::new()
            .get(format!("http://{}/api/v1/unread", chatd.addr()))
            .bearer_auth(signed(alg, claims.clone(), SECRET))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{alg:?}");
    }
    let good = Authenticator::jwt(SECRET.as_bytes())
        .mint("alice", None, Duration::from_secs(300))
        .unwrap();
    every_endpoint_takes_the_good_and_refuses_the_bad(&chatd, &good, bad_tokens()).await;
    let log = chatd.log();
    assert!(!log.contains(SECRET), "the jwt secret appears in the log");
    let media_secret =
        std::fs::read_to_string(data.path().join("media.secret")).unwrap_or_default();
    assert!(
        media_secret.trim().is_empty() || !log.contains(media_secret.trim()),
        "the media secret appears in the log"
    );
}

/// A `chatd` pointed at an identity provider's JWKS (with an audience)
/// takes tokens signed by each of its keys (RSA, ECDSA, EdDSA) and refuses
/// every other, on every endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatd_trusting_a_providers_keys_takes_their_tokens_and_refuses_the_rest() {
    let provider = JwksServer::start(&[
        (TestKey::Rsa, "rsa-1"),
        (TestKey::Ec256, "ec-1"),
        (TestKey::Ed25519, "ed-1"),
    ])
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let chatd = Service::start(
        "chatd",
        &[],
        &[
            ("CHAT_DATA_DIR", data.path().to_str().unwrap()),
            ("CHAT_AUTH", "jwt"),
            ("CHAT_JWKS_URL", &provider.url()),
            ("CHAT_JWT_AUDIENCE", "chat"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await
    .unwrap();
    let claims = |extra: Value| {
        let mut claims =
            json!({"sub": "alice", "aud": "chat", "exp": now() + 300, "name": "Alice"});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let good = [
        TestKey::Rsa.sign(Algorithm::RS256, Some("rsa-1"), &claims(json!({}))),
        TestKey::Rsa.sign(Algorithm::PS384, Some("rsa-1"), &claims(json!({}))),
        TestKey::Ec256.sign(Algorithm::ES256, Some("ec-1"), &claims(json!({}))),
        TestKey::Ed25519.sign(Algorithm::EdDSA, Some("ed-1"), &claims(json!({}))),
    ];
    let sign = |key: TestKey, alg, kid, extra| Some(key.sign(alg, Some(kid), &claims(extra)));
    let bad = vec![
        ("no token", None),
        (
            "expired",
            sign(
                TestKey::Rsa,
                Algorithm::RS256,
                "rsa-1",
                json!({"exp": now() - 300}),
            ),
        ),
        (
            "not yet valid",
            sign(
                TestKey::Ec256,
                Algorithm::ES256,
                "ec-1",
                json!({"nbf": now() + 300}),
            ),
        ),
        (
            "wrong audience",
            sign(
                TestKey::Rsa,
                Algorithm::RS256,
                "rsa-1",
                json!({"aud": "other"}),
            ),
        ),
        (
            "no audience",
            Some(TestKey::Ed25519.sign(
                Algorithm::EdDSA,
                Some("ed-1"),
                &json!({"sub": "alice", "exp": now() + 300}),
            )),
        ),
        (
            "unknown key",
            sign(TestKey::Rsa, Algorithm::RS256, "rsa-9", json!({})),
        ),
        (
            "a stranger's key under a known id",
            sign(TestKey::RsaOther, Algorithm::RS256, "rsa-1", json!({})),
        ),
        (
            "an EC token under an RSA key's id",
            sign(TestKey::Ec256, Algorithm::ES256, "rsa-1", json!({})),
        ),
        (
            "HS256, no secret configured",
            Some(signed(Algorithm::HS256, claims(json!({})), SECRET)),
        ),
        (
            "alg none",
            Some(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0."
                    .into(),
            ),
        ),
    ];
    for token in &good[1..] {
        let status = reqwest::Client::new()
            .get(format!("http://{}/api/v1/me", chatd.addr()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(status.status(), 200);
        let me: Value = status.json().await.unwrap();
        assert_eq!(me, json!({"user": "alice", "name": "Alice"}));
    }
    every_endpoint_takes_the_good_and_refuses_the_bad(&chatd, &good[0], bad).await;
    assert!(
        provider.fetches() <= 3,
        "a made-up key id cannot make chatd hammer the provider"
    );
}

/// Every endpoint answers 401 to each of `bad` (as a header and in the
/// query), and with `good` answers as it should (so the 401s were the
/// tokens' doing); no token shows up in the log.
async fn every_endpoint_takes_the_good_and_refuses_the_bad(
    chatd: &Service,
    good: &str,
    bad: Vec<(&'static str, Option<String>)>,
) {
    let base = format!("http://{}", chatd.addr());
    let client = reqwest::Client::new();
    let uploaded: Value = multipart(&client, &format!("{base}/api/v1/media"))
        .bearer_auth(good)
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
        ("GET", "/api/v1/me".to_owned()),
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
        for (what, token) in &bad {
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
        let status = request(method, path, Some(good), false)
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
    let status = request("GET", &format!("/api/v1/media/{media}"), Some(good), false)
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "deleted by the good token only");

    let log = chatd.log();
    assert!(log.contains("listening on"), "the log was captured");
    assert!(!log.contains(good), "a token appears in the log");
    for (what, token) in &bad {
        if let Some(token) = token.as_ref().filter(|t| t.len() > 20) {
            assert!(
                !log.contains(token.as_str()),
                "a {what} token appears in the log"
            );
        }
    }
}
