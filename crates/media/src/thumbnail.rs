//! Image dimensions and thumbnails, made off the async threads.

use std::path::PathBuf;

use image::{ImageFormat, ImageReader, Limits};

/// The longest side of a thumbnail, in pixels.
pub const SIZE: u32 = 320;

/// What an image upload yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picture {
    /// Width of the original.
    pub width: u32,
    /// Height of the original.
    pub height: u32,
    /// A thumbnail was written (the original is larger than [`SIZE`]).
    pub thumbnail: bool,
}

/// Reads the image at `src` (its format from its bytes: the file has no
/// extension) and, when it is larger than [`SIZE`], writes a thumbnail to
/// `dest` (JPEG for JPEG originals, PNG otherwise). Decoding is bounded so a
/// small file that claims a huge picture cannot exhaust memory. `None` for
/// bytes that only look like an image.
pub async fn make(src: PathBuf, dest: PathBuf) -> Option<Picture> {
    let work = move || {
        let mut reader = ImageReader::open(&src).ok()?.with_guessed_format().ok()?;
        let format = reader.format()?;
        let mut limits = Limits::default();
        limits.max_image_width = Some(16_384);
        limits.max_image_height = Some(16_384);
        limits.max_alloc = Some(256 * 1024 * 1024);
        reader.limits(limits);
        let image = reader.decode().ok()?;
        let (width, height) = (image.width(), image.height());
        let mut thumbnail = false;
        if width.max(height) > SIZE {
            let small = image.thumbnail(SIZE, SIZE);
            let (small, format) = if format == ImageFormat::Jpeg {
                (
                    image::DynamicImage::ImageRgb8(small.to_rgb8()),
                    ImageFormat::Jpeg,
                )
            } else {
                (small, ImageFormat::Png)
            };
            thumbnail = small.save_with_format(&dest, format).is_ok();
        }
        Some(Picture {
            width,
            height,
            thumbnail,
        })
    };
    tokio::task::spawn_blocking(work).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, w: u32, h: u32) -> PathBuf {
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
                thumbnail: true
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
                thumbnail: false
            }
        );
        assert!(!thumb.exists());
    }
}
