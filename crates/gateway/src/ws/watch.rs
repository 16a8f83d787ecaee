//! Presence between users: `watch` / `unwatch` and `typing`. Nothing here
//! is stored.

use chat_broker::{channel, envelope};
use chat_protocol::{ErrorCode, ServerFrame, validate_user};

use super::session::{Flow, Session};

impl Session {
    /// Follows users' online state: their current state now, changes later.
    pub(crate) async fn on_watch(&mut self, id: Option<String>, users: Vec<String>) -> Flow {
        if let Some(bad) = users.iter().find(|u| validate_user(u).is_err()) {
            let bad = bad.chars().take(40).collect::<String>();
            return self.reply_error(
                id.as_deref(),
                ErrorCode::InvalidName,
                &format!("cannot watch '{bad}'"),
            );
        }
        let limit = self.gw.settings.max_rooms;
        let new: std::collections::HashSet<&String> = users
            .iter()
            .filter(|u| !self.watching.contains(*u))
            .collect();
        if self.watching.len() + new.len() > limit {
            return self.reply_error(
                id.as_deref(),
                ErrorCode::TooManyRooms,
                &format!("a connection may watch at most {limit} users"),
            );
        }
        for user in users {
            if !self.watching.contains(&user) {
                if let Err(e) = self.registration.join(channel::watch(&user)).await {
                    return self.unavailable(id.as_deref(), &e);
                }
                self.watching.insert(user.clone());
            }
            // Subscribed first, then the state: a change in between is seen twice, never missed.
            match self.gw.store.presence(&user).await {
                Ok(p) => {
                    self.reply(&ServerFrame::Presence {
                        user,
                        online: p.online,
                        last_seen: p.last_seen,
                    });
                }
                Err(e) => return self.unavailable(id.as_deref(), &e),
            }
        }
        Flow::Continue
    }

    /// Stops following users.
    pub(crate) fn on_unwatch(&mut self, users: Vec<String>) -> Flow {
        for user in users {
            if self.watching.remove(&user) {
                self.registration.leave(&channel::watch(&user));
            }
        }
        Flow::Continue
    }

    /// Tells `to` this user is typing: published, not stored, not answered.
    pub(crate) async fn on_typing(&mut self, from: &str, to: &str) -> Flow {
        if let Err(e) = validate_user(to) {
            return self.reply_error(None, ErrorCode::InvalidName, &format!("to: {e}"));
        }
        let frame = ServerFrame::Typing {
            from: from.to_owned(),
        }
        .to_json();
        self.publish(&channel::user(to), envelope::text(&frame))
            .await
    }
}
