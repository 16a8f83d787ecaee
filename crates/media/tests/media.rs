//! The media service over real HTTP, with real files on disk and SQLite or
//! PostgreSQL. `media/rfc9110.rs` holds the HTTP semantics (ranges, `HEAD`,
//! draining), `media/images.rs` how images are measured and thumbnailed.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::path::Path;
use std::sync::Arc;

use chat_auth::Authenticator;
use chat_media::{MediaService, MediaSettings};
use chat_runtime::observe::Observability;
use chat_runtime::settings::ServerSettings;
use chat_testkit::postgres::TestPostgres;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sha2::{Digest, Sha256};

struct Media {
    addr: String,
    dir: tempfile::TempDir,
    settings: MediaSettings,
    postgres: Option<TestPostgres>,
}

/// Which metadata database a scenario runs on.
#[derive(Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

async fn serve(dir: &Path, settings: &MediaSettings) -> String {
    let mut obs = Observability::new();
    let service = MediaService::build(
        settings,
        dir,
        Arc::new(Authenticator::open()),
        Default::default(),
        &mut obs,
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = ServerSettings {
        workers: 2,
        ..ServerSettings::default()
    };
    let metrics = chat_runtime::server::HttpMetrics::register(&obs.registry).unwrap();
    let http = chat_runtime::server::http_server(listener, &server, metrics, move |cfg| {
        service.configure(cfg);
        obs.configure(cfg);
    })
    .unwrap();
    tokio::spawn(http);
    addr
}

async fn start_with(db: Db, mut settings: MediaSettings) -> Media {
    let dir = tempfile::tempdir().unwrap();
    let postgres = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(TestPostgres::start().unwrap()),
    };
    settings.database_url = postgres.as_ref().map(TestPostgres::url);
    let addr = serve(dir.path(), &settings).await;
    Media {
        addr,
        dir,
        settings,
        postgres,
    }
}

