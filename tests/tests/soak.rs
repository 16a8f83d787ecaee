//! The soak: two gateway processes sharing Redis, a few hundred users for a
//! while — idle ones reconnecting all the time to either gateway, active ones
//! in rooms of 50 sending room and direct messages — then an audit of what
//! was acked against what arrived. CI runs it for `CHAT_SOAK_SECONDS`
//! (default 10); the full soak is `CHAT_SOAK_SECONDS=60 cargo nextest run
//! -p chat-e2e soak`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::time::Duration;

use chat_load::mixed::{self, Mixed};
use chat_load::target::Target;
use chat_testkit::process::Service;
use chat_testkit::redis::TestRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_through_two_gateways_loses_and_duplicates_nothing() {
    let seconds: u64 = std::env::var("CHAT_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let redis = TestRedis::start().unwrap();
    let secret = "a-soak-secret-of-at-least-32-bytes!";
    let env = [
        ("REDIS_URL", redis.url()),
        ("CHAT_REDIS_PREFIX", redis.prefix()),
        ("CHAT_JWT_SECRET", secret),
        // 400 users and 20 reconnects a second, all from 127.0.0.1.
        ("CHAT_CONNECTS_PER_IP_PER_MIN", "0"),
    ];
    let one = Service::start("gateway", &[], &env).await.unwrap();
    let two = Service::start("gateway", &[], &env).await.unwrap();
    let targets = [
        Target::new(one.addr(), 0, Some(secret)).unwrap(),
        Target::new(two.addr(), 0, Some(secret)).unwrap(),
    ];
    let spec = Mixed {
        idle: 300,
        active: 100,
        room_size: 50,
        room_rate: 1.0,
        dm_rate: 2.0,
        churn: 20.0,
        roaming: 20,
        roam_churn: 5.0,
        duration: Duration::from_secs(seconds),
    };
    let report = mixed::run(&targets, spec).await.unwrap();
    println!("{}", report.render());
    let n = |key: &str| report.fields()[key].as_u64().unwrap_or(u64::MAX);
    // 100 active users send 2 direct messages a second, about half of them
    // to the roaming receivers: ≈ 200 a second in all.
    assert!(
        n("dm_acked") + n("roam_acked") > seconds * 150,
        "the soak sent too little to mean anything"
    );
    assert_eq!(n("dm_lost"), 0, "acked direct messages that never arrived");
    assert_eq!(n("dm_duplicates"), 0, "direct messages delivered twice");
    assert_eq!(n("dm_delivered"), n("dm_acked"));
    assert_eq!(
        n("room_delivered"),
        n("room_expected"),
        "room deliveries missing"
    );
    assert_eq!(n("refused"), 0, "sends answered with an error");
    assert_eq!(n("reconnects_failed"), 0, "reconnects that failed");
    assert!(
        n("reconnects") >= seconds * 10,
        "too few reconnects for a soak"
    );
}
