//! Media HTTP as RFC 9110 has it: byte ranges (§14) on files of every
//! length and on thumbnails, `If-Range` (§13.1.5), `HEAD` (§9.3.2) wherever
//! `GET` works, and a refused upload's body drained within the idle timeout.

#![allow(clippy::expect_used)] // a failed expect is a failed test, with its message

use super::*;

/// What a range request must get back, relative to the whole content.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 200 with the whole content, no `Content-Range` (the range ignored).
    Whole,
    /// 206 with bytes `first..=last` and `Content-Range: bytes first-last/length`.
    Part(usize, usize),
    /// 416 Range Not Satisfiable with `Content-Range: bytes */length`.
    NotSatisfiable,
}

/// An `If-Range` validator for a row.
#[derive(Clone, Copy, Debug)]
enum IfRange {
    /// The representation's own `ETag`.
    SameEtag,
    /// The weak form of its `ETag` (never matches: §13.1.5 compares strongly).
    WeakEtag,
    /// Another entity's tag.
    OtherEtag,
    /// Its `Last-Modified` date (a strong validator: files never change).
    SameDate,
    /// A date it does not carry.
    OtherDate,
}

/// The table of range requests for content of `length` bytes (`None`: no
/// `Range` header).
fn rows(length: usize) -> Vec<(Option<String>, Option<IfRange>, Expect)> {
    use Expect::*;
    let last = length.saturating_sub(1);
    match length {
        // An empty file carries no validators (nothing to revalidate), so
        // no If-Range can match it: the range is then ignored.
        0 => vec![
            (None, None, Whole),
            (Some("bytes=0-".to_owned()), None, NotSatisfiable),
            (Some("bytes=0-0".to_owned()), None, NotSatisfiable),
            // The example: a 206 with `bytes 0-18446744073709551615/0` before.
            (Some("bytes=-5".to_owned()), None, NotSatisfiable),
            (Some("bytes=-1".to_owned()), None, NotSatisfiable),
            (Some("bytes=0-1,-1".to_owned()), None, NotSatisfiable),
            (Some("bytes=abc".to_owned()), None, NotSatisfiable),
            (Some("bytes=-5".to_owned()), Some(IfRange::OtherEtag), Whole),
            (Some("bytes=-5".to_owned()), Some(IfRange::OtherDate), Whole),
            (Some("items=0-5".to_owned()), None, Whole),
        ],
        1 => vec![
            (None, None, Whole),
            (Some("bytes=0-0".to_owned()), None, Part(0, 0)),
            (Some("bytes=0-".to_owned()), None, Part(0, 0)),
            (Some("bytes=-1".to_owned()), None, Part(0, 0)),
            (Some("bytes=-5".to_owned()), None, Part(0, 0)),
            (Some("bytes=0-99".to_owned()), None, Part(0, 0)),
            (Some("bytes=1-".to_owned()), None, NotSatisfiable),
            (Some("bytes=-0".to_owned()), None, NotSatisfiable),
            (Some("bytes=5-9,0-0".to_owned()), None, Part(0, 0)),
            (
                Some("bytes=0-0".to_owned()),
                Some(IfRange::SameEtag),
                Part(0, 0),
            ),
            (Some("bytes=0-0".to_owned()), Some(IfRange::WeakEtag), Whole),
        ],
        _ => vec![
            (None, None, Whole),
            (Some("bytes=0-0".to_owned()), None, Part(0, 0)),
            (Some("bytes=0-".to_owned()), None, Part(0, last)),
            (Some("bytes=10-19".to_owned()), None, Part(10, 19)),
            (Some("bytes=10-".to_owned()), None, Part(10, last)),
            (Some("bytes=-10".to_owned()), None, Part(length - 10, last)),
            // A suffix longer than the content selects all of it (§14.1.3).
            (Some("bytes=-1000000".to_owned()), None, Part(0, last)),
            // A last-pos past the end is the end (§14.1.2).
            (Some("bytes=5-1000000".to_owned()), None, Part(5, last)),
            (Some(format!("bytes={last}-")), None, Part(last, last)),
            (Some(format!("bytes={length}-")), None, NotSatisfiable),
            (Some("bytes=20-10".to_owned()), None, NotSatisfiable),
            (Some("bytes=abc".to_owned()), None, NotSatisfiable),
            // Several ranges: the first satisfiable one, as one part (§15.3.7).
            (Some("bytes=0-1,5-6".to_owned()), None, Part(0, 1)),
            (Some("bytes=5-6,0-1".to_owned()), None, Part(5, 6)),
            (
                Some("bytes=1000000-2000000,5-6".to_owned()),
                None,
                Part(5, 6),
            ),
            (
                Some("bytes=1000000-,2000000-".to_owned()),
                None,
                NotSatisfiable,
            ),
            // An unknown range unit is ignored (§14.2).
            (Some("items=0-5".to_owned()), None, Whole),
            (
                Some("bytes=0-9".to_owned()),
                Some(IfRange::SameEtag),
                Part(0, 9),
            ),
            (Some("bytes=0-9".to_owned()), Some(IfRange::WeakEtag), Whole),
            (
                Some("bytes=0-9".to_owned()),
                Some(IfRange::OtherEtag),
                Whole,
            ),
            (
                Some("bytes=0-9".to_owned()),
                Some(IfRange::SameDate),
                Part(0, 9),
            ),
            (
                Some("bytes=0-9".to_owned()),
                Some(IfRange::OtherDate),
                Whole,
            ),
        ],
    }
}

