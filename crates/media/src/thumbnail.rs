//! Images measured as people see them, and their thumbnails, made off the
//! async threads.
//!
//! - **Displayed size.** A camera stores a portrait photo as a landscape
//!   sensor readout plus an EXIF orientation tag; browsers apply the tag.
//!   `width`/`height` are the displayed ones (the `image` crate's
//!   `ImageDecoder::orientation`, then width and height swapped for the
//!   quarter turns), and the thumbnail is turned upright
//!   (`DynamicImage::apply_orientation`).
//! - **No metadata in thumbnails.** They are encoded from pixels alone: no
//!   EXIF (so no GPS position, camera or time), XMP, IPTC or ICC profile.
//!   The original is served as uploaded, byte for byte.
//! - **Measured from the header.** Every image whose header can be read gets
//!   its size, decoded or not: a 20000×2 strip, a picture past the pixel
//!   limit, one whose pixel data is broken, an AVIF (no decoder here; its
//!   size and rotation come from its `ispe`/`irot` boxes, `imagesize`).
//! - **Bounded decoding.** Only images of at most [`MAX_PIXELS`] are decoded,
//!   with the decoder's allocations capped at [`MAX_DECODED_BYTES`]; one past
//!   either is marked [`Picture::over_pixel_limit`] and gets no thumbnail.
//! - **Extreme shapes.** A thumbnail keeps the aspect ratio within
//!   [`SIZE`]×[`SIZE`] and at least 1 pixel on its short side.

use std::path::{Path, PathBuf};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

/// The longest side of a thumbnail, in pixels.
pub const SIZE: u32 = 320;

/// The most pixels (width × height) an image may have to be decoded: 50
/// megapixels, so a full-resolution 50-megapixel phone photo (8160×6120)
/// still gets a thumbnail. Larger ones are measured from their header only.
pub const MAX_PIXELS: u64 = 50_000_000;

/// The most bytes a decoder may allocate: [`MAX_PIXELS`] at 8 bytes a pixel
/// (16-bit RGBA, the widest layout of the decoded formats), 400 MB.
pub const MAX_DECODED_BYTES: u64 = MAX_PIXELS * WIDEST_PIXEL;

/// Bytes of the widest decoded pixel (16-bit RGBA).
const WIDEST_PIXEL: u64 = 8;

/// What an image upload yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picture {
    /// Width as displayed, in pixels (EXIF orientation applied).
    pub width: u32,
    /// Height as displayed, in pixels (EXIF orientation applied).
    pub height: u32,
    /// A thumbnail was written (the image is larger than [`SIZE`] and could
    /// be decoded).
    pub thumbnail: bool,
    /// The image has more than [`MAX_PIXELS`] pixels (or would need more
    /// than [`MAX_DECODED_BYTES`] to decode): measured from its header,
    /// never decoded, no thumbnail.
    pub over_pixel_limit: bool,
}

/// Measures the image at `src` (its format from its bytes: the file has no
/// extension) and, when it is larger than [`SIZE`] and within the pixel
/// limit, writes an upright, metadata-free thumbnail to `dest` (JPEG for
/// JPEG originals, PNG otherwise). `None` when not even the header can be
/// read (bytes that only look like an image).
pub async fn make(src: PathBuf, dest: PathBuf) -> Option<Picture> {
    tokio::task::spawn_blocking(move || measure(&src, &dest, MAX_PIXELS))
        .await
        .ok()
        .flatten()
}

/// [`make`]'s work, with the pixel limit as a parameter.
fn measure(src: &Path, dest: &Path, max_pixels: u64) -> Option<Picture> {
    let mut reader = ImageReader::open(src).ok()?.with_guessed_format().ok()?;
    let Some(format) = reader.format() else {
        return from_header_only(src, max_pixels);
    };
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(WIDEST_PIXEL));
    reader.limits(limits);
    // Reads the header (and the metadata before the pixels), not the pixels.
    let Ok(mut decoder) = reader.into_decoder() else {
        return from_header_only(src, max_pixels);
    };
    let (stored_width, stored_height) = decoder.dimensions();
    // An unreadable orientation tag is no tag: browsers show such a file as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (width, height) = displayed(stored_width, stored_height, orientation);
    let mut picture = Picture {
        width,
        height,
        thumbnail: false,
        over_pixel_limit: u64::from(width) * u64::from(height) > max_pixels,
    };
    if picture.over_pixel_limit || width.max(height) <= SIZE {
        return Some(picture);
    }
    let image = match DynamicImage::from_decoder(decoder) {
        Ok(image) => image,
        Err(ImageError::Limits(_)) => {
            picture.over_pixel_limit = true;
            return Some(picture);
        }
        // The header was fine, the pixels are not: measured, no thumbnail.
        Err(_) => return Some(picture),
    };
    // Shrunk first, then turned: the same result, at a fraction of the copying.
    let mut small = image.thumbnail(SIZE, SIZE);
    drop(image);
    small.apply_orientation(orientation);
    picture.thumbnail = save(small, format, dest).is_ok();
    Some(picture)
}

