//! Images measured as people see them: EXIF orientation applied to the size
//! and the thumbnail, thumbnails without metadata, a size for every image
//! whose header can be read, thumbnails of extreme shapes, and the pixel
//! limit said out loud.

#![allow(clippy::expect_used)] // a failed expect is a failed test, with its message

use image::{ImageFormat, Rgb, RgbImage};

use super::*;

/// The quadrants of an upright test picture: red, green / blue, white.
const QUADRANTS: [[u8; 3]; 4] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];

/// The colour of the upright `w`×`h` picture at (`u`, `v`).
fn upright(u: u32, v: u32, w: u32, h: u32) -> Rgb<u8> {
    let right = usize::from(u >= w / 2);
    let bottom = usize::from(v >= h / 2);
    Rgb(QUADRANTS[bottom * 2 + right])
}

/// How a camera stores the upright `w`×`h` picture under EXIF `orientation`
/// (1–8), from the tag's definition: which visual side row 0 and column 0 are.
fn stored(w: u32, h: u32, orientation: u16) -> RgbImage {
    let (sw, sh) = if orientation >= 5 { (h, w) } else { (w, h) };
    RgbImage::from_fn(sw, sh, |x, y| {
        let (u, v) = match orientation {
            1 => (x, y),
            2 => (w - 1 - x, y),
            3 => (w - 1 - x, h - 1 - y),
            4 => (x, h - 1 - y),
            5 => (y, x),
            6 => (w - 1 - y, x),
            7 => (w - 1 - y, h - 1 - x),
            8 => (y, h - 1 - x),
            _ => unreachable!(),
        };
        upright(u, v, w, h)
    })
}

/// A GPS position as EXIF writes it: 48° 51′ 29.59″ (three rationals).
fn gps_latitude() -> Vec<u8> {
    [48u32, 1, 51, 1, 2959, 100]
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .collect()
}

/// A little-endian EXIF block: IFD0 with an Orientation and a pointer to a
/// GPS IFD holding a latitude, as a phone writes them.
fn exif(orientation: u16) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        out.extend(tag.to_le_bytes());
        out.extend(kind.to_le_bytes());
        out.extend(count.to_le_bytes());
        out.extend(value);
    }
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes()); // IFD0 right after the header
    tiff.extend(2u16.to_le_bytes());
    let [lo, hi] = orientation.to_le_bytes();
    entry(&mut tiff, 0x0112, 3, 1, [lo, hi, 0, 0]); // Orientation, SHORT
    entry(&mut tiff, 0x8825, 4, 1, 38u32.to_le_bytes()); // GPS IFD at 38
    tiff.extend(0u32.to_le_bytes());
    assert_eq!(tiff.len(), 38);
    tiff.extend(2u16.to_le_bytes());
    entry(&mut tiff, 0x0001, 2, 2, *b"N\0\0\0"); // GPSLatitudeRef
    entry(&mut tiff, 0x0002, 5, 3, 68u32.to_le_bytes()); // GPSLatitude at 68
    tiff.extend(0u32.to_le_bytes());
    assert_eq!(tiff.len(), 68);
    tiff.extend(gps_latitude());
    tiff
}

/// `image` as a JPEG with an APP1 EXIF segment (orientation and GPS) after SOI.
fn jpeg_with_exif(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut plain = std::io::Cursor::new(Vec::new());
    image.write_to(&mut plain, ImageFormat::Jpeg).unwrap();
    let plain = plain.into_inner();
    let tiff = exif(orientation);
    let mut out = plain[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(u16::try_from(2 + 6 + tiff.len()).unwrap().to_be_bytes());
    out.extend(b"Exif\0\0");
    out.extend(tiff);
    out.extend(&plain[2..]);
    out
}

/// The segments of a JPEG up to its scan: (marker, offset of the marker).
fn jpeg_segments(bytes: &[u8]) -> Vec<(u8, usize)> {
    assert_eq!(&bytes[..2], [0xFF, 0xD8], "a JPEG");
    let mut segments = Vec::new();
    let mut at = 2;
    loop {
        assert_eq!(bytes[at], 0xFF, "a marker at {at}");
        let marker = bytes[at + 1];
        segments.push((marker, at));
        if marker == 0xDA {
            return segments;
        }
        at += 2 + usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
    }
}

/// The chunk types of a PNG.
fn png_chunks(bytes: &[u8]) -> Vec<String> {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let mut chunks = Vec::new();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let length = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        chunks.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        at += 12 + length;
    }
    chunks
}

/// Checks that thumbnail `bytes` carry pixels and nothing else: no EXIF
/// (nor the GPS position in it), XMP, IPTC, ICC profile or text.
fn assert_no_metadata(bytes: &[u8], what: &str) {
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"Exif"), "{what}: EXIF in the thumbnail");
    assert!(
        !contains(&gps_latitude()),
        "{what}: the GPS position leaked"
    );
    if bytes.starts_with(&[0xFF, 0xD8]) {
        for (marker, at) in jpeg_segments(bytes) {
            // APP0 (JFIF) is the only application segment allowed.
            assert!(
                !(0xE1..=0xEF).contains(&marker) && marker != 0xFE,
                "{what}: segment {marker:#x} at {at}"
            );
        }
    } else {
        for chunk in png_chunks(bytes) {
            assert!(
                ["IHDR", "PLTE", "tRNS", "IDAT", "IEND"].contains(&chunk.as_str()),
                "{what}: chunk {chunk}"
            );
        }
    }
}