/// Runs every row of [`rows`] against the signed link `url` whose whole
/// content is `whole`; `what` names the content in failures.
async fn check_ranges(media: &Media, url: &str, whole: &[u8], what: &str) {
    let client = reqwest::Client::new();
    let url = format!("http://{}{url}", media.addr);
    let plain = client.get(&url).send().await.unwrap();
    assert_eq!(plain.status().as_u16(), 200, "{what}");
    assert_eq!(plain.headers()["accept-ranges"], "bytes", "{what}");
    let validator = |name: &str| {
        plain
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (etag, date) = (validator("etag"), validator("last-modified"));
    assert_eq!(
        etag.is_some() && date.is_some(),
        !whole.is_empty(),
        "{what}: validators unless empty"
    );
    assert_eq!(plain.bytes().await.unwrap(), whole, "{what}");
    let length = whole.len();
    for (range, if_range, expect) in rows(length) {
        let row = format!("{what} ({length} bytes), Range {range:?}, If-Range {if_range:?}");
        let mut request = client.get(&url);
        if let Some(range) = &range {
            request = request.header("Range", range);
        }
        if let Some(validator) = if_range {
            let value = match validator {
                IfRange::SameEtag => etag.clone().unwrap(),
                IfRange::WeakEtag => format!("W/{}", etag.clone().unwrap()),
                IfRange::OtherEtag => "\"not-this-one\"".to_owned(),
                IfRange::SameDate => date.clone().unwrap(),
                IfRange::OtherDate => "Sat, 01 Jan 2000 00:00:00 GMT".to_owned(),
            };
            request = request.header("If-Range", value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        let content_range = headers
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_owned());
        let content_length = headers
            .get("content-length")
            .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
        match expect {
            Expect::Whole => {
                assert_eq!(status, 200, "{row}");
                assert_eq!(content_range, None, "{row}");
                assert_eq!(&body[..], whole, "{row}");
            }
            Expect::Part(first, last) => {
                assert_eq!(status, 206, "{row}");
                assert_eq!(
                    content_range.as_deref(),
                    Some(&*format!("bytes {first}-{last}/{length}")),
                    "{row}"
                );
                assert_eq!(&body[..], &whole[first..=last], "{row}");
            }
            Expect::NotSatisfiable => {
                assert_eq!(status, 416, "{row}");
                assert_eq!(
                    content_range.as_deref(),
                    Some(&*format!("bytes */{length}")),
                    "{row}"
                );
                assert!(body.is_empty(), "{row}");
            }
        }
        assert_eq!(content_length, Some(body.len()), "{row}: Content-Length");
    }
    // Preconditions come before the range (§13.2.2).
    for (name, value, status) in [
        ("If-Match", "\"not-this-one\"", 412),
        ("If-None-Match", "*", 304),
    ] {
        let response = client
            .get(&url)
            .header("Range", "bytes=0-")
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            status,
            "{what} ({length} bytes), {name}: {value}"
        );
    }
}

async fn range_requests_follow_rfc_9110_on_files_of_every_length_and_on_thumbnails(db: Db) {
    let media = start(db).await;
    for (bytes, what) in [
        (Vec::new(), "an empty file"),
        (vec![42u8], "a one-byte file"),
        (noise(100_000, 7), "a many-byte file"),
    ] {
        let meta = media
            .upload(bytes.clone(), "f.bin", "application/octet-stream")
            .await;
        assert_eq!(meta["size"], bytes.len(), "{what}");
        check_ranges(&media, meta["url"].as_str().unwrap(), &bytes, what).await;
    }
    let picture = media.upload(png(800, 400), "wide.png", "image/png").await;
    let thumb_url = picture["thumbnail_url"].as_str().unwrap();
    let thumb = media.get(thumb_url).await.bytes().await.unwrap().to_vec();
    assert!(thumb.starts_with(b"\x89PNG\r\n\x1a\n"));
    check_ranges(&media, thumb_url, &thumb, "a thumbnail").await;
}

/// A `HEAD` and then a `GET` of `path` on one keep-alive connection: the
/// head of each answer, and the body of the `GET`. Whatever a `HEAD` sent
/// after its head would come before the `GET`'s answer and be caught here.
/// (One request at a time: actix-http mixes up `HEAD` and `GET` answers
/// when requests are pipelined.)
async fn head_then_get(addr: &str, path: &str) -> (String, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// Reads up to the end of an answer's head; the head, and what followed.
    async fn read_head(socket: &mut tokio::net::TcpStream, path: &str) -> (String, Vec<u8>) {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buffer.split_off(end + 4);
                return (String::from_utf8(buffer).unwrap(), rest);
            }
            let read = tokio::time::timeout(chat_testkit::WAIT, socket.read(&mut chunk))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(
                read > 0,
                "{path}: closed before the end of an answer's head"
            );
            buffer.extend_from_slice(&chunk[..read]);
        }
    }
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = |method: &str, close: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: media\r\n{close}\r\n")
    };
    socket
        .write_all(request("HEAD", "").as_bytes())
        .await
        .unwrap();
    let (head, rest) = read_head(&mut socket, path).await;
    assert!(rest.is_empty(), "{path}: the HEAD answer carried content");
    socket
        .write_all(request("GET", "Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    let (get, mut body) = read_head(&mut socket, path).await;
    assert!(
        get.starts_with("HTTP/1.1 "),
        "{path}: bytes before the GET answer: {get:.200}"
    );
    tokio::time::timeout(chat_testkit::WAIT, socket.read_to_end(&mut body))
        .await
        .expect("the GET's body in time")
        .unwrap();
    (head, get, body)
}

/// The headers of one raw HTTP/1.1 answer, lower-cased names, without the
/// ones that differ between two answers by nature.
fn comparable_headers(answer: &str) -> (String, Vec<String>) {
    let head = answer.split("\r\n\r\n").next().unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let mut headers: Vec<String> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            format!("{}: {}", name.to_ascii_lowercase(), value.trim())
        })
        .filter(|h| !h.starts_with("date:") && !h.starts_with("connection:"))
        .collect();
    headers.sort();
    (status, headers)
}