/// The size of an image the `image` crate cannot open (AVIF), from its
/// header alone; such an image gets no thumbnail.
fn from_header_only(src: &Path, max_pixels: u64) -> Option<Picture> {
    let size = imagesize::size(src).ok()?;
    let width = u32::try_from(size.width).ok()?;
    let height = u32::try_from(size.height).ok()?;
    (width > 0 && height > 0).then(|| Picture {
        width,
        height,
        thumbnail: false,
        over_pixel_limit: u64::from(width) * u64::from(height) > max_pixels,
    })
}

/// Width and height once `orientation` is applied: quarter turns swap them.
pub fn displayed(width: u32, height: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        Orientation::NoTransforms
        | Orientation::Rotate180
        | Orientation::FlipHorizontal
        | Orientation::FlipVertical => (width, height),
    }
}

/// Encodes `small` from its pixels alone (no metadata of any kind): JPEG
/// for a JPEG original, PNG otherwise.
fn save(small: DynamicImage, original: ImageFormat, dest: &Path) -> image::ImageResult<()> {
    if original == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(small.to_rgb8()).save_with_format(dest, ImageFormat::Jpeg)
    } else {
        small.save_with_format(dest, ImageFormat::Png)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, w: u32, h: u32) -> PathBuf {
        let path = dir.join("NOEXTENSION");
        image::RgbImage::new(w, h)
            .save_with_format(&path, ImageFormat::Png)
            .unwrap();
        path
    }

    #[tokio::test]
    async fn large_images_get_a_thumbnail_within_320_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let thumb = dir.path().join("thumb");
        let picture = make(write(dir.path(), 800, 400), thumb.clone())
            .await
            .unwrap();
        assert_eq!(
            picture,
            Picture {
                width: 800,
                height: 400,
                thumbnail: true,
                over_pixel_limit: false,
            }
        );
        assert_eq!(
            image::image_dimensions(&thumb).ok(),
            None,
            "no extension: by bytes only"
        );
        let small = ImageReader::open(&thumb)
            .unwrap()
            .with_guessed_format()
            .unwrap();
        assert_eq!(small.into_dimensions().unwrap(), (320, 160));
    }

    #[tokio::test]
    async fn small_images_need_none() {
        let dir = tempfile::tempdir().unwrap();
        let thumb = dir.path().join("thumb");
        let picture = make(write(dir.path(), 5, 3), thumb.clone()).await.unwrap();
        assert_eq!(
            picture,
            Picture {
                width: 5,
                height: 3,
                thumbnail: false,
                over_pixel_limit: false,
            }
        );
        assert!(!thumb.exists());
    }

    #[test]
    fn an_image_past_the_pixel_limit_is_measured_not_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let thumb = dir.path().join("thumb");
        let src = write(dir.path(), 400, 300);
        let picture = measure(&src, &thumb, 400 * 300 - 1).unwrap();
        assert_eq!(
            picture,
            Picture {
                width: 400,
                height: 300,
                thumbnail: false,
                over_pixel_limit: true,
            }
        );
        assert!(!thumb.exists());
        let at_the_limit = measure(&src, &thumb, 400 * 300).unwrap();
        assert!(at_the_limit.thumbnail && !at_the_limit.over_pixel_limit);
    }

    #[test]
    fn quarter_turns_swap_width_and_height() {
        for (exif, swapped) in [
            (1, false),
            (2, false),
            (3, false),
            (4, false),
            (5, true),
            (6, true),
            (7, true),
            (8, true),
        ] {
            let orientation = Orientation::from_exif(exif).unwrap();
            let expected = if swapped { (3, 4) } else { (4, 3) };
            assert_eq!(displayed(4, 3, orientation), expected, "orientation {exif}");
        }
    }
}
