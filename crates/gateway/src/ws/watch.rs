//! Presence between users: `watch` / `unwatch` and `typing`. Nothing here
//! is stored.

use chat_broker::{channel, envelope};
use chat_protocol::{ErrorCode, ServerFrame};

use super::handler::{Ctx, Outcome};
use super::registration::Subscriptions;

/// Follows users' online state: their current state now, changes later.
/// A name given twice counts once.
pub(crate) async fn watch(
    ctx: &Ctx<'_>,
    subs: &mut Subscriptions,
    id: Option<String>,
    users: Vec<String>,
) -> Outcome {
    let id = id.as_deref();
    let mut ids = Vec::with_capacity(users.len());
    for user in &users {
        match ctx.gw.auth.user_names().id(user) {
            Ok(user) => ids.push(user),
            Err(e) => {
                let bad = user.chars().take(40).collect::<String>();
                return ctx.replies.error(
                    id,
                    ErrorCode::InvalidName,
                    &format!("cannot watch '{bad}': {e}"),
                );
            }
        }
    }
    let mut users = ids;
    let mut seen = std::collections::HashSet::new();
    users.retain(|u| seen.insert(u.clone()));
    let limit = ctx.gw.settings.max_watched;
    let new = users.iter().filter(|u| !subs.watching.contains(*u)).count();
    if subs.watching.len() + new > limit {
        return ctx.replies.error(
            id,
            ErrorCode::TooManyRooms,
            &format!("a connection may watch at most {limit} users"),
        );
    }
    for user in users {
        if !subs.watching.contains(&user) {
            if let Err(e) = subs.registration.join(channel::watch(&user)).await {
                return ctx.replies.unavailable(id, &e);
            }
            subs.watching.insert(user.clone());
        }
        // Subscribed first, then the state: a change in between is seen twice, never missed.
        match ctx.gw.presence.state(&user).await {
            Ok(p) => {
                ctx.replies.send(&ServerFrame::Presence {
                    user,
                    online: p.online,
                    last_seen: p.last_seen,
                });
            }
            Err(e) => return ctx.replies.unavailable(id, &e),
        }
    }
    Outcome::Continue
}

/// Stops following users (names that are none are ignored).
pub(crate) fn unwatch(ctx: &Ctx<'_>, subs: &mut Subscriptions, users: Vec<String>) -> Outcome {
    let names = ctx.gw.auth.user_names();
    for user in users.iter().filter_map(|u| names.id(u).ok()) {
        if subs.watching.remove(&user) {
            subs.registration.leave(&channel::watch(&user));
        }
    }
    Outcome::Continue
}

/// Tells `to` this user is typing: published, not stored, not answered.
pub(crate) async fn typing(ctx: &Ctx<'_>, to: &str) -> Outcome {
    let to = match ctx.user_id(to, "to", None) {
        Ok(to) => to,
        Err(outcome) => return outcome,
    };
    let frame = ServerFrame::Typing {
        from: ctx.user.to_owned(),
        room: None,
    }
    .to_json();
    match ctx
        .gw
        .hub
        .publish(&channel::user(&to), envelope::text(&frame))
        .await
    {
        Ok(()) => Outcome::Continue,
        Err(e) => ctx.replies.unavailable(None, &e),
    }
}