async fn head_answers_what_get_would_without_the_content(db: Db) {
    let media = start(db).await;
    let file = media
        .upload(noise(300_000, 3), "clip.bin", "application/octet-stream")
        .await;
    let picture = media.upload(png(800, 400), "wide.png", "image/png").await;
    let id = picture["id"].as_str().unwrap();
    let (file_path, query) = file["url"].as_str().unwrap().split_once('?').unwrap();
    let paths = [
        file["url"].as_str().unwrap().to_owned(),
        picture["url"].as_str().unwrap().to_owned(),
        picture["thumbnail_url"].as_str().unwrap().to_owned(),
        format!("/api/v1/media/{id}?user=bob"),
        "/api/v1/media/openapi.json".to_owned(),
        // Refusals too: a tampered link, an unknown id, no credentials.
        format!("{file_path}?{}", query.replace("exp=", "exp=1")),
        "/api/v1/media/01JDQZ7V8Y3M5T2K9W4XN6B1CE?user=bob".to_owned(),
        format!("/api/v1/media/{id}"),
    ];
    for path in &paths {
        let (head, get, body) = head_then_get(&media.addr, path).await;
        let (head_status, head_headers) = comparable_headers(&head);
        let (get_status, get_headers) = comparable_headers(&get);
        assert_eq!(head_status, get_status, "{path}");
        assert_eq!(head_headers, get_headers, "{path}");
        assert!(
            head_headers.contains(&format!("content-length: {}", body.len())),
            "{path}: HEAD gives the GET's length ({}): {head_headers:?}",
            body.len()
        );
    }
    // A Range is for GET only (§14.2): HEAD ignores it.
    let response = reqwest::Client::new()
        .head(format!(
            "http://{}{}",
            media.addr,
            file["url"].as_str().unwrap()
        ))
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-length"], "300000");
    assert!(response.headers().get("content-range").is_none());
    // Methods a path does not take are refused with the ones it does.
    for (path, allowed) in [
        (file["url"].as_str().unwrap().to_owned(), "GET, HEAD"),
        (
            picture["thumbnail_url"].as_str().unwrap().to_owned(),
            "GET, HEAD",
        ),
        (
            format!("/api/v1/media/{id}?user=alice"),
            "GET, HEAD, DELETE",
        ),
        ("/api/v1/media/openapi.json".to_owned(), "GET, HEAD"),
    ] {
        let response = reqwest::Client::new()
            .put(format!("http://{}{path}", media.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{path}");
        assert_eq!(response.headers()["allow"], allowed, "{path}");
    }
}

suite!(
    range_requests_follow_rfc_9110_on_files_of_every_length_and_on_thumbnails,
    head_answers_what_get_would_without_the_content,
);

/// A body over the limit is read on (and dropped) so the client can read
/// its 413; a client that then stops sending is waited for no longer than
/// the idle timeout (it was waited for forever before), and nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_413_a_stalled_body_is_waited_for_no_longer_than_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let settings = MediaSettings {
        media_max_bytes: 64 * 1024,
        media_idle_timeout: std::time::Duration::from_millis(500),
        ..MediaSettings::default()
    };
    let media = start_with(Db::Sqlite, settings).await;
    let mut socket = tokio::net::TcpStream::connect(&media.addr).await.unwrap();
    let head = "POST /api/v1/media?user=alice HTTP/1.1\r\nHost: media\r\n\
        Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 10000000\r\n\r\n\
        --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
        Content-Type: application/octet-stream\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    // Over the limit, then nothing more: the rest of the promised ten
    // megabytes never comes.
    socket.write_all(&[1u8; 200 * 1024]).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(chat_testkit::WAIT, socket.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "no answer to an oversized upload that stalled"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.200}");
    assert!(answer.contains("\"too_large\""), "{answer:.400}");
    assert!(
        media.stored_files().is_empty(),
        "left behind: {:?}",
        media.stored_files()
    );
}
