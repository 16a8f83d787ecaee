//! The direct-message writer: a connection of its own (rusqlite) to the
//! same database, written from a blocking thread with prepared statements.
//!
//! Why apart from sea-orm: a direct message takes about fourteen
//! statements (inbox rows, the counter, the history, the sender's copy and
//! client id). Through sqlx each is a round trip to its SQLite worker
//! thread, which capped the engine near 2 000 messages a second however
//! many shared a commit; here a statement is a call into SQLite. Every
//! write of the process still goes through the store's one writer lock, so
//! the two connections never write at once; reads keep sea-orm's pool and,
//! with WAL, never wait for the writer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::memory::MemoryPresence;
use crate::messages::{Appended, Direct, conversation};
use crate::{Limits, StoreError};

use super::{SENT_TRIM_EVERY, TRIM_EVERY};

/// What storing one message made: where it landed, and the frames to
/// publish (user, frame).
pub(super) type Stored = (Appended, Vec<(String, String)>);

/// The writer's connection, and its write counts.
pub(super) struct DirectWriter {
    state: Mutex<State>,
    /// Requests to the checkpointer's thread; dropped with the writer,
    /// which ends that thread.
    checkpointer: std::sync::mpsc::Sender<Truncate>,
}

/// The WAL's size (pages) at which the writer checkpoints itself, if the
/// checkpointer has fallen behind: 64 MiB of 4 KiB pages. SQLite's default
/// (1 000 pages) had the writer stop for a checkpoint every few hundred
/// messages, each copying back pages that the next commits dirtied again.
pub(super) const WAL_PAGES: u32 = 16_384;

/// How often the checkpointer copies the WAL's committed pages into the
/// database (SQLite's `PASSIVE` checkpoint, on a connection of its own).
/// Beside the writer, not in its commits: at 5 000 messages/s the writer's
/// own checkpoint (each time the WAL reached 64 MiB, about twice a second)
/// held one commit in fifty for 11–22 ms, the p99 of the whole run.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// What the writer thread owns.
struct State {
    conn: Connection,
    writes: Writes,
}

/// Writes counted per conversation (histories) and per sender (client
/// ids), so each is trimmed once a cycle of its own writes (histories:
/// [`history_trim_every`]; client ids: [`SENT_TRIM_EVERY`]). In memory: the one writer is
/// the only one counting. A count starts at a random point of its cycle
/// (from the message id's random part), so a count lost (to a restart, or
/// dropped when more than [`Writes::MAX`] are kept) still trims within one
/// cycle, and a name written once per loss is still trimmed once a cycle
/// on average.
#[derive(Default)]
struct Writes {
    counts: HashMap<Key, i64>,
    /// The counts moved by the transaction being written, to take back if
    /// it is rolled back.
    moved: Vec<Key>,
}

/// What a count is kept for: `(kind, a, b)`.
type Key = (&'static str, String, String);

impl Writes {
    const MAX: usize = 100_000;

    /// Counts one more write of `kind` for `(a, b)`, by message `id` (a
    /// ULID): whether it is time to trim, once `every` writes.
    fn due(&mut self, kind: &'static str, a: &str, b: &str, id: &str, every: i64) -> bool {
        if self.counts.len() >= Self::MAX {
            self.counts.clear();
        }
        let key: Key = (kind, a.to_owned(), b.to_owned());
        // The ULID's random part (an id that is none starts at 0).
        let random = ulid::Ulid::from_string(id).map_or(0, |u| u.random());
        let start = (random % every.max(1) as u128) as i64;
        let n = self.counts.entry(key.clone()).or_insert(start);
        *n += 1;
        self.moved.push(key);
        *n % every == 0
    }

    /// The transaction was committed: its counts stand.
    fn commit(&mut self) {
        self.moved.clear();
    }

    /// The transaction was rolled back: its counts are taken back, so a
    /// trim it was due is due again when the batch is written again.
    fn roll_back(&mut self) {
        self.roll_back_to(0);
    }

    /// The counts moved since the `mark`-th are taken back (a savepoint
    /// rolled back).
    fn roll_back_to(&mut self, mark: usize) {
        for key in self.moved.drain(mark.min(self.moved.len())..) {
            if let Some(n) = self.counts.get_mut(&key) {
                *n -= 1;
            }
        }
    }
}

/// What every message of a batch is stored with.
pub(super) struct Context<'a> {
    pub limits: Limits,
    pub presence: &'a MemoryPresence,
    /// Queue a `direct.message` job for a receiver with no connection.
    pub offline_events: bool,
}

