//! The console's static files, embedded in the binary at compile time (`include_bytes!`):
//! nothing is fetched from a network, at build time or in the browser.
//!
//! Invariants: only the files listed in [`FILES`] are served, by exact name (no paths, so no
//! traversal); each with its content type; the pages use no third-party code (the charts are
//! the console's own SVG drawing in `app.js`).

/// An embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its bytes.
    pub bytes: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

/// Every file, by name.
pub const FILES: &[(&str, Asset)] = &[
    (
        "index.html",
        Asset {
            bytes: include_bytes!("../assets/index.html"),
            content_type: "text/html; charset=utf-8",
        },
    ),
    (
        "app.js",
        Asset {
            bytes: include_bytes!("../assets/app.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "app.css",
        Asset {
            bytes: include_bytes!("../assets/app.css"),
            content_type: "text/css; charset=utf-8",
        },
    ),
    (
        "icon.svg",
        Asset {
            bytes: include_bytes!("../assets/icon.svg"),
            content_type: "image/svg+xml",
        },
    ),
];

/// The file `name`, if embedded.
pub fn get(name: &str) -> Option<Asset> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}
