//! Tokens as identity providers issue them: every algorithm with the right
//! and the wrong key, expired and not yet valid, audience and issuer set or
//! not, extra claims, fractional `exp`, algorithm confusion; keys from a
//! PEM and from a JWKS that rotates and goes down. Each refusal says why.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::time::Duration;

use chat_auth::{Authenticator, JwksOptions, JwtKeys, Revocations, Verified};
use chat_testkit::identity::{JwksServer, TestKey, now, sign_hmac};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn claims(user: &str) -> Value {
    json!({"sub": user, "exp": now() + 300})
}

fn keys() -> JwtKeys {
    JwtKeys {
        leeway: Duration::from_secs(5),
        ..JwtKeys::default()
    }
}

async fn refusal(auth: &Authenticator, token: &str) -> String {
    match auth.verify(token).await {
        Ok(verified) => panic!("accepted: {verified:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_says(error: &str, why: &str) {
    assert!(error.contains(why), "'{error}' does not say '{why}'");
}

#[tokio::test]
async fn every_algorithm_verifies_with_its_key_and_fails_with_another() {
    for key in [
        TestKey::Rsa,
        TestKey::Ec256,
        TestKey::Ec384,
        TestKey::Ed25519,
    ] {
        let auth = Authenticator::jwt_with(JwtKeys {
            public_key_pem: Some(key.public_pem().into()),
            ..keys()
        })
        .unwrap();
        for &alg in key.algorithms() {
            let token = key.sign(alg, None, &claims("auth0|5f3c"));
            let verified = auth
                .verify(&token)
                .await
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(verified.user, "auth0|5f3c");
        }
        if key == TestKey::Rsa {
            // The right algorithm, someone else's key.
            let token = TestKey::RsaOther.sign(Algorithm::RS256, None, &claims("a"));
            assert_says(&refusal(&auth, &token).await, "bad signature");
        }
        // Another family's algorithm: refused before any signature check.
        let other = if key == TestKey::Ec256 {
            TestKey::Ed25519
        } else {
            TestKey::Ec256
        };
        let token = other.sign(other.algorithms()[0], None, &claims("a"));
        assert_says(&refusal(&auth, &token).await, "not accepted for this key");
    }
}

#[tokio::test]
async fn hmac_tokens_of_every_size_verify_with_the_shared_secret() {
    let auth = Authenticator::jwt(SECRET);
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign_hmac(SECRET, alg, &claims("alice@example.com"));
        assert_eq!(auth.verify(&token).await.unwrap().user, "alice@example.com");
        let forged = sign_hmac(b"another-secret-of-thirty-two-bytes", alg, &claims("a"));
        assert_says(&refusal(&auth, &forged).await, "bad signature");
    }
}

#[tokio::test]
async fn tokens_as_providers_issue_them_pass_and_each_refusal_says_why() {
    let auth = Authenticator::jwt(SECRET);
    let sign = |claims: Value| sign_hmac(SECRET, Algorithm::HS256, &claims);
    let t = now();
    // No iat, fractional exp, extra claims of every kind: taken.
    for ok in [
        json!({"sub": "u1", "exp": t + 60}),
        json!({"sub": "u1", "exp": (t + 60) as f64 + 0.5}),
        json!({"sub": "u1", "exp": t + 60, "iat": t, "nbf": t - 10, "aud": "any", "iss": "any",
               "scope": "openid", "email_verified": true, "roles": ["a"], "name": "Alice"}),
        json!({"sub": 12345, "exp": t + 60}),
    ] {
        assert!(auth.verify(&sign(ok.clone())).await.is_ok(), "{ok}");
    }
    for (claims, why) in [
        (json!({"sub": "u1", "exp": t - 60}), "expired"),
        (json!({"sub": "u1", "exp": t as f64 - 60.5}), "expired"),
        (
            json!({"sub": "u1", "exp": t + 60, "nbf": t + 60}),
            "not yet valid",
        ),
        (json!({"sub": "u1"}), "missing claim 'exp'"),
        (json!({"exp": t + 60}), "missing claim 'sub'"),
        (json!({"sub": "", "exp": t + 60}), "not a user id"),
        (json!({"sub": "a\nb", "exp": t + 60}), "not a user id"),
        (
            json!({"sub": {"id": 1}, "exp": t + 60}),
            "claim 'sub' has the wrong type",
        ),
        (json!({"sub": "u1", "exp": "soon"}), "exp"),
        (
            json!({"sub": "u1", "exp": t + 60, "nbf": "later"}),
            "claim 'nbf' has the wrong type",
        ),
    ] {
        assert_says(&refusal(&auth, &sign(claims.clone())).await, why);
    }
    // Within the leeway, still taken.
    assert!(
        auth.verify(&sign(json!({"sub": "u1", "exp": t - 2})))
            .await
            .is_ok()
    );
    // `none`, and what does not parse.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo0MTAyNDQ0ODAwfQ.";
    assert_says(
        &refusal(&auth, none).await,
        "algorithm 'none' is not accepted",
    );
    assert_says(&refusal(&auth, "not.a.token").await, "malformed");
    assert_says(&refusal(&auth, "").await, "malformed");
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_set() {
    let auth = Authenticator::jwt_with(JwtKeys {
        secret: Some(SECRET.to_vec()),
        audience: Some("chat".into()),
        issuer: Some("https://id.example.com/".into()),
        ..keys()
    })
    .unwrap();
    let sign = |claims: Value| sign_hmac(SECRET, Algorithm::HS256, &claims);
    let t = now() + 60;
    let iss = "https://id.example.com/";
    assert!(
        auth.verify(&sign(
            json!({"sub": "u", "exp": t, "aud": "chat", "iss": iss})
        ))
        .await
        .is_ok()
    );
    assert!(
        auth.verify(&sign(
            json!({"sub": "u", "exp": t, "aud": ["web", "chat"], "iss": iss})
        ))
        .await
        .is_ok(),
        "one of several audiences"
    );
    for (claims, why) in [
        (
            json!({"sub": "u", "exp": t, "aud": "web", "iss": iss}),
            "wrong audience",
        ),
        (
            json!({"sub": "u", "exp": t, "iss": iss}),
            "missing claim 'aud'",
        ),
        (
            json!({"sub": "u", "exp": t, "aud": "chat", "iss": "https://evil/"}),
            "wrong issuer",
        ),
        (
            json!({"sub": "u", "exp": t, "aud": "chat"}),
            "missing claim 'iss'",
        ),
    ] {
        assert_says(&refusal(&auth, &sign(claims.clone())).await, why);
    }
}

#[tokio::test]
async fn the_user_and_display_name_claims_are_configurable() {
    let auth = Authenticator::jwt_with(JwtKeys {
        secret: Some(SECRET.to_vec()),
        user_claim: "uid".into(),
        name_claim: "preferred_username".into(),
        ..keys()
    })
    .unwrap();
    let issued = now() - 5;
    let token = sign_hmac(
        SECRET,
        Algorithm::HS256,
        &json!({"sub": "ignored", "uid": "u-42", "preferred_username": "Alice Martin", "iat": issued, "exp": issued + 65}),
    );
    assert_eq!(
        auth.verify(&token).await.unwrap(),
        Verified {
            user: "u-42".into(),
            name: Some("Alice Martin".into()),
            issued_at: Some(issued),
        }
    );
}

/// An HS256 token signed with the RSA public key (as text) as its secret —
/// the classic algorithm confusion — verifies against nothing.
#[tokio::test]
async fn a_public_key_used_as_a_shared_secret_opens_nothing() {
    let pem = TestKey::Rsa.public_pem();
    let forged = sign_hmac(pem.as_bytes(), Algorithm::HS256, &claims("admin"));
    let public_only = Authenticator::jwt_with(JwtKeys {
        public_key_pem: Some(pem.into()),
        ..keys()
    })
    .unwrap();
    assert_says(
        &refusal(&public_only, &forged).await,
        "HS256 tokens are not accepted here",
    );
    let both = Authenticator::jwt_with(JwtKeys {
        secret: Some(SECRET.to_vec()),
        public_key_pem: Some(pem.into()),
        ..keys()
    })
    .unwrap();
    assert_says(&refusal(&both, &forged).await, "bad signature");
}

fn jwks_auth(server: &JwksServer, floor: Duration) -> Authenticator {
    jwks_auth_aged(server, floor, Duration::from_secs(600))
}

fn jwks_auth_aged(server: &JwksServer, floor: Duration, max_age: Duration) -> Authenticator {
    Authenticator::jwt_with(JwtKeys {
        jwks: Some(JwksOptions {
            url: server.url(),
            floor,
            max_age,
            timeout: Duration::from_secs(5),
        }),
        ..keys()
    })
    .unwrap()
}

#[tokio::test]
async fn keys_come_from_the_providers_jwks_by_key_id_and_follow_a_rotation() {
    let server = JwksServer::start(&[(TestKey::Rsa, "k1"), (TestKey::Ec256, "k2")])
        .await
        .unwrap();
    let auth = jwks_auth(&server, Duration::ZERO);
    let k1 = TestKey::Rsa.sign(Algorithm::RS256, Some("k1"), &claims("u"));
    let k2 = TestKey::Ec256.sign(Algorithm::ES256, Some("k2"), &claims("u"));
    assert!(auth.verify(&k1).await.is_ok());
    assert!(auth.verify(&k2).await.is_ok());
    assert_eq!(server.fetches(), 1, "fetched once, then cached");
    // A key named k1 that is not k1: its signature is wrong.
    let impostor = TestKey::RsaOther.sign(Algorithm::RS256, Some("k1"), &claims("u"));
    assert_says(&refusal(&auth, &impostor).await, "bad signature");
    // The provider rotates: a token with a new key id makes the set come again.
    server.rotate(&[(TestKey::RsaOther, "k3"), (TestKey::Ed25519, "k4")]);
    let k3 = TestKey::RsaOther.sign(Algorithm::PS256, Some("k3"), &claims("u"));
    assert!(auth.verify(&k3).await.is_ok());
    let k4 = TestKey::Ed25519.sign(Algorithm::EdDSA, Some("k4"), &claims("u"));
    assert!(auth.verify(&k4).await.is_ok());
    assert_eq!(server.fetches(), 2);
    let gone = TestKey::Rsa.sign(Algorithm::RS256, Some("k1"), &claims("u"));
    assert_says(&refusal(&auth, &gone).await, "unknown key 'k1'");
    // An ES256 token under an RSA key's id: refused by the key, not tried.
    let confused = TestKey::Ec256.sign(Algorithm::ES256, Some("k3"), &claims("u"));
    assert_says(
        &refusal(&auth, &confused).await,
        "not accepted for this key",
    );
}

#[tokio::test]
async fn made_up_key_ids_cannot_make_the_gateway_hammer_the_provider() {
    let server = JwksServer::start(&[(TestKey::Rsa, "k1")]).await.unwrap();
    let auth = jwks_auth(&server, Duration::from_secs(3600));
    for i in 0..20 {
        let kid = format!("made-up-{i}");
        let token = TestKey::Rsa.sign(Algorithm::RS256, Some(&kid), &claims("u"));
        assert_says(&refusal(&auth, &token).await, "unknown key");
    }
    assert_eq!(server.fetches(), 1, "one fetch within the floor");
}

#[tokio::test]
async fn while_the_provider_is_down_its_last_keys_are_used() {
    let server = JwksServer::start(&[(TestKey::Ec384, "k1")]).await.unwrap();
    let auth = jwks_auth(&server, Duration::ZERO);
    let token = TestKey::Ec384.sign(Algorithm::ES384, Some("k1"), &claims("u"));
    assert!(auth.verify(&token).await.is_ok());
    server.go_down();
    let unknown = TestKey::Ec384.sign(Algorithm::ES384, Some("k9"), &claims("u"));
    assert_says(&refusal(&auth, &unknown).await, "unknown key 'k9'");
    assert!(server.fetches() >= 2, "it tried");
    assert!(auth.verify(&token).await.is_ok(), "served stale");

    // Never reached at all: the refusal says so.
    let cold = jwks_auth(&server, Duration::ZERO);
    assert_says(&refusal(&cold, &token).await, "unavailable");
}

/// A set past its age is fetched again in the background: tokens signed
/// with a key it holds pass at once, even while the provider hangs.
#[tokio::test]
async fn a_hanging_provider_never_stalls_tokens_of_known_keys() {
    let server = JwksServer::start(&[(TestKey::Ec256, "k1")]).await.unwrap();
    let auth = jwks_auth_aged(&server, Duration::ZERO, Duration::ZERO);
    let token = TestKey::Ec256.sign(Algorithm::ES256, Some("k1"), &claims("u"));
    assert!(auth.verify(&token).await.is_ok());
    server.hang();
    for _ in 0..3 {
        let verified = tokio::time::timeout(Duration::from_secs(1), auth.verify(&token))
            .await
            .expect("answered without waiting for the provider");
        assert!(verified.is_ok());
    }
    // The background refresh did ask (and is still waiting for an answer).
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.fetches() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a refresh was started");
}

#[tokio::test]
async fn a_public_key_in_pem_is_taken_or_refused_with_what_it_is() {
    for key in TestKey::ALL {
        assert!(
            Authenticator::jwt_with(JwtKeys {
                public_key_pem: Some(key.public_pem().into()),
                ..keys()
            })
            .is_ok(),
            "{key:?}"
        );
    }
    for (pem, why) in [
        ("not pem", "not a PEM document"),
        (
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----",
            "expected a 'PUBLIC KEY'",
        ),
        (
            // RSA-1024: too short to sign with (RFC 7518 §3.3).
            "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCwcazegAyOB38o51XL007zAXzp\nx6JKHcL3atKLN+RU2DRwWo+/RLeiLkn6istXJMcCzfiaecJqlLfRCiE5Iqt4Tp1l\nEbCeo1bvA8yC5HGLdBhYZ17YcEoJplxWAtTO8W0bApWMcP1LP2WplhCLfcbMSCQT\nUflJ9WjQlXGZLw6h2wIDAQAB\n-----END PUBLIC KEY-----",
            "an RSA key of 1024 bits; at least 2048 are required",
        ),
        (
            // Any bytes under the RSA label: refused at start-up, not at
            // every token.
            "-----BEGIN RSA PUBLIC KEY-----\nAAECAwQF\n-----END RSA PUBLIC KEY-----",
            "not an RSA public key",
        ),
    ] {
        let error = Authenticator::jwt_with(JwtKeys {
            public_key_pem: Some(pem.into()),
            ..keys()
        })
        .err()
        .unwrap();
        assert!(error.contains(why), "{error}");
    }
}

#[tokio::test]
async fn a_public_key_and_a_jwks_together_are_refused() {
    let server = JwksServer::start(&[(TestKey::Rsa, "k1")]).await.unwrap();
    let error = Authenticator::jwt_with(JwtKeys {
        public_key_pem: Some(TestKey::Rsa.public_pem().into()),
        jwks: Some(JwksOptions {
            url: server.url(),
            floor: Duration::ZERO,
            max_age: Duration::from_secs(600),
            timeout: Duration::from_secs(5),
        }),
        ..keys()
    })
    .err()
    .unwrap();
    assert!(error.contains("both set: give one"), "{error}");
}

/// Revocations kept in memory, as a store would answer them.
struct RevokedAt(std::collections::HashMap<String, u64>);

impl Revocations for RevokedAt {
    fn revoked_before(
        &self,
        user: &str,
    ) -> futures_util::future::BoxFuture<'static, Result<Option<u64>, String>> {
        let answer = self.0.get(user).copied();
        Box::pin(async move { Ok(answer) })
    }
}

/// Once a user's tokens are revoked, a token issued before (or saying
/// nothing of when it was issued) is refused, a newer one passes, and
/// other users are not touched.
#[tokio::test]
async fn tokens_issued_before_a_revocation_are_refused() {
    let auth = Authenticator::jwt(SECRET);
    let revoked_at = (now() - 60) * 1000;
    let users = [("mallory".to_owned(), revoked_at)].into_iter().collect();
    auth.set_revocations(std::sync::Arc::new(RevokedAt(users)));
    let token = |sub: &str, iat: Option<u64>| {
        let mut claims = json!({"sub": sub, "exp": now() + 60});
        if let Some(iat) = iat {
            claims["iat"] = iat.into();
        }
        sign_hmac(SECRET, Algorithm::HS256, &claims)
    };
    // Issued before the revocation, or saying nothing of when, or in the
    // revoked second's start a millisecond too early.
    let second = revoked_at / 1000;
    for claims in [token("mallory", Some(now() - 120)), token("mallory", None)] {
        assert_says(&refusal(&auth, &claims).await, "revoked");
    }
    let edge = Authenticator::jwt(SECRET);
    let one_ms_later = [("mallory".to_owned(), second * 1000 + 1)]
        .into_iter()
        .collect();
    edge.set_revocations(std::sync::Arc::new(RevokedAt(one_ms_later)));
    assert_says(
        &refusal(&edge, &token("mallory", Some(second))).await,
        "revoked",
    );
    // A token whose second starts exactly at the revocation passes.
    assert_eq!(
        auth.verify(&token("mallory", Some(second)))
            .await
            .unwrap()
            .user,
        "mallory"
    );
    assert_eq!(
        auth.verify(&token("mallory", Some(now() - 30)))
            .await
            .unwrap()
            .user,
        "mallory"
    );
    assert_eq!(
        auth.verify(&token("alice", Some(now() - 120)))
            .await
            .unwrap()
            .user,
        "alice"
    );
}
