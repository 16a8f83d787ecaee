//! What the integration with an application's backend keeps in the store,
//! on both engines: the server API's keys (made, found, listed in age
//! order, revoked once), token revocations, the webhooks' queue, and Web
//! Push subscriptions and settings.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::sync::Arc;

use chat_store::push::{MAX_SUBSCRIPTIONS, QUIET, mute_flag};
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::sqlite::SqliteStore;
use chat_store::{ApiKey, Limits, PushSubscription, StoreEngine};
use chat_testkit::redis::TestRedis;
use chat_testkit::redis_cluster::TestRedisCluster;

/// A store, and what must live as long as it.
struct Fixture {
    keys: Arc<dyn StoreEngine>,
    _redis: Option<TestRedis>,
    _dir: tempfile::TempDir,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_alone(&dir.path().join("messages.db"), Limits::DEFAULT)
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

/// The queue: events are taken once each (leased), come back when their
/// retry time comes or their lease runs out, counting attempts, however
/// many others wait; delivered or dead ones never come back, not even
/// through a late retry.
async fn the_webhook_queue_hands_each_event_to_one_taker_at_a_time(f: Fixture) {
    let now = chat_store::now_millis();
    let lease = 60_000;
    for n in 0..3 {
        f.keys
            .enqueue(&format!(r#"{{"type":"t","data":{{"n":{n}}}}}"#))
            .await
            .unwrap();
    }
    let first = f.keys.due("one", 2, now, lease).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|e| e.attempt == 1));
    let rest = f.keys.due("two", 10, now, lease).await.unwrap();
    assert_eq!(rest.len(), 1, "the first two are leased to one");
    assert!(rest[0].payload.contains(r#""n":2"#));
    assert!(f.keys.due("two", 10, now, lease).await.unwrap().is_empty());

    // A retry whose time has come, behind many that have not.
    f.keys.retry(&first[0].id, now + 1).await.unwrap();
    let again = f.keys.due("two", 10, now + 2, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].attempt),
        (first[0].id.as_str(), 2)
    );
    f.keys.delivered(&first[0].id).await.unwrap();
    f.keys.retry(&first[0].id, now + 3).await.unwrap(); // late, from a slow sender
    f.keys.dead(&rest[0].id).await.unwrap();

    // Past every lease: only the event whose taker went quiet is left.
    let late = f
        .keys
        .due("three", 10, now + 2 * lease, lease)
        .await
        .unwrap();
    let ids: Vec<&str> = late.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [first[1].id.as_str()]);
    assert_eq!(late[0].attempt, 2);
    f.keys.delivered(&first[1].id).await.unwrap();
    assert!(
        f.keys
            .due("three", 10, now + 10 * lease, lease)
            .await
            .unwrap()
            .is_empty()
    );
}

fn subscription(n: u64) -> PushSubscription {
    PushSubscription {
        endpoint: format!("https://push.example/{n}"),
        p256dh: format!("key{n}"),
        auth: format!("auth{n}"),
        created_at: 1_000 + n,
    }
}

/// One subscription per endpoint (again: new keys), the newest
/// `MAX_SUBSCRIPTIONS` kept, each user's apart; flags set and cleared.
async fn push_subscriptions_are_kept_per_endpoint_and_bounded(f: Fixture) {
    let store = &f.keys;
    assert!(store.subscriptions("李雷").await.unwrap().is_empty());
    store.subscribe("李雷", subscription(1)).await.unwrap();
    let renewed = PushSubscription {
        p256dh: "fresh".into(),
        ..subscription(1)
    };
    store.subscribe("李雷", renewed.clone()).await.unwrap();
    assert_eq!(store.subscriptions("李雷").await.unwrap(), [renewed]);
    for n in 2..=(MAX_SUBSCRIPTIONS as u64 + 2) {
        store.subscribe("李雷", subscription(n)).await.unwrap();
    }
    let kept: Vec<String> = store
        .subscriptions("李雷")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.endpoint)
        .collect();
    let newest: Vec<String> = (3..=(MAX_SUBSCRIPTIONS as u64 + 2))
        .map(|n| subscription(n).endpoint)
        .collect();
    assert_eq!(kept, newest, "the oldest two went");
    assert!(store.subscriptions("bob").await.unwrap().is_empty());
    // A shared browser: its subscription is the last subscriber's.
    let shared = subscription(99);
    store.subscribe("bob", shared.clone()).await.unwrap();
    store.subscribe("carol", shared.clone()).await.unwrap();
    assert!(
        store.subscriptions("bob").await.unwrap().is_empty(),
        "taken by carol"
    );
    assert_eq!(
        store.subscriptions("carol").await.unwrap(),
        std::slice::from_ref(&shared)
    );
    assert!(!store.unsubscribe("bob", &shared.endpoint).await.unwrap());
    store.subscribe("bob", shared.clone()).await.unwrap();
    assert!(
        store.subscriptions("carol").await.unwrap().is_empty(),
        "and back"
    );
    assert!(store.unsubscribe("bob", &shared.endpoint).await.unwrap());
    assert!(store.unsubscribe("李雷", &newest[0]).await.unwrap());
    assert!(!store.unsubscribe("李雷", &newest[0]).await.unwrap());
    assert!(!store.unsubscribe("bob", &newest[1]).await.unwrap());
    assert_eq!(
        store.subscriptions("李雷").await.unwrap().len(),
        MAX_SUBSCRIPTIONS - 1
    );

    let muted = mute_flag("room:ops");
    store.set_push_flag("李雷", &muted, true).await.unwrap();
    store.set_push_flag("李雷", QUIET, true).await.unwrap();
    store.set_push_flag("李雷", QUIET, true).await.unwrap();
    assert_eq!(
        store.push_flags("李雷").await.unwrap(),
        ["mute:room:ops", "quiet"]
    );
    store.set_push_flag("李雷", QUIET, false).await.unwrap();
    assert_eq!(store.push_flags("李雷").await.unwrap(), [muted]);
    assert!(store.push_flags("bob").await.unwrap().is_empty());
}