async fn start(db: Db) -> Media {
    start_with(db, MediaSettings::default()).await
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg() -> Vec<u8> {
    let image = image::RgbImage::from_fn(40, 30, |x, _| image::Rgb([x as u8 * 4, 90, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// One second of 8 kHz, 8-bit mono PCM silence: a real, playable WAV.
fn wav() -> Vec<u8> {
    let samples = 8000u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + samples).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&samples.to_le_bytes());
    out.extend(std::iter::repeat_n(128u8, samples as usize));
    out
}

impl Media {
    async fn upload_as(
        &self,
        user: &str,
        bytes: Vec<u8>,
        name: &str,
        claimed: &str,
    ) -> reqwest::Response {
        let part = Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(claimed)
            .unwrap();
        reqwest::Client::new()
            .post(format!("http://{}/api/v1/media?user={user}", self.addr))
            .multipart(Form::new().text("caption", "ignored").part("file", part))
            .send()
            .await
            .unwrap()
    }

    async fn upload(&self, bytes: Vec<u8>, name: &str, claimed: &str) -> Value {
        let response = self.upload_as("alice", bytes, name, claimed).await;
        assert_eq!(response.status().as_u16(), 201);
        response.json().await.unwrap()
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        reqwest::get(format!("http://{}{url}", self.addr))
            .await
            .unwrap()
    }

    /// Checks that an upload is served as a sandboxed attachment (never run
    /// in the product's origin), byte for byte; the response's headers.
    async fn assert_served_as_attachment(
        &self,
        meta: &Value,
        bytes: &[u8],
    ) -> reqwest::header::HeaderMap {
        let response = self.get(meta["url"].as_str().unwrap()).await;
        let headers = response.headers().clone();
        let disposition = headers["content-disposition"].to_str().unwrap();
        assert!(disposition.starts_with("attachment"), "{disposition}");
        assert_eq!(
            headers["content-security-policy"],
            "sandbox; default-src 'none'"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(response.bytes().await.unwrap(), bytes, "the same bytes");
        headers
    }

    /// The stored bytes behind an upload answer's signed link.
    async fn fetch(&self, meta: &Value) -> Vec<u8> {
        let response = self.get(meta["url"].as_str().unwrap()).await;
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.unwrap().to_vec()
    }

    fn stored_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("media"))
            .unwrap()
            .chain(std::fs::read_dir(self.dir.path().join("media/tmp")).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "tmp")
            .collect();
        names.sort();
        names
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn an_uploaded_image_comes_back_byte_identical_with_its_metadata(db: Db) {
    let media = start(db).await;
    let bytes = png(64, 48);
    let meta = media.upload(bytes.clone(), "cat.png", "image/png").await;
    assert_eq!(meta["kind"], "image");
    assert_eq!(meta["mime"], "image/png");
    assert_eq!(meta["size"], bytes.len());
    assert_eq!(meta["sha256"], sha256(&bytes));
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(meta["owner"], "alice");

    let response = media.get(meta["url"].as_str().unwrap()).await;
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);

    let jpeg = jpeg();
    let meta = media
        .upload(jpeg.clone(), "photo", "application/octet-stream")
        .await;
    assert_eq!(
        (meta["kind"].as_str(), meta["mime"].as_str()),
        (Some("image"), Some("image/jpeg"))
    );
    assert_eq!(media.fetch(&meta).await, jpeg);
}

async fn audio_is_served_with_ranges_and_etags_for_seeking(db: Db) {
    let media = start(db).await;
    let bytes = wav();
    let meta = media.upload(bytes.clone(), "voice.wav", "text/plain").await;
    assert_eq!(meta["kind"], "audio", "sniffed, whatever the client claims");
    let url = format!("http://{}{}", media.addr, meta["url"].as_str().unwrap());
    let client = reqwest::Client::new();
    let part = client
        .get(&url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", bytes.len())
    );
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        bytes[100..200].to_vec()
    );

    let full = client.get(&url).send().await.unwrap();
    let etag = full.headers()["etag"].clone();
    assert_eq!(
        full.bytes().await.unwrap().to_vec(),
        bytes,
        "byte-identical"
    );
    let again = client
        .get(&url)
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
}

async fn a_disguised_upload_is_never_served_inline(db: Db) {
    let media = start(db).await;
    let html = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
        .to_vec();
    let meta = media
        .upload(html.clone(), "innocent.png", "image/png")
        .await;
    assert_eq!(meta["kind"], "file");
    assert_ne!(meta["mime"], "image/png");
    media.assert_served_as_attachment(&meta, &html).await;

    // An SVG is an image that can carry script: never inline either, even
    // when it says what it is.
    let svg =
        br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>"#
            .to_vec();
    let meta = media.upload(svg.clone(), "logo.svg", "image/svg+xml").await;
    assert_ne!(meta["kind"], "image", "{meta}");
    let headers = media.assert_served_as_attachment(&meta, &svg).await;
    assert_ne!(headers["content-type"], "image/svg+xml");
}

async fn an_oversized_upload_gets_413_and_leaves_nothing_behind(db: Db) {
    let settings = MediaSettings {
        media_max_bytes: 64 * 1024,
        ..MediaSettings::default()
    };
    let media = start_with(db, settings).await;
    let response = media
        .upload_as(
            "alice",
            vec![7u8; 200 * 1024],
            "big.bin",
            "application/octet-stream",
        )
        .await;
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_large");
    assert!(
        media.stored_files().is_empty(),
        "left behind: {:?}",
        media.stored_files()
    );
    // Right at the limit is fine.
    media
        .upload(vec![7u8; 64 * 1024], "edge.bin", "application/octet-stream")
        .await;
    assert_eq!(media.stored_files().len(), 1);
}

/// A slow-loris upload: a body that trickles in and then stalls is refused
/// with 408 once it has stalled for the idle timeout, and what arrived is
/// removed. A header block over actix-http's 128 KiB is refused (431)
/// before any handler runs.
async fn a_stalled_upload_gets_408_and_leaves_nothing_behind(db: Db) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let settings = MediaSettings {
        media_idle_timeout: std::time::Duration::from_millis(500),
        ..MediaSettings::default()
    };
    let media = start_with(db, settings).await;
    let mut socket = tokio::net::TcpStream::connect(&media.addr).await.unwrap();
    let head = "POST /api/v1/media?user=alice HTTP/1.1\r\nHost: media\r\n\
        Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 1000000\r\n\r\n\
        --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\n\
        Content-Type: application/octet-stream\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&[1u8; 4096]).await.unwrap();
    // … and nothing more. The server must answer on its own.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(chat_testkit::WAIT, socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer to a stalled upload");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");
    assert!(
        media.stored_files().is_empty(),
        "left behind: {:?}",
        media.stored_files()
    );

    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: media\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let mut socket = tokio::net::TcpStream::connect(&media.addr).await.unwrap();
    // The server may stop reading (and close) before the whole block is sent.
    let _ = socket.write_all(huge.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(chat_testkit::WAIT, socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "oversized headers: {answer:.80}"
    );
    // And the service carries on.
    media
        .upload(vec![3u8; 1000], "after.bin", "application/octet-stream")
        .await;
}

/// Uploads are counted per client address: past the allowance, 429 with
/// Retry-After and nothing stored.
async fn too_many_uploads_from_one_address_get_429(db: Db) {
    let settings = MediaSettings {
        uploads_per_ip_per_min: 2,
        ..MediaSettings::default()
    };
    let media = start_with(db, settings).await;
    for n in 0..2u8 {
        media
            .upload(vec![n; 100], "ok.bin", "application/octet-stream")
            .await;
    }
    let response = media
        .upload_as(
            "alice",
            vec![9u8; 100],
            "more.bin",
            "application/octet-stream",
        )
        .await;
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "30");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(media.stored_files().len(), 2, "{:?}", media.stored_files());
}

/// Ids that try to walk out of the storage folder reach no file: every one
/// is refused as not an id, with the secret and the database out of reach.
async fn path_tricks_in_ids_reach_no_file(db: Db) {
    let media = start(db).await;
    media
        .upload(vec![1u8; 10], "real.bin", "application/octet-stream")
        .await;
    let secret = std::fs::read(media.dir.path().join("media.secret")).unwrap_or_default();
    for path in [
        "/api/v1/media/..%2Fmedia.secret",
        "/api/v1/media/..%2Fmedia.secret/file",
        "/api/v1/media/..%2F..%2F..%2Fetc%2Fpasswd/file",
        "/api/v1/media/%2e%2e/file",
        "/api/v1/media/tmp/file",
        "/api/v1/media/..%5Cmedia.db/thumbnail",
        "/api/v1/media/01JDQZ7V8Y3M5T2K9W4XN6B1CE%00/file",
    ] {
        let response = reqwest::get(format!("http://{}{path}?user=alice", media.addr))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        assert!(matches!(status, 400 | 403 | 404), "{path}: {status}");
        assert!(
            secret.is_empty() || !body.windows(secret.len()).any(|w| w == secret.as_slice()),
            "{path} served the secret"
        );
        assert!(
            !body.starts_with(b"SQLite format"),
            "{path} served the database"
        );
    }
}

/// The metadata database goes away during uploads: each answers 503 and
/// leaves no file behind, readiness says not ready, and once the database is
/// back uploads work again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_database_an_upload_gets_503_and_leaves_nothing_behind() {
    let media = start(Db::Postgres).await;
    media
        .upload(vec![1u8; 1000], "before.bin", "application/octet-stream")
        .await;
    let before = media.stored_files();
    let postgres = media.postgres.as_ref().expect("a PostgreSQL database");

    postgres.cut_off().unwrap();
    let response = media
        .upload_as(
            "alice",
            vec![2u8; 200_000],
            "during.bin",
            "application/octet-stream",
        )
        .await;
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    assert_eq!(
        media.stored_files(),
        before,
        "no file of the refused upload"
    );
    let (status, _) = chat_testkit::http_get(&media.addr, "/readyz")
        .await
        .unwrap();
    assert_eq!(status, 503, "not ready without the database");

    postgres.restore().unwrap();
    chat_testkit::until_ready(&media.addr).await.unwrap();
    media
        .upload(vec![3u8; 1000], "after.bin", "application/octet-stream")
        .await;
    assert_eq!(media.stored_files().len(), before.len() + 1);
}