impl DirectWriter {
    /// Opens the database at `path` (made and upgraded already), durable as
    /// the pool's connections are: WAL, every commit synced.
    ///
    /// Errors: [`StoreError::Unavailable`] when it cannot be opened.
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        let failed = |e: rusqlite::Error| StoreError::Unavailable(format!("opening SQLite: {e}"));
        let conn = Connection::open(path).map_err(failed)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(failed)?;
        conn.execute_batch(
            // A cache as large as a busy inbox index (pages read once stay):
            // SQLite's default of 2 MiB had the writer re-reading pages.
            &format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;
                 PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = {WAL_PAGES};"
            ),
        )
        .map_err(failed)?;
        conn.set_prepared_statement_cache_capacity(64);
        let checkpoints = Connection::open(path).map_err(failed)?;
        // A `TRUNCATE` waits this long for readers to leave the log.
        checkpoints
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(failed)?;
        let (checkpointer, requests) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint(&checkpoints, &requests))
            .map_err(|e| StoreError::Unavailable(format!("starting the checkpointer: {e}")))?;
        Ok(Self {
            state: Mutex::new(State {
                conn,
                writes: Writes::default(),
            }),
            checkpointer,
        })
    }

    /// Copies the whole WAL into the database and empties it (SQLite's
    /// `TRUNCATE` checkpoint), on the checkpointer's connection, so it never
    /// meets a checkpoint of the checkpointer's own (SQLite runs one at a
    /// time, and answers a second `SQLITE_BUSY` at once): whether it
    /// completed (`false`: a reader still held the log after 5 s).
    ///
    /// Errors: the checkpointer has stopped, or SQLite's error.
    pub(super) async fn truncate_wal(&self) -> Result<bool, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.checkpointer
            .send(reply)
            .map_err(|_| "the checkpointer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the checkpointer has stopped".to_owned())?
    }

    /// Stores `messages` in one transaction: each one's outcome, once the
    /// transaction is committed. One that fails leaves the others whole:
    /// the batch is first written straight (the common case, with no
    /// statement spent on savepoints); if any message fails, that attempt
    /// is rolled back and the batch written again with each message in a
    /// savepoint of its own.
    ///
    /// Errors: the transaction could not be begun or committed (nothing of
    /// the batch is stored).
    pub(super) fn store_batch(
        &self,
        context: &Context<'_>,
        messages: &[&Direct],
    ) -> Result<Vec<Result<Stored, String>>, String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let State { conn, writes } = &mut *state;
        {
            let txn = conn.transaction().map_err(|e| e.to_string())?;
            let stored: rusqlite::Result<Vec<Stored>> = messages
                .iter()
                .map(|message| store(&txn, writes, context, message))
                .collect();
            if let Ok(stored) = stored {
                let committed = txn.commit().map_err(|e| e.to_string());
                if committed.is_err() {
                    writes.roll_back();
                }
                committed?;
                writes.commit();
                return Ok(stored.into_iter().map(Ok).collect());
            }
            // Dropped: rolled back.
            writes.roll_back();
        }
        let written = (|| {
            let mut txn = conn.transaction().map_err(|e| e.to_string())?;
            let mut outcomes = Vec::with_capacity(messages.len());
            for message in messages {
                let savepoint = txn.savepoint().map_err(|e| e.to_string())?;
                let mark = writes.moved.len();
                match store(&savepoint, writes, context, message) {
                    Ok(stored) => {
                        savepoint.commit().map_err(|e| e.to_string())?;
                        outcomes.push(Ok(stored));
                    }
                    // Dropped: rolled back to the savepoint.
                    Err(e) => {
                        writes.roll_back_to(mark);
                        outcomes.push(Err(e.to_string()));
                    }
                }
            }
            txn.commit().map_err(|e| e.to_string())?;
            Ok(outcomes)
        })();
        match written {
            Ok(_) => writes.commit(),
            Err(_) => writes.roll_back_to(0),
        }
        written
    }
}

