//! How a payload (bytes) travels in JSON.
//!
//! Invariant: `decode(encode(p))` is `p` for every byte string: valid UTF-8 is sent as the
//! text itself, anything else as standard base64, and `encoding` says which.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// How a payload is written in JSON (`"utf8"` when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The text itself.
    #[default]
    Utf8,
    /// Standard base64.
    Base64,
}

/// A payload that claims base64 and is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload is not valid base64: {0}")]
pub struct PayloadError(base64::DecodeError);

/// Encodes a payload: its text when it is UTF-8, else base64.
pub fn encode(payload: Vec<u8>) -> (String, Encoding) {
    match String::from_utf8(payload) {
        Ok(s) => (s, Encoding::Utf8),
        Err(e) => (B64.encode(e.as_bytes()), Encoding::Base64),
    }
}

/// Decodes a payload written as `enc`.
pub fn decode(payload: String, enc: Encoding) -> Result<Vec<u8>, PayloadError> {
    match enc {
        Encoding::Utf8 => Ok(payload.into_bytes()),
        Encoding::Base64 => B64.decode(payload.as_bytes()).map_err(PayloadError),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_text_and_bytes() {
        for p in [
            &b"plain text"[..],
            b"",
            "\u{e9}t\u{e9}".as_bytes(),
            b"\xff\x00\xfe",
        ] {
            let (text, enc) = encode(p.to_vec());
            assert_eq!(enc == Encoding::Utf8, std::str::from_utf8(p).is_ok());
            assert_eq!(decode(text, enc).unwrap(), p);
        }
    }

    #[test]
    fn bad_base64_is_an_error_naming_it() {
        let e = decode("not base64!".into(), Encoding::Base64).unwrap_err();
        assert!(
            e.to_string().starts_with("payload is not valid base64: "),
            "{e}"
        );
    }
}