async fn twenty_concurrent_uploads_all_land_intact(db: Db) {
    let media = Arc::new(start(db).await);
    let uploads = (0..20u8).map(|i| {
        let media = Arc::clone(&media);
        tokio::spawn(async move {
            let bytes: Vec<u8> = (0..100_000u32)
                .map(|n| (n as u8).wrapping_mul(i + 1))
                .collect();
            let meta = media
                .upload(bytes.clone(), "f.bin", "application/octet-stream")
                .await;
            assert_eq!(meta["sha256"], sha256(&bytes));
            assert_eq!(media.fetch(&meta).await, bytes);
            meta["id"].as_str().unwrap().to_owned()
        })
    });
    let mut ids = Vec::new();
    for upload in uploads {
        ids.push(upload.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
}

async fn tampered_expired_or_missing_links_are_refused(db: Db) {
    let media = start(db).await;
    let meta = media.upload(png(8, 8), "a.png", "image/png").await;
    let other = media.upload(png(9, 9), "b.png", "image/png").await;
    let url = meta["url"].as_str().unwrap();
    let (path, query) = url.split_once('?').unwrap();
    let (exp, sig) = query.split_once('&').unwrap();
    let exp: u64 = exp.trim_start_matches("exp=").parse().unwrap();
    let other_path = other["url"].as_str().unwrap().split_once('?').unwrap().0;
    let flipped = match sig.strip_suffix('0') {
        Some(rest) => format!("{rest}1"),
        None => format!("{}0", &sig[..sig.len() - 1]),
    };
    for bad in [
        format!("{path}?exp={exp}&{flipped}"),
        format!("{path}?exp={}&{sig}", exp + 3600),
        format!("{path}?exp=1&{sig}"),
        format!("{other_path}?{query}"),
        path.to_owned(),
    ] {
        let response = media.get(&bad).await;
        assert_eq!(response.status().as_u16(), 403, "{bad}");
    }
    assert_eq!(media.get(url).await.status().as_u16(), 200);
    assert_eq!(
        media
            .get("/media/..%2F..%2Fetc%2Fpasswd?exp=1&sig=00")
            .await
            .status()
            .as_u16(),
        403
    );
}

async fn metadata_for_signed_in_users_and_deletion_by_the_owner_only(db: Db) {
    let media = start(db).await;
    let meta = media.upload(png(10, 10), "a.png", "image/png").await;
    let id = meta["id"].as_str().unwrap();
    let client = reqwest::Client::new();
    let api = |user: &str| format!("http://{}/api/v1/media/{id}?user={user}", media.addr);
    let fetched: Value = client
        .get(api("bob"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (fetched["id"].as_str(), fetched["sha256"].as_str()),
        (Some(id), meta["sha256"].as_str())
    );
    assert_eq!(
        media
            .get(fetched["url"].as_str().unwrap())
            .await
            .status()
            .as_u16(),
        200,
        "a fresh link"
    );
    let anonymous = client
        .get(format!("http://{}/api/v1/media/{id}", media.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    assert_eq!(
        client
            .delete(api("bob"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        client
            .delete(api("alice"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    assert_eq!(
        client
            .get(api("alice"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        media
            .get(meta["url"].as_str().unwrap())
            .await
            .status()
            .as_u16(),
        404
    );
    assert!(media.stored_files().is_empty());
}

async fn files_and_links_survive_a_restart(db: Db) {
    let media = start(db).await;
    let bytes = png(20, 20);
    let meta = media.upload(bytes.clone(), "a.png", "image/png").await;
    let url = meta["url"].as_str().unwrap().to_owned();
    // A new service on the same data folder: what a restart finds
    // (the database, the files, and the link-signing secret).
    let restarted = serve(media.dir.path(), &media.settings).await;
    assert_eq!(
        reqwest::get(format!("http://{restarted}{url}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        bytes,
        "old links still work"
    );
    let id = meta["id"].as_str().unwrap();
    let api = format!("http://{restarted}/api/v1/media/{id}?user=bob");
    let fetched: Value = reqwest::get(api).await.unwrap().json().await.unwrap();
    assert_eq!(fetched["sha256"], meta["sha256"]);
}

async fn large_images_get_a_signed_thumbnail(db: Db) {
    let media = start(db).await;
    let big = media.upload(png(800, 400), "wide.png", "image/png").await;
    let thumb_url = big["thumbnail_url"].as_str().unwrap();
    let response = media.get(thumb_url).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let bytes = response.bytes().await.unwrap();
    let thumb = image::load_from_memory(&bytes).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 160));
    // The file's signature does not open its thumbnail, nor the reverse.
    let (path, query) = big["url"].as_str().unwrap().split_once('?').unwrap();
    assert_eq!(
        media
            .get(&format!("{path}/thumbnail?{query}"))
            .await
            .status()
            .as_u16(),
        403
    );
    let small = media.upload(png(16, 16), "icon.png", "image/png").await;
    assert!(small.get("thumbnail_url").is_none(), "small enough already");
}

async fn videos_are_recognised_and_come_back_intact(db: Db) {
    let media = start(db).await;
    let mut mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
    mp4.extend((0..50_000u32).map(|n| (n % 251) as u8));
    let mut webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm\x42\x87\x81\x04".to_vec();
    webm.extend((0..50_000u32).map(|n| (n % 241) as u8));
    for (bytes, mime) in [(mp4, "video/mp4"), (webm, "video/webm")] {
        let meta = media
            .upload(bytes.clone(), "clip", "application/octet-stream")
            .await;
        assert_eq!(
            (meta["kind"].as_str(), meta["mime"].as_str()),
            (Some("video"), Some(mime))
        );
        let response = media.get(meta["url"].as_str().unwrap()).await;
        assert_eq!(response.headers()["content-type"], mime);
        assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);
    }
}

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        /// Metadata in SQLite, the default.
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::$scenario(super::Db::Sqlite).await } )*
        }
        /// Metadata in PostgreSQL (`DATABASE_URL`).
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::$scenario(super::Db::Postgres).await } )*
        }
    };
}

suite!(
    a_stalled_upload_gets_408_and_leaves_nothing_behind,
    too_many_uploads_from_one_address_get_429,
    path_tricks_in_ids_reach_no_file,
    an_uploaded_image_comes_back_byte_identical_with_its_metadata,
    audio_is_served_with_ranges_and_etags_for_seeking,
    a_disguised_upload_is_never_served_inline,
    an_oversized_upload_gets_413_and_leaves_nothing_behind,
    twenty_concurrent_uploads_all_land_intact,
    tampered_expired_or_missing_links_are_refused,
    metadata_for_signed_in_users_and_deletion_by_the_owner_only,
    files_and_links_survive_a_restart,
    large_images_get_a_signed_thumbnail,
    videos_are_recognised_and_come_back_intact,
);

// In `media/`, beside this crate root, so cargo does not build them as tests of their own.
#[path = "media/images.rs"]
mod images;
#[path = "media/rfc9110.rs"]
mod rfc9110;

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/openapi/media.json");
    let generated = chat_media::openapi_json() + "\n";
    if std::env::var_os("UPDATE_PROTO").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date; run UPDATE_PROTO=1 cargo test -p chat-media",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_the_openapi_document_are_served() {
    let media = start(Db::Sqlite).await;
    media.upload(png(4, 4), "a.png", "image/png").await;
    let doc: Value = media
        .get("/api/v1/media/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/media"]["post"].is_object());
    assert_eq!(media.get("/healthz").await.status().as_u16(), 200);
    let ready = media.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 200);
    assert!(ready.text().await.unwrap().contains(r#""media":"ok""#));
    let metrics = media.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"chat_media_uploads_total{kind="image"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("chat_media_upload_bytes_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_storage_is_not_writable() {
    let media = start(Db::Sqlite).await;
    let tmp = media.dir.path().join("media/tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a folder").unwrap();
    let ready = media.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 503);
    assert!(ready.text().await.unwrap().contains("storage not writable"));
}

/// Incompressible bytes (an xorshift stream), like real photos and videos.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Files of tens of MiB are flushed to disk while they still arrive (a
/// helper thread, every 16 MiB): what lands must be exactly what was sent,
/// and an upload refused midway must leave nothing, whatever that thread
/// was doing when it was stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_flushed_while_they_arrive_land_intact_or_not_at_all() {
    let settings = MediaSettings {
        media_max_bytes: 48 * 1024 * 1024,
        ..MediaSettings::default()
    };
    let media = start_with(Db::Sqlite, settings).await;

    let bytes = noise(40 * 1024 * 1024 + 12_345, 1);
    let meta = media
        .upload(bytes.clone(), "clip.bin", "application/octet-stream")
        .await;
    assert_eq!(meta["size"], bytes.len());
    assert_eq!(meta["sha256"], sha256(&bytes));
    assert!(
        media.fetch(&meta).await == bytes,
        "the stored file differs from the upload"
    );
    assert_eq!(media.stored_files().len(), 1);

    // Over the limit after two early flushes: 413, and no partial file.
    let response = media
        .upload_as(
            "alice",
            noise(60 * 1024 * 1024, 2),
            "long.bin",
            "application/octet-stream",
        )
        .await;
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        media.stored_files(),
        vec![meta["id"].as_str().unwrap().to_owned()]
    );
}