/// A request for a `TRUNCATE` checkpoint, and where its outcome goes.
type Truncate = tokio::sync::oneshot::Sender<Result<bool, String>>;

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`], and runs the
/// `TRUNCATE`s asked of it, until its requests' sender is dropped.
/// `PASSIVE`: it copies what is committed and never waits for the writer
/// or a reader; pages a reader still needs wait for the next round. A
/// failure is the writer's to cover (it checkpoints itself past
/// [`WAL_PAGES`]).
fn checkpoint(conn: &Connection, requests: &std::sync::mpsc::Receiver<Truncate>) {
    use std::sync::mpsc::RecvTimeoutError;
    // The pragma's first column: 1 when it could not finish (SQLITE_BUSY).
    let run = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|busy| busy == 0)
        .map_err(|e| e.to_string())
    };
    loop {
        match requests.recv_timeout(CHECKPOINT_EVERY) {
            Ok(reply) => {
                let _ = reply.send(run("TRUNCATE"));
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = run("PASSIVE") {
                    tracing::debug!(error = %e, "WAL checkpoint");
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Stores one direct message (the rules of [`crate::MessageStore::append_direct`]).
fn store(
    txn: &Connection,
    writes: &mut Writes,
    context: &Context<'_>,
    message: &Direct,
) -> rusqlite::Result<Stored> {
    let limits = context.limits;
    let to_self = message.from == message.to;
    let copy = message.copy_to_sender && !to_self;
    let (a, b) = conversation(&message.from, &message.to);
    if let Some(client_id) = &message.client_id
        && let Some(first) = first_send(txn, &message.from, client_id)?
    {
        return Ok((first, Vec::new()));
    }
    let offline = !context.presence.is_online(&message.to);
    let (seq_r, frame_r) = append_inbox(txn, limits, &message.to, message, offline)?;
    let mut frames = vec![(message.to.clone(), frame_r)];
    if !to_self {
        let count: i64 = txn
            .prepare_cached(
                "INSERT INTO unread (receiver, sender, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (receiver, sender) DO UPDATE SET count = count + 1
                 RETURNING count",
            )?
            .query_row(params![message.to, message.from], |r| r.get(0))?;
        let counts = [(message.from.clone(), count.max(0) as u64)]
            .into_iter()
            .collect();
        let unread = chat_protocol::ServerFrame::Unread {
            counts,
            rooms: Default::default(),
        }
        .to_json();
        frames.push((message.to.clone(), unread));
    }
    txn.prepare_cached(
        "INSERT INTO history (a, b, message, id, sender, reply_to) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        a,
        b,
        message.history,
        message.id,
        message.from,
        message.reply_to.map(sql_int),
    ])?;
    let every = history_trim_every(limits.history_max);
    if writes.due("history", &a, &b, &message.id, every) {
        txn.prepare_cached(
            "DELETE FROM history WHERE a = ?1 AND b = ?2 AND pos <
               (SELECT pos FROM history WHERE a = ?1 AND b = ?2
                ORDER BY pos DESC LIMIT 1 OFFSET ?3)",
        )?
        .execute(params![a, b, sql_int(limits.history_max.saturating_sub(1))])?;
    }
    let mut seq_s = None;
    if copy {
        let (seq, frame_s) = append_inbox(txn, limits, &message.from, message, false)?;
        frames.push((message.from.clone(), frame_s));
        seq_s = Some(seq);
    }
    if context.offline_events
        && offline
        && !to_self
        && matches!(message.frame, crate::FrameText::Typed { .. })
    {
        let total: i64 = txn
            .prepare_cached("SELECT COALESCE(SUM(count), 0) FROM unread WHERE receiver = ?1")?
            .query_row(params![message.to], |r| r.get(0))?;
        let job = crate::webhooks::direct_message(&message.to, total.max(0) as u64, &frames[0].1);
        txn.prepare_cached("INSERT INTO webhooks (payload, queued_at) VALUES (?1, ?2)")?
            .execute(params![job, sql_int(crate::now_millis())])?;
    }
    let appended = Appended {
        receiver_seq: seq_r,
        sender_seq: seq_s,
        offline,
        repeated: None,
    };
    if let Some(client_id) = &message.client_id {
        txn.prepare_cached(
            "INSERT INTO sent (user, client_id, seq_r, seq_s, offline, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            message.from,
            client_id,
            sql_int(seq_r),
            sql_int(seq_s.unwrap_or(0)),
            i32::from(offline),
            message.history,
        ])?;
        if writes.due("sent", &message.from, "", &message.id, SENT_TRIM_EVERY) {
            txn.prepare_cached(
                "DELETE FROM sent WHERE user = ?1 AND rowid <
                   (SELECT rowid FROM sent WHERE user = ?1
                    ORDER BY rowid DESC LIMIT 1 OFFSET ?2)",
            )?
            .execute(params![
                message.from,
                sql_int(crate::messages::SENT_IDS_KEPT as u64 - 1)
            ])?;
        }
    }
    Ok((appended, frames))
}

/// How many writes of a conversation come between trims of its history:
/// a 16th of what it keeps, at least [`TRIM_EVERY`], at most 1 024. The
/// trim walks the kept entries to find where they begin (10 000 by
/// default), so it is spread over many writes; a history keeps up to a
/// 16th more than its limit meanwhile.
fn history_trim_every(history_max: u64) -> i64 {
    (history_max / 16).clamp(TRIM_EVERY as u64, 1024) as i64
}

/// A count as SQLite's integer.
fn sql_int(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// The sender's first send with this client id, if they made one.
fn first_send(txn: &Connection, user: &str, client_id: &str) -> rusqlite::Result<Option<Appended>> {
    txn.prepare_cached(
        "SELECT seq_r, seq_s, offline, message FROM sent WHERE user = ?1 AND client_id = ?2",
    )?
    .query_row(params![user, client_id], |r| {
        let seq_s: i64 = r.get(1)?;
        Ok(Appended {
            receiver_seq: r.get::<_, i64>(0)?.max(0) as u64,
            sender_seq: (seq_s > 0).then_some(seq_s as u64),
            offline: r.get::<_, i64>(2)? == 1,
            repeated: Some(r.get(3)?),
        })
    })
    .optional()
}

fn next_seq(txn: &Connection, user: &str) -> rusqlite::Result<u64> {
    let next: i64 = txn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM inbox WHERE user = ?1")?
        .query_row(params![user], |r| r.get(0))?;
    Ok(next.max(1) as u64)
}

/// Appends `message` to `user`'s inbox at its next `seq`: that seq and the
/// frame as delivered there.
fn append_inbox(
    txn: &Connection,
    limits: Limits,
    user: &str,
    message: &Direct,
    offline: bool,
) -> rusqlite::Result<(u64, String)> {
    let seq = next_seq(txn, user)?;
    let frame = message.frame.render(seq);
    insert_inbox(txn, limits, user, seq, &frame, offline, &message.id)?;
    Ok((seq, frame))
}

/// Inserts message `id`'s inbox entry at `seq` and keeps the inbox to
/// `limits`: its offline list exactly, its length every [`TRIM_EVERY`]
/// entries.
fn insert_inbox(
    txn: &Connection,
    limits: Limits,
    user: &str,
    seq: u64,
    frame: &str,
    offline: bool,
    id: &str,
) -> rusqlite::Result<()> {
    txn.prepare_cached(
        "INSERT INTO inbox (user, seq, frame, offline, message_id, update_of)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
    )?
    .execute(params![user, sql_int(seq), frame, i32::from(offline), id])?;
    // Every TRIM_EVERY entries, the ones before the last `history_max` go
    // together: their rows and index entries sit side by side, so a trim of
    // 32 writes a few pages where one row a message wrote three each.
    if seq > limits.history_max && seq.is_multiple_of(TRIM_EVERY as u64) {
        txn.prepare_cached("DELETE FROM inbox WHERE user = ?1 AND seq <= ?2")?
            .execute(params![user, sql_int(seq - limits.history_max)])?;
    }
    if offline {
        // Only the newest `offline_max` stay on the offline list (they stay
        // in the inbox, for sync).
        txn.prepare_cached(
            "UPDATE inbox SET offline = 0 WHERE user = ?1 AND offline = 1 AND seq <
               (SELECT seq FROM inbox WHERE user = ?1 AND offline = 1
                ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![user, sql_int(limits.offline_max.saturating_sub(1))])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> String {
        ulid::Ulid::new().to_string()
    }

    /// Writes of one name until its trim is due.
    fn writes_until_due(writes: &mut Writes) -> i64 {
        (1..=TRIM_EVERY * 2)
            .find(|_| writes.due("history", "a", "b", &id(), TRIM_EVERY))
            .unwrap_or(i64::MAX)
    }

    #[test]
    fn a_name_is_trimmed_every_trim_every_writes_from_wherever_it_starts() {
        let mut writes = Writes::default();
        assert!(writes_until_due(&mut writes) <= TRIM_EVERY);
        for _ in 0..3 {
            assert_eq!(writes_until_due(&mut writes), TRIM_EVERY);
        }
        // A count lost (a restart) still trims within one cycle.
        let mut restarted = Writes::default();
        assert!(writes_until_due(&mut restarted) <= TRIM_EVERY);
    }

    #[test]
    fn a_rolled_back_write_is_not_counted() {
        let mut writes = Writes::default();
        writes_until_due(&mut writes);
        writes.commit();
        for _ in 0..TRIM_EVERY - 1 {
            assert!(!writes.due("history", "a", "b", &id(), TRIM_EVERY));
        }
        writes.roll_back();
        // The trim due at the cycle's end is still due after the rollback.
        assert_eq!(writes_until_due(&mut writes), TRIM_EVERY);
    }

    #[test]
    fn a_history_is_trimmed_a_sixteenth_of_its_length_apart_within_bounds() {
        assert_eq!(history_trim_every(50), TRIM_EVERY);
        assert_eq!(history_trim_every(10_000), 625);
        assert_eq!(history_trim_every(1_000_000), 1024);
    }
}