/// A job is replaced by what it made, once: a second sender that took it
/// after the first's lease ran out queues nothing.
async fn a_job_is_replaced_by_what_it_made_once(f: Fixture) {
    let now = chat_store::now_millis();
    let lease = 1_000;
    f.keys
        .enqueue(r#"{"type":"direct.message","data":{}}"#)
        .await
        .unwrap();
    let job = f.keys.due("slow", 10, now, lease).await.unwrap().remove(0);
    // The slow sender's lease runs out; another takes the job and finishes.
    let again = f
        .keys
        .due("quick", 10, now + lease + 1, lease)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    let made = |who: &str| {
        vec![
            format!(r#"{{"type":"a","by":"{who}"}}"#),
            format!(r#"{{"type":"b","by":"{who}"}}"#),
        ]
    };
    assert!(f.keys.replace(&again[0].id, made("quick")).await.unwrap());
    assert!(
        !f.keys.replace(&job.id, made("slow")).await.unwrap(),
        "the slow sender finds it done"
    );
    let queued = f
        .keys
        .due("next", 10, now + 10 * lease, lease)
        .await
        .unwrap();
    let payloads: Vec<&str> = queued.iter().map(|q| q.payload.as_str()).collect();
    assert_eq!(
        payloads,
        [
            r#"{"type":"a","by":"quick"}"#,
            r#"{"type":"b","by":"quick"}"#
        ],
        "what the job made, once, and the job gone"
    );
}

chat_testkit::contract!(sqlite:
    keys_are_kept_listed_and_revoked_once,
    revocations_keep_the_latest_time_per_user,
    the_webhook_queue_hands_each_event_to_one_taker_at_a_time,
    push_subscriptions_are_kept_per_endpoint_and_bounded,
    a_job_is_replaced_by_what_it_made_once,
);
chat_testkit::contract!(redis:
    keys_are_kept_listed_and_revoked_once,
    revocations_keep_the_latest_time_per_user,
    the_webhook_queue_hands_each_event_to_one_taker_at_a_time,
    push_subscriptions_are_kept_per_endpoint_and_bounded,
    a_job_is_replaced_by_what_it_made_once,
);

/// The same on one Redis Cluster (three masters), each case under its own
/// prefix: the webhook queue's keys share one slot, a push subscription's
/// user hash and the endpoint index are written one after the other.
#[tokio::test]
async fn the_integration_stores_hold_on_a_redis_cluster() {
    let cluster = TestRedisCluster::start().unwrap();
    let f = || {
        let store = RedisStore::start(RedisStoreOptions {
            url: cluster.url(),
            prefix: chat_testkit::unique("test:"),
            limits: Limits::DEFAULT,
        })
        .unwrap();
        Fixture {
            keys: Arc::new(store),
            _redis: None,
            _dir: tempfile::tempdir().unwrap(),
        }
    };
    keys_are_kept_listed_and_revoked_once(f()).await;
    revocations_keep_the_latest_time_per_user(f()).await;
    the_webhook_queue_hands_each_event_to_one_taker_at_a_time(f()).await;
    push_subscriptions_are_kept_per_endpoint_and_bounded(f()).await;
    a_job_is_replaced_by_what_it_made_once(f()).await;
}
