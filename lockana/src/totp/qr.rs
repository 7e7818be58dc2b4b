//! QR codes of otpauth URLs as PNG images, at the size asked for.

use base64::Engine as _;
use image::{ExtendedColorType, ImageEncoder, Luma};
use qrcodegen::{QrCode, QrCodeEcc};

use crate::{Error, Result};

/// Light modules around the code, as the QR specification asks for.
const QUIET_ZONE: i32 = 4;
/// Largest image drawn, in pixels per side (the size is the caller's input).
pub(crate) const MAX_SIZE: u32 = 4096;

/// A `size`×`size` PNG of `text` as a QR code, base64-encoded. Sizes below one pixel
/// per module are raised to that.
pub(crate) fn png_base64(text: &str, size: u32) -> Result<String> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium)
        .map_err(|_| Error::invalid("the otpauth URL is too long for a QR code"))?;
    let modules = (qr.size() + 2 * QUIET_ZONE).unsigned_abs();
    let size = size.clamp(modules, MAX_SIZE.max(modules));
    let img = image::GrayImage::from_fn(size, size, |x, y| {
        let mx = (x * modules / size) as i32 - QUIET_ZONE;
        let my = (y * modules / size) as i32 - QUIET_ZONE;
        if qr.get_module(mx, my) {
            Luma([0])
        } else {
            Luma([255])
        }
    });
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(img.as_raw(), size, size, ExtendedColorType::L8)
        .map_err(|_| Error::invalid("cannot encode the QR code image"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_the_asked_size() {
        let b64 = png_base64(
            "otpauth://totp/a:b?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            200,
        )
        .expect("png");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        assert_eq!(&bytes[1..4], b"PNG");
        let img =
            image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).expect("decode");
        assert_eq!((img.width(), img.height()), (200, 200));
    }
}
