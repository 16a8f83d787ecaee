//! `POST /api/v1/media`: a streamed upload.

use std::io::{self, IoSlice, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::db::{self, MediaRecord};
use crate::sniff::{self, Kind};
use crate::{Inner, MediaError, api, thumbnail};

/// How much past the limit is read (and dropped) so the client, still
/// sending, can read a clean 413 instead of a reset connection; a client
/// that stops sending meanwhile is waited for no longer than the idle
/// timeout.
const DRAIN_PAST_LIMIT: u64 = 64 * 1024 * 1024;

/// Bytes gathered before each write to disk.
const WRITE_BATCH: usize = 256 * 1024;

/// Chunks gathered at most before each write (the kernel takes 1 024 at once).
const MAX_SLICES: usize = 512;

/// Bytes written between two early write-back flushes of a large file.
const WRITE_BACK_EVERY: u64 = 16 * 1024 * 1024;

/// Chunks in flight between the reading stage and each of the others.
const WRITE_QUEUE: usize = 64;

/// A file being written: removed when dropped unless kept.
struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the stream held.
struct Received {
    partial: Partial,
    size: u64,
    sha256: String,
    head: Vec<u8>,
}

/// The upload form: one field, `file` (others are read and ignored).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the request body; the handler streams it instead
pub(crate) struct UploadForm {
    /// The file's bytes. Its type is sniffed from them; a client-given type or name is ignored.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Uploads a file, streamed to disk while hashed; answers its metadata.
#[utoipa::path(
    post,
    path = "/api/v1/media",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "stored", body = crate::api::MediaView),
        (status = 400, description = "no `file` field, or a broken body", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 408, description = "the body stalled for longer than CHAT_MEDIA_IDLE_TIMEOUT; nothing kept", body = chat_runtime::error::ErrorBody),
        (status = 413, description = "over CHAT_MEDIA_MAX_BYTES; nothing kept", body = chat_runtime::error::ErrorBody),
        (status = 429, description = "over CHAT_UPLOADS_PER_IP_PER_MIN; see Retry-After", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "database or storage unavailable; nothing kept", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn upload(
    req: HttpRequest,
    payload: Multipart,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    let result = store(&req, payload, &media).await;
    if let Err(e) = &result {
        media
            .metrics
            .rejections
            .with_label_values(&[e.reason()])
            .inc();
    }
    result
}

async fn store(
    req: &HttpRequest,
    mut payload: Multipart,
    media: &Inner,
) -> Result<HttpResponse, MediaError> {
    let owner = media.auth.caller(req).await?.id;
    if let Some(ip) = media.proxies.client_ip(req) {
        media.upload_limit.check(ip).map_err(MediaError::TooMany)?;
    }
    let started = Instant::now();
    while let Some(field) = within(media.idle_timeout, payload.try_next())
        .await?
        .map_err(|e| MediaError::BadRequest(format!("multipart: {e}")))?
    {
        if field.name() != Some("file") {
            // Other fields are ignored, but read, so the stream moves on.
            drain(field, media.idle_timeout).await?;
            continue;
        }
        let id = ulid::Ulid::new().to_string();
        let received = receive(media, &id, field).await?;
        let (kind, mime) = sniff::sniff(&received.head);
        // Removed with the file unless the upload completes.
        let mut thumb = Partial {
            path: media.dir.join(format!("{id}.thumb")),
            kept: false,
        };
        let picture = if kind == Kind::Image {
            thumbnail::make(received.partial.path.clone(), thumb.path.clone()).await
        } else {
            None
        };
        let final_path = media.dir.join(&id);
        let mut partial = received.partial;
        tokio::fs::rename(&partial.path, &final_path).await?;
        partial.path = final_path;
        let record = MediaRecord {
            id: id.clone(),
            owner: owner.clone(),
            kind: kind.as_str().to_owned(),
            mime,
            size: received.size,
            sha256: received.sha256,
            width: picture.map(|p| p.width),
            height: picture.map(|p| p.height),
            thumbnail: picture.is_some_and(|p| p.thumbnail),
            over_pixel_limit: picture.is_some_and(|p| p.over_pixel_limit),
            created_at: ulid::Ulid::from_string(&id).map_or(0, |u| u.timestamp_ms()),
        };
        // If the metadata cannot be stored, the files go too: no orphans.
        db::insert(&media.db, &record).await?;
        partial.kept = true;
        thumb.kept = true;
        media
            .metrics
            .uploads
            .with_label_values(&[kind.as_str()])
            .inc();
        media.metrics.bytes.inc_by(record.size);
        media
            .metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        return Ok(HttpResponse::Created().json(api::view(media, &record)));
    }
    Err(MediaError::BadRequest(
        "the multipart field 'file' is missing".into(),
    ))
}

/// Streams one field to a temporary file, hashing as it goes.
///
/// Three stages run side by side: this task reads the multipart stream (on
/// the server's async threads) and hands every chunk (a shared, reference-
/// counted buffer) to two blocking-pool threads, one hashing and one writing.
/// Their channels are bounded, so a slow disk slows the upload instead of
/// filling memory; on two cores, hashing beside the writing measured faster
/// than one thread doing both (docs/BENCHMARKS.md).
async fn receive(
    media: &Inner,
    id: &str,
    mut field: actix_multipart::Field,
) -> Result<Received, MediaError> {
    let partial = Partial {
        path: media.dir.join("tmp").join(id),
        kept: false,
    };
    let file = tokio::fs::File::create(&partial.path)
        .await?
        .into_std()
        .await;
    let (to_writer, writer_chunks) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let (to_hasher, hasher_chunks) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    // Set when the upload fails: the writer then drops what is left instead
    // of writing and flushing a file that is about to be removed.
    let abandoned = Arc::new(AtomicBool::new(false));
    let writer = {
        let abandoned = Arc::clone(&abandoned);
        tokio::task::spawn_blocking(move || write(file, writer_chunks, &abandoned))
    };
    let hasher = tokio::task::spawn_blocking(move || hash(hasher_chunks));
    let mut head = Vec::with_capacity(sniff::HEAD);
    let mut size: u64 = 0;
    let mut outcome = Ok(());
    loop {
        let chunk = match within(media.idle_timeout, field.try_next()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                outcome = Err(MediaError::BadRequest(format!("upload: {e}")));
                break;
            }
            Err(stalled) => {
                outcome = Err(stalled);
                break;
            }
        };
        size += chunk.len() as u64;
        if size > media.max_bytes {
            outcome = Err(MediaError::TooLarge(media.max_bytes));
            break;
        }
        if head.len() < sniff::HEAD {
            let take = (sniff::HEAD - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        if to_hasher.send(chunk.clone()).await.is_err() || to_writer.send(chunk).await.is_err() {
            break; // a stage stopped: its error is read below
        }
    }
    if outcome.is_err() {
        abandoned.store(true, Ordering::Relaxed);
    }
    drop((to_writer, to_hasher));
    let written = writer.await.map_err(io::Error::other)?;
    let sha256 = hasher.await.map_err(io::Error::other)?;
    // `partial` removes the file if anything went wrong.
    if let Err(MediaError::TooLarge(_)) = &outcome {
        drop(partial);
        drain_up_to(field, DRAIN_PAST_LIMIT, media.idle_timeout).await;
        return Err(MediaError::TooLarge(media.max_bytes));
    }
    outcome?;
    written?;
    Ok(Received {
        partial,
        size,
        sha256,
        head,
    })
}

/// The hashing stage: SHA-256 of every chunk, hex.
fn hash(mut chunks: mpsc::Receiver<Bytes>) -> String {
    let mut hasher = Sha256::new();
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
    }
    hex::encode(hasher.finalize())
}

/// The writing stage: every chunk to `file`, then flushed to disk.
///
/// Chunks are gathered to [`WRITE_BATCH`] and written with one vectored
/// call, straight from the request's buffers (no copy into a write buffer).
/// Large files get their write-back started while they still arrive: every
/// [`WRITE_BACK_EVERY`] bytes a helper thread flushes what is written so
/// far, so the final flush before the answer waits only for the tail
/// instead of the whole file.
fn write(
    file: std::fs::File,
    mut chunks: mpsc::Receiver<Bytes>,
    abandoned: &AtomicBool,
) -> io::Result<()> {
    std::thread::scope(|scope| {
        let mut write_back = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0usize;
        let mut written = 0u64;
        let mut flushed_at = 0u64;
        loop {
            let chunk = chunks.blocking_recv();
            if abandoned.load(Ordering::Relaxed) {
                return Ok(()); // the caller removes the file
            }
            let end = chunk.is_none();
            if let Some(chunk) = chunk {
                batched += chunk.len();
                batch.push(chunk);
            }
            if batched >= WRITE_BATCH || batch.len() >= MAX_SLICES || (end && batched > 0) {
                write_all(&file, &batch)?;
                written += batched as u64;
                batch.clear();
                batched = 0;
                if written - flushed_at >= WRITE_BACK_EVERY {
                    flushed_at = written;
                    write_back
                        .get_or_insert_with(|| WriteBack::start(scope, &file))
                        .request();
                }
            }
            if end {
                break;
            }
        }
        if let Some(write_back) = write_back {
            write_back.finish()?;
        }
        file.sync_data()
    })
}

/// Writes every byte of `chunks`, in as few calls as the kernel allows.
fn write_all(mut file: &std::fs::File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A thread that flushes a file while it is still being written.
struct WriteBack<'scope> {
    /// Holds one pending request; a request made while one is pending adds
    /// nothing (that flush will cover it).
    requests: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::ScopedJoinHandle<'scope, io::Result<()>>,
}

impl<'scope> WriteBack<'scope> {
    fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        file: &'env std::fs::File,
    ) -> Self {
        let (requests, pending) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = scope.spawn(move || {
            while pending.recv().is_ok() {
                file.sync_data()?;
            }
            Ok(())
        });
        WriteBack { requests, thread }
    }

    fn request(&self) {
        // Full: a flush is already queued. Disconnected: the thread stopped
        // on an error, which `finish` returns.
        let _ = self.requests.try_send(());
    }

    /// Waits for the flush in progress; its error, if any.
    fn finish(self) -> io::Result<()> {
        drop(self.requests);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("write-back thread panicked")))
    }
}

async fn drain(
    mut field: actix_multipart::Field,
    idle_timeout: std::time::Duration,
) -> Result<(), MediaError> {
    while within(idle_timeout, field.try_next())
        .await?
        .map_err(|e| MediaError::BadRequest(format!("multipart: {e}")))?
        .is_some()
    {}
    Ok(())
}

/// The next piece of a request body, or [`MediaError::Stalled`] when none
/// arrives within `idle_timeout`.
async fn within<T>(
    idle_timeout: std::time::Duration,
    next: impl std::future::Future<Output = T>,
) -> Result<T, MediaError> {
    tokio::time::timeout(idle_timeout, next)
        .await
        .map_err(|_| MediaError::Stalled(idle_timeout))
}

/// Reads and drops the rest of a refused field: until its end, `limit`
/// bytes, an error, or `idle_timeout` without a byte, whichever comes first.
async fn drain_up_to(
    mut field: actix_multipart::Field,
    limit: u64,
    idle_timeout: std::time::Duration,
) {
    let mut read = 0u64;
    while let Ok(Ok(Some(chunk))) = within(idle_timeout, field.try_next()).await {
        read += chunk.len() as u64;
        if read > limit {
            break;
        }
    }
}