/// Checks that `thumbnail` shows the upright quadrants (JPEG blurs the
/// edges, so each quadrant is sampled at its centre, within a tolerance).
fn assert_upright(thumbnail: &image::RgbImage, what: &str) {
    let (w, h) = thumbnail.dimensions();
    for (i, (u, v)) in [
        (w / 4, h / 4),
        (3 * w / 4, h / 4),
        (w / 4, 3 * h / 4),
        (3 * w / 4, 3 * h / 4),
    ]
    .into_iter()
    .enumerate()
    {
        let got = thumbnail.get_pixel(u, v).0;
        let near = got
            .iter()
            .zip(QUADRANTS[i])
            .all(|(a, b)| a.abs_diff(b) < 60);
        assert!(
            near,
            "{what}: at ({u}, {v}) {got:?}, expected {:?}",
            QUADRANTS[i]
        );
    }
}

/// All eight EXIF orientations, straight through `thumbnail::make`: the size
/// is the displayed one and the thumbnail shows the picture upright.
#[tokio::test]
async fn every_exif_orientation_is_applied_to_the_size_and_the_thumbnail() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (480, 360);
    for orientation in 1..=8u16 {
        let what = format!("orientation {orientation}");
        let src = dir.path().join(format!("photo-{orientation}"));
        let dest = dir.path().join(format!("thumb-{orientation}"));
        std::fs::write(
            &src,
            jpeg_with_exif(&stored(w, h, orientation), orientation),
        )
        .unwrap();
        let picture = chat_media::thumbnail::make(src, dest.clone())
            .await
            .unwrap();
        assert_eq!(
            (picture.width, picture.height, picture.thumbnail),
            (w, h, true),
            "{what}"
        );
        let bytes = std::fs::read(&dest).unwrap();
        assert_no_metadata(&bytes, &what);
        let thumbnail = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(thumbnail.dimensions(), (320, 240), "{what}");
        assert_upright(&thumbnail, &what);
    }
}

