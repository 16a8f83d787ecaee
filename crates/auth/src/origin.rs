//! The `Origin` check on WebSocket upgrades (cross-site WebSocket hijacking).
//!
//! Browsers always send `Origin` on a WebSocket handshake and let any page
//! open one to any host, with the user's cookies. So a handshake that carries
//! an `Origin` must come from an allowed page. Handshakes without `Origin`
//! come from programs, not from a page a victim visits, and pass (in jwt mode
//! they still need a token).

use actix_web::HttpRequest;

use crate::AuthError;

/// Which browser origins may open WebSockets.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Allowed origins, lowercased, like `https://chat.example.com`.
    allowed: Vec<String>,
    /// `*`: any origin.
    any: bool,
}

impl OriginPolicy {
    /// Parses `CHAT_ALLOWED_ORIGINS`: comma-separated `scheme://host[:port]`,
    /// or `*`. Empty means same-origin only.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                policy.any = true;
                continue;
            }
            let origin = item.trim_end_matches('/').to_ascii_lowercase();
            let ok = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            match ok {
                Some(host) if !host.is_empty() && !host.contains('/') => {
                    policy.allowed.push(origin)
                }
                _ => {
                    return Err(format!(
                        "'{item}' is not an origin like https://chat.example.com"
                    ));
                }
            }
        }
        Ok(policy)
    }

    /// Allows the handshake, or says whose page it came from.
    pub fn check(&self, req: &HttpRequest) -> Result<(), AuthError> {
        let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if self.any || self.allowed.contains(&origin) {
            return Ok(());
        }
        // Same origin: the page was served by the host the handshake is for.
        let host = req.connection_info().host().to_ascii_lowercase();
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if self.allowed.is_empty() && !origin_host.is_empty() && origin_host == host {
            return Ok(());
        }
        Err(AuthError::Origin(origin))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn request(origin: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::default().insert_header(("Host", "chat.local:8080"));
        if let Some(origin) = origin {
            req = req.insert_header(("Origin", origin));
        }
        req.to_http_request()
    }

    #[test]
    fn by_default_only_the_same_origin_and_non_browsers_pass() {
        let policy = OriginPolicy::parse("").unwrap();
        assert!(policy.check(&request(None)).is_ok());
        assert!(
            policy
                .check(&request(Some("http://chat.local:8080")))
                .is_ok()
        );
        assert!(
            policy
                .check(&request(Some("https://evil.example")))
                .is_err()
        );
        assert!(
            policy
                .check(&request(Some("http://chat.local:9999")))
                .is_err()
        );
    }

    #[test]
    fn a_list_allows_exactly_its_origins() {
        let policy =
            OriginPolicy::parse("https://app.example.com, http://localhost:3000/").unwrap();
        assert!(
            policy
                .check(&request(Some("https://app.example.com")))
                .is_ok()
        );
        assert!(
            policy
                .check(&request(Some("http://localhost:3000")))
                .is_ok()
        );
        assert!(
            policy
                .check(&request(Some("https://evil.example")))
                .is_err()
        );
        assert!(
            OriginPolicy::parse("*")
                .unwrap()
                .check(&request(Some("https://any.where")))
                .is_ok()
        );
        assert!(OriginPolicy::parse("ftp://x").is_err());
        assert!(OriginPolicy::parse("https://x/path").is_err());
    }
}
