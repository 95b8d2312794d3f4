//! Bearer tokens (`SECRET:SCOPES`) and the files that hold secrets: the kinds of
//! `server.tokens` and `server.token_file`, and the bounded reader `ackline work` uses for its
//! own token file.
//!
//! Invariants:
//! - Nothing here returns or formats a secret: a bad token is `None`, a bad file is an error
//!   naming the file only. (The keys are marked secret, so their errors never quote values.)
//! - A secret file is read up to [`MAX_SECRET_FILE`] bytes, never without bound.

use std::borrow::Cow;
use std::path::Path;

use ackline_server::{Scope, Token};
use anyhow::Context;

use super::kind::{Kind, text};
use super::source::RawValue;

/// Most bytes read from a secret file (a token file is a few lines; `/dev/zero` must not be
/// read without bound).
pub const MAX_SECRET_FILE: u64 = 1 << 20;

/// The fewest characters of a token's secret.
pub const MIN_SECRET_CHARS: usize = 16;

/// Every scope, in the order errors name them.
const SCOPES: [Scope; 4] = [Scope::Ingest, Scope::Worker, Scope::Admin, Scope::Read];

/// Reads a file of secrets (bounded by `MAX_SECRET_FILE`); errors name the file, never its
/// contents.
pub fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    if buf.len() as u64 > MAX_SECRET_FILE {
        anyhow::bail!("{} is larger than {MAX_SECRET_FILE} bytes", path.display());
    }
    String::from_utf8(buf).map_err(|_| anyhow::anyhow!("{} is not UTF-8", path.display()))
}

/// One `SECRET:SCOPES` token (scopes comma-separated; the secret may contain `:`).
pub fn parse_token(s: &str) -> Option<Token> {
    let (secret, scopes) = s.trim().rsplit_once(':')?;
    if secret.chars().count() < MIN_SECRET_CHARS || secret.chars().any(char::is_whitespace) {
        return None;
    }
    let scopes: Vec<Scope> = scopes
        .split(',')
        .map(|x| Scope::parse(x.trim()))
        .collect::<Option<_>>()?;
    (!scopes.is_empty()).then(|| Token::new(secret, &scopes))
}

fn scope_names() -> String {
    SCOPES.map(Scope::name).join(", ")
}

/// Bearer tokens: a TOML array of `SECRET:SCOPES`, or text with the tokens separated by `;` or
/// whitespace (a token's scopes are separated by commas).
#[derive(Debug)]
pub struct Tokens;

impl Kind for Tokens {
    type Value = Vec<Token>;

    fn parse(&self, v: &RawValue) -> Option<Vec<Token>> {
        match v {
            RawValue::List(items) => items.iter().map(|x| parse_token(text(x)?)).collect(),
            RawValue::Text(s) => s
                .split(|c: char| c == ';' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(parse_token)
                .collect(),
            _ => None,
        }
    }

    fn describe(&self) -> Cow<'static, str> {
        format!(
            "a list of SECRET:SCOPES, each secret at least {MIN_SECRET_CHARS} characters without \
             whitespace, scopes a comma-separated subset of {} (';' or whitespace between tokens \
             in the environment)",
            scope_names()
        )
        .into()
    }
}

/// A file of bearer tokens, one `SECRET:SCOPES` per line (blank lines and `#` comments
/// skipped), at most [`MAX_SECRET_FILE`] bytes.
#[derive(Debug)]
pub struct TokenFile;

impl Kind for TokenFile {
    type Value = Vec<Token>;

    fn parse(&self, v: &RawValue) -> Option<Vec<Token>> {
        let text = read_secret_file(Path::new(text(v)?)).ok()?;
        text.lines()
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.starts_with('#'))
            .map(parse_token)
            .collect()
    }

    fn describe(&self) -> Cow<'static, str> {
        format!(
            "a readable file of at most {} MiB with one SECRET:SCOPES per line (blank lines and # \
             comments skipped), each like server.tokens",
            MAX_SECRET_FILE >> 20
        )
        .into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_need_a_long_secret_and_known_scopes() {
        assert!(parse_token("a-secret-of-16-chars:ingest,worker").is_some());
        assert!(parse_token("with:colon-0123456789:admin").is_some());
        for bad in [
            "short:ingest",
            "a-secret-of-16-chars:root",
            "a-secret-of-16-chars",
            "a secret of 16 chars:ingest",
            "a-secret-of-16-chars:",
        ] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
        let two = RawValue::Text("a-secret-of-16-chars:ingest; b-secret-of-16-chars:admin".into());
        assert_eq!(Tokens.parse(&two).map(|t| t.len()), Some(2));
    }
}
