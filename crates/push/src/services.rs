//! Which push services the server posts to. A subscription's endpoint is
//! a URL the browser got from its push service, but the server is told it
//! by a user: without a check, anyone could make the server post to any
//! address it reaches (an internal service, say). So endpoints must be on
//! a known push service: by default Google's (Chrome, Edge on Android),
//! Mozilla's, Apple's and Microsoft's.

/// The push services of the major browsers: a host, or a domain whose
/// subdomains are all push hosts (Windows' endpoints are per data centre).
pub const DEFAULT: &str =
    "fcm.googleapis.com,updates.push.services.mozilla.com,web.push.apple.com,notify.windows.com";

/// The hosts endpoints may be on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushServices(Vec<String>);

impl PushServices {
    /// Checks `list` names hosts only (no scheme, path, port or wildcard):
    /// what is wrong, else nothing.
    pub fn validate(list: &str) -> Result<(), String> {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        if entries.is_empty() {
            return Err("names no push service: pushes could go nowhere".into());
        }
        for entry in entries {
            let plain = entry.trim_start_matches('[').trim_end_matches(']');
            let host = plain.parse::<std::net::IpAddr>().is_ok()
                || entry.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !host {
                return Err(format!(
                    "'{entry}' is not a host name: list hosts or domains (fcm.googleapis.com), no scheme, path, port or wildcard"
                ));
            }
        }
        Ok(())
    }

    /// The services `list` names: hosts or domains, comma-separated.
    pub fn parse(list: &str) -> Self {
        Self(
            list.split(',')
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        )
    }

    /// Whether the server may post to `endpoint`: an `https` URL on one of
    /// the services (`http` only on a loopback host that is listed, for a
    /// push service stand-in in tests).
    ///
    /// Errors: why not, for the caller.
    pub fn check(&self, endpoint: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(endpoint).map_err(|e| format!("endpoint: not a URL: {e}"))?;
        let host = url
            .host_str()
            .ok_or("endpoint: no host")?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let listed = self
            .0
            .iter()
            .any(|service| host == service || host.ends_with(&format!(".{service}")));
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !listed {
            return Err(format!(
                "endpoint: '{host}' is not a known push service (CHAT_PUSH_SERVICES)"
            ));
        }
        match url.scheme() {
            // Push services listen on https's own port.
            "https" if url.port().is_none() || loopback => Ok(()),
            "https" => Err("endpoint: a push service is reached on port 443".into()),
            "http" if loopback => Ok(()),
            scheme => Err(format!(
                "endpoint: a push service is reached over https, not {scheme}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_push_services_over_https_are_posted_to() {
        let services = PushServices::parse(DEFAULT);
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc",
            "https://updates.push.services.mozilla.com/wpush/v2/abc",
            "https://web.push.apple.com/QGx",
            "https://wns2-par02p.notify.windows.com/w/?token=x",
        ] {
            assert!(services.check(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://fcm.googleapis.com.evil.example/x",
            "https://evilnotify.windows.com/x",
            "https://10.0.0.7/admin",
            "http://127.0.0.1:9000/push",
            "https://fcm.googleapis.com:6379/x",
            "ftp://fcm.googleapis.com/x",
            "not a url",
        ] {
            assert!(services.check(refused).is_err(), "{refused}");
        }
        let stand_in = PushServices::parse("127.0.0.1, ::1");
        assert!(stand_in.check("http://127.0.0.1:9000/push/1").is_ok());
        assert!(stand_in.check("http://[::1]:9000/push/1").is_ok());
        assert!(stand_in.check("http://127.0.0.2:9000/push/1").is_err());
    }
}