/// A phone held upright stores a landscape readout tagged "turn 90°
/// clockwise" (EXIF 6), with its GPS position beside it.
async fn a_portrait_phone_photo_arrives_upright_and_its_thumbnail_carries_no_gps(db: Db) {
    let media = start(db).await;
    let (w, h) = (360, 480);
    let photo = jpeg_with_exif(&stored(w, h, 6), 6);
    let meta = media.upload(photo, "IMG_0001.JPG", "image/jpeg").await;
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(360), Some(480)),
        "portrait, as displayed: {meta}"
    );
    assert!(meta.get("over_pixel_limit").is_none(), "{meta}");
    let id = meta["id"].as_str().unwrap();
    let again: Value = media
        .get(&format!("/api/v1/media/{id}?user=bob"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["width"].as_u64(), again["height"].as_u64()),
        (Some(360), Some(480)),
        "as stored"
    );
    let response = media.get(meta["thumbnail_url"].as_str().unwrap()).await;
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let bytes = response.bytes().await.unwrap();
    assert_no_metadata(&bytes, "the thumbnail");
    let thumbnail = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(thumbnail.dimensions(), (240, 320));
    assert_upright(&thumbnail, "the thumbnail");

    let png_meta = media.upload(png(800, 400), "wide.png", "image/png").await;
    let bytes = media
        .get(png_meta["thumbnail_url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    assert_no_metadata(&bytes, "a PNG thumbnail");
}

/// `bytes` (a JPEG) claiming to be `width`×`height` in its frame header.
fn claiming(mut bytes: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
    let (_, at) = jpeg_segments(&bytes)
        .into_iter()
        .find(|(marker, _)| (0xC0..=0xC3).contains(marker))
        .expect("a frame header");
    bytes[at + 5..at + 7].copy_from_slice(&height.to_be_bytes());
    bytes[at + 7..at + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

fn encoded(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// An AVIF's header, as far as its size goes: `ftyp`, then `meta` with the
/// image's spatial extent (`ispe`, 4000×3000) and a quarter turn (`irot`).
/// No decoder for its pixels here; its header is enough to measure it.
fn avif_header() -> Vec<u8> {
    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(8 + body.len())
            .unwrap()
            .to_be_bytes()
            .to_vec();
        out.extend(kind);
        out.extend(body);
        out
    }
    let ftyp = boxed(b"ftyp", b"avif\0\0\0\0mif1miaf");
    let mut ispe = vec![0u8; 4];
    ispe.extend(4000u32.to_be_bytes());
    ispe.extend(3000u32.to_be_bytes());
    let ipco = [boxed(b"ispe", &ispe), boxed(b"irot", &[1])].concat();
    let ipma = boxed(b"ipma", &[0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 0x81, 0x02]);
    let iprp = boxed(b"iprp", &[boxed(b"ipco", &ipco), ipma].concat());
    let hdlr = boxed(b"hdlr", &[&[0u8; 8][..], b"pict", &[0u8; 13]].concat());
    let pitm = boxed(b"pitm", &[0, 0, 0, 0, 0, 1]);
    let meta = boxed(b"meta", &[&[0u8; 4][..], &hdlr, &pitm, &iprp].concat());
    [ftyp, meta, boxed(b"mdat", &[0u8; 16])].concat()
}

/// One image of the size table.
struct Row {
    what: &'static str,
    bytes: Vec<u8>,
    mime: &'static str,
    /// Width and height as displayed.
    size: (u64, u64),
    /// The thumbnail's size, if there must be one.
    thumbnail: Option<(u32, u32)>,
    /// Past the pixel limit.
    over_limit: bool,
}

async fn every_image_whose_header_can_be_read_gets_its_size(db: Db) {
    let media = start(db).await;
    let picture = RgbImage::from_fn(400, 300, |u, v| upright(u, v, 400, 300));
    let mut cut_png = encoded(&picture, ImageFormat::Png);
    cut_png.truncate(cut_png.len() / 2);
    let small_jpeg = encoded(&RgbImage::new(16, 16), ImageFormat::Jpeg);
    let landscape = jpeg_with_exif(&RgbImage::new(16, 16), 6);
    let row = |what, bytes, mime, size, thumbnail, over_limit| Row {
        what,
        bytes,
        mime,
        size,
        thumbnail,
        over_limit,
    };
    let rows = vec![
        row(
            "a 20000×2 strip",
            png(20000, 2),
            "image/png",
            (20000, 2),
            Some((320, 1)),
            false,
        ),
        row(
            "a 2×20000 strip",
            png(2, 20000),
            "image/png",
            (2, 20000),
            Some((1, 320)),
            false,
        ),
        row(
            "a JPEG claiming 65000×65000",
            claiming(small_jpeg, 65000, 65000),
            "image/jpeg",
            (65000, 65000),
            None,
            true,
        ),
        row(
            "a JPEG claiming 60000×50000, turned by EXIF 6",
            claiming(landscape, 60000, 50000),
            "image/jpeg",
            (50000, 60000),
            None,
            true,
        ),
        row(
            "a PNG cut off in its pixels",
            cut_png,
            "image/png",
            (400, 300),
            None,
            false,
        ),
        row(
            "a BMP",
            encoded(&picture, ImageFormat::Bmp),
            "image/bmp",
            (400, 300),
            Some((320, 240)),
            false,
        ),
        row(
            "a GIF",
            encoded(&picture, ImageFormat::Gif),
            "image/gif",
            (400, 300),
            Some((320, 240)),
            false,
        ),
        row(
            "a WebP",
            encoded(&picture, ImageFormat::WebP),
            "image/webp",
            (400, 300),
            Some((320, 240)),
            false,
        ),
        row(
            "an AVIF, turned by its irot",
            avif_header(),
            "image/avif",
            (3000, 4000),
            None,
            false,
        ),
        row(
            "a 16×16 icon",
            png(16, 16),
            "image/png",
            (16, 16),
            None,
            false,
        ),
    ];
    for Row {
        what,
        bytes,
        mime,
        size: (width, height),
        thumbnail,
        over_limit,
    } in rows
    {
        let meta = media
            .upload(bytes, "picture", "application/octet-stream")
            .await;
        assert_eq!(
            (meta["kind"].as_str(), meta["mime"].as_str()),
            (Some("image"), Some(mime)),
            "{what}"
        );
        assert_eq!(
            (meta["width"].as_u64(), meta["height"].as_u64()),
            (Some(width), Some(height)),
            "{what}: {meta}"
        );
        assert_eq!(
            meta.get("over_pixel_limit").and_then(Value::as_bool),
            over_limit.then_some(true),
            "{what}: {meta}"
        );
        let id = meta["id"].as_str().unwrap();
        let stored: Value = media
            .get(&format!("/api/v1/media/{id}?user=bob"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (
                &stored["width"],
                &stored["height"],
                &stored["over_pixel_limit"]
            ),
            (&meta["width"], &meta["height"], &meta["over_pixel_limit"]),
            "{what}: stored as answered"
        );
        match thumbnail {
            None => assert!(meta.get("thumbnail_url").is_none(), "{what}: {meta}"),
            Some(size) => {
                let bytes = media
                    .get(meta["thumbnail_url"].as_str().unwrap())
                    .await
                    .bytes()
                    .await
                    .unwrap();
                assert_no_metadata(&bytes, what);
                let small = image::load_from_memory(&bytes).unwrap();
                assert_eq!((small.width(), small.height()), size, "{what}");
            }
        }
    }
}

suite!(
    a_portrait_phone_photo_arrives_upright_and_its_thumbnail_carries_no_gps,
    every_image_whose_header_can_be_read_gets_its_size,
);
