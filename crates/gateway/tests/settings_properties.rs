//! Property tests of the settings parser: whatever value a setting is given
//! (here through the same figment layers a config file or the environment
//! feed), the gateway either takes it or refuses it with one line that names
//! the setting — it never panics and never starts with nonsense.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_gateway::GatewaySettings;
use chat_runtime::per_ip::TrustedProxies;
use chat_runtime::settings::{SharedSettings, env_name, extract};
use figment::Figment;
use figment::providers::{Format, Toml};
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "ping_interval",
    "idle_timeout",
    "max_frame_bytes",
    "rate_per_sec",
    "rate_burst",
    "rate_strikes",
    "outbound_queue",
    "max_rooms",
    "max_connections",
    "history_max",
    "offline_max",
    "presence_lease",
    "redis_prefix",
    "connects_per_ip_per_min",
    "trusted_proxies",
];

/// A TOML value of any kind, as a config file (or the environment, whose
/// values figment reads the same way) could hold it.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,24}".prop_map(|s| toml_string(&s)),
        prop::sample::select(vec![
            "\"15s\"",
            "\"0s\"",
            "\"1ms\"",
            "\"2h\"",
            "\"10.0.0.0/8\"",
            "\"-1\"",
            "[]",
            "{}"
        ])
        .prop_map(str::to_owned),
    ]
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_setting_value_is_taken_or_refused_by_name(key in prop::sample::select(KEYS.to_vec()), value in value()) {
        let document = format!("{key} = {value}\n");
        let figment = Figment::new().merge(Toml::string(&document));
        let loaded = extract::<GatewaySettings>(&figment)
            .and_then(|g| g.validate().map(|()| g))
            .and_then(|g| {
                let shared = extract::<SharedSettings>(&figment)?;
                shared.validate().map(|()| (g, shared))
            });
        match loaded {
            Ok((settings, shared)) => {
                // What was taken is usable.
                prop_assert!(settings.idle_timeout > settings.ping_interval);
                prop_assert!(settings.max_connections > 0 && settings.outbound_queue > 0);
                prop_assert!(TrustedProxies::parse(&shared.trusted_proxies).is_ok());
                prop_assert!(!shared.redis_prefix.contains(char::is_whitespace));
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!message.contains('\n'), "one line: {message}");
                if message.starts_with("invalid settings (from TOML") {
                    // A number TOML itself cannot hold: the file is refused,
                    // quoting the line.
                    prop_assert!(message.contains(key), "{message}");
                    return Ok(());
                }
                prop_assert!(message.starts_with("invalid setting CHAT_"), "{message}");
                // The refusal names this setting, or the one it must relate to.
                let named = message.contains(&env_name(key))
                    || (key == "ping_interval" && message.contains("CHAT_IDLE_TIMEOUT"));
                prop_assert!(named, "{key}: {message}");
            }
        }
    }

    #[test]
    fn any_proxy_list_is_parsed_or_refused(list in "[0-9a-f.:/, ]{0,40}") {
        let _ = TrustedProxies::parse(&list);
    }
}
