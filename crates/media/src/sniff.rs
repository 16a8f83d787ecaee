//! The type of an upload, from its first bytes (`infer`) — never from the
//! client's `Content-Type` or file name.

use serde::Serialize;

/// How a client should show a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Shown as a picture.
    Image,
    /// Played in an audio player.
    Audio,
    /// Played in a video player.
    Video,
    /// Offered as a download, never rendered in the product's origin.
    File,
}

impl Kind {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Audio => "audio",
            Kind::Video => "video",
            Kind::File => "file",
        }
    }

    /// Shown inline by a browser (everything else is an attachment).
    pub fn inline(self) -> bool {
        self != Kind::File
    }
}

/// Images browsers display safely; other image formats are plain files.
const DISPLAYABLE_IMAGES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
];

/// How many leading bytes sniffing needs.
pub const HEAD: usize = 8192;

/// The kind and MIME type of content starting with `head`.
pub fn sniff(head: &[u8]) -> (Kind, String) {
    let Some(found) = infer::get(head) else {
        return (Kind::File, "application/octet-stream".to_owned());
    };
    let mime = found.mime_type();
    let kind = match found.matcher_type() {
        infer::MatcherType::Image if DISPLAYABLE_IMAGES.contains(&mime) => Kind::Image,
        infer::MatcherType::Audio => Kind::Audio,
        infer::MatcherType::Video => Kind::Video,
        _ => Kind::File,
    };
    (kind, mime.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_not_names() {
        let png = [
            0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
        ];
        assert_eq!(sniff(&png), (Kind::Image, "image/png".to_owned()));
        let wav = b"RIFF\x24\x00\x00\x00WAVEfmt ";
        assert_eq!(sniff(wav).0, Kind::Audio);
        let html = b"<!doctype html><html><script>alert(1)</script>";
        assert_eq!(sniff(html).0, Kind::File);
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>";
        assert_eq!(
            sniff(svg).0,
            Kind::File,
            "SVG can carry script: never inline"
        );
        assert_eq!(sniff(b"").1, "application/octet-stream");
    }

    #[test]
    fn video_containers_are_recognised() {
        // An ISO base media `ftyp` box (MP4) and an EBML header declaring WebM.
        let mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom";
        assert_eq!(sniff(mp4), (Kind::Video, "video/mp4".to_owned()));
        let webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm\x42\x87\x81\x04";
        let mut webm = webm.to_vec();
        webm.resize(512, 0); // the clusters that follow in a real file
        assert_eq!(sniff(&webm), (Kind::Video, "video/webm".to_owned()));
    }
}
