//! The server API's keys, kept by both engines: made, found, listed in
//! age order, revoked once (a second revocation keeps the first time).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::sync::Arc;

use bytes::Bytes;
use chat_broker::Broker;
use chat_broker::memory::MemoryBus;
use chat_store::memory::MemoryPresence;
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::sqlite::SqliteStore;
use chat_store::{ApiKey, Limits, StoreEngine};
use chat_testkit::redis::TestRedis;

/// A store, and what must live as long as it.
struct Fixture {
    keys: Arc<dyn StoreEngine>,
    _redis: Option<TestRedis>,
    _dir: tempfile::TempDir,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let broker: Arc<dyn Broker> = Arc::new(MemoryBus::new().node(Arc::new(|_: &str, _: Bytes| {})));
    let presence = MemoryPresence::new(Arc::clone(&broker));
    let store = SqliteStore::open(
        &dir.path().join("messages.db"),
        broker,
        presence,
        Limits::DEFAULT,
    )
    .await
    .unwrap();
    Fixture {
        keys: Arc::new(store),
        _redis: None,
        _dir: dir,
    }
}

async fn redis() -> Fixture {
    let redis = TestRedis::start().unwrap();
    let store = RedisStore::start(RedisStoreOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        limits: Limits::DEFAULT,
    })
    .unwrap();
    Fixture {
        keys: Arc::new(store),
        _redis: Some(redis),
        _dir: tempfile::tempdir().unwrap(),
    }
}

fn key(name: &str, created_at: u64) -> ApiKey {
    ApiKey {
        id: ulid::Ulid::new().to_string(),
        name: name.into(),
        scopes: vec!["publish".into(), "read".into()],
        secret_sha256: "ab".repeat(32),
        created_at,
        revoked_at: None,
    }
}

async fn keys_are_kept_listed_and_revoked_once(f: Fixture) {
    assert!(f.keys.keys().await.unwrap().is_empty());
    let (first, second) = (key("shop", 1_000), key("dashboard", 1_001));
    f.keys.create_key(first.clone()).await.unwrap();
    f.keys.create_key(second.clone()).await.unwrap();
    assert_eq!(f.keys.key(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(
        f.keys.key("01J00000000000000000000000").await.unwrap(),
        None
    );
    assert_eq!(
        f.keys.keys().await.unwrap(),
        [first.clone(), second.clone()],
        "oldest first"
    );

    let revoked = f.keys.revoke_key(&first.id, 2_000).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(2_000));
    let again = f.keys.revoke_key(&first.id, 3_000).await.unwrap().unwrap();
    assert_eq!(
        again.revoked_at,
        Some(2_000),
        "the first revocation's time stays"
    );
    assert_eq!(
        f.keys.key(&first.id).await.unwrap().unwrap().revoked_at,
        Some(2_000)
    );
    assert_eq!(
        f.keys
            .revoke_key("01J00000000000000000000000", 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        f.keys.key(&second.id).await.unwrap().unwrap().revoked_at,
        None
    );
}

/// A user's revocation time is kept, only ever moves later, and touches
/// no one else.
async fn revocations_keep_the_latest_time_per_user(f: Fixture) {
    assert_eq!(f.keys.revoked_before("mallory").await.unwrap(), None);
    f.keys.revoke_tokens("mallory", 5_000).await.unwrap();
    assert_eq!(f.keys.revoked_before("mallory").await.unwrap(), Some(5_000));
    f.keys.revoke_tokens("mallory", 4_000).await.unwrap();
    assert_eq!(
        f.keys.revoked_before("mallory").await.unwrap(),
        Some(5_000),
        "never earlier"
    );
    f.keys.revoke_tokens("mallory", 6_000).await.unwrap();
    assert_eq!(f.keys.revoked_before("mallory").await.unwrap(), Some(6_000));
    assert_eq!(f.keys.revoked_before("alice").await.unwrap(), None);
}

chat_testkit::contract!(sqlite: keys_are_kept_listed_and_revoked_once, revocations_keep_the_latest_time_per_user);
chat_testkit::contract!(redis: keys_are_kept_listed_and_revoked_once, revocations_keep_the_latest_time_per_user);
