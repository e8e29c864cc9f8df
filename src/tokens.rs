//! Signed tokens for the links in emails and pages: unsubscribe, preferences, confirm, a
//! subscriber's personal feed, and their own copy of a digest on the web.
//!
//! A token is `base64url(version | purpose | subscriber id | expiry | tag)`, where the tag is
//! the first 16 bytes of HMAC-SHA256 over everything before it and a `binding` value that is
//! not in the token. Unsubscribe, preferences and feed tokens bind nothing, so the token in a
//! digest keeps working for as long as the subscription exists. A confirm token binds the
//! subscriber's current confirmation nonce, which confirming clears: the link works once. A
//! digest token binds its edition's date, so it opens that one digest and no other.
//! Tokens cannot be forged or guessed (128-bit tag) and cannot be used for another purpose
//! or another subscriber.
//!
//! The return-path token of a VERP envelope sender (`bounces+TOKEN@example.org`) is shorter
//! and of another shape, since it lives in an address's local part: lower-case base32 (some
//! relays fold the case of a local part), `subscriber id | edition day | tag`, 32
//! characters, its 72-bit tag an HMAC over the same key with a purpose of its own. It only
//! says which digest a bounce is about; a forger would have to guess the tag for one
//! subscriber and one edition through the bounce intake itself.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::{EditionDate, SubscriberId};

const VERSION: u8 = 1;
const BODY_LEN: usize = 1 + 1 + 8 + 8;
const TAG_LEN: usize = 16;
const MIN_KEY_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Unsubscribe = 1,
    Preferences = 2,
    Confirm = 3,
    /// Reads a subscriber's personal feed: it lives in a feed reader's settings, so it only
    /// reads, and cannot change or end the subscription.
    Feed = 4,
    /// Names the digest (or notice) a bounce is about, in a VERP envelope sender.
    ReturnPath = 5,
    /// Reads a subscriber's own copy of one digest on the web ("view in your browser"),
    /// bound to its edition's date. Mail is forwarded, so it only reads, too.
    Digest = 6,
}

/// Bytes of a return-path token: subscriber id, edition day, tag.
const RETURN_BODY_LEN: usize = 8 + 3;
const RETURN_TAG_LEN: usize = 9;
/// Characters of a return-path token: 20 bytes in base32.
pub const RETURN_TOKEN_CHARS: usize = (RETURN_BODY_LEN + RETURN_TAG_LEN) * 8 / 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, tampered with, signed by another key, or meant for something else: one
    /// error for all of them, so an answer reveals nothing about which.
    #[error("the link is not valid")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(********)")
    }
}

/// The links every mail and page gives a subscriber, signed with the key and rooted at the
/// public URL: built once at start, handed to whoever writes links.
#[derive(Clone, Debug)]
pub struct Links {
    key: TokenKey,
    /// The public URL without a trailing slash, ready for `format!("{base}/unsubscribe")`.
    base: String,
}

impl Links {
    pub fn new(key: TokenKey, public_url: &str) -> Self {
        Self {
            key,
            base: public_url.trim_end_matches('/').to_string(),
        }
    }

    /// The key the links are signed with, for the pages that check them.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// The public URL without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn unsubscribe(&self, id: SubscriberId) -> String {
        format!(
            "{}/unsubscribe?token={}",
            self.base,
            self.key.sign(Purpose::Unsubscribe, id, None, 0)
        )
    }

    pub fn preferences(&self, id: SubscriberId) -> String {
        format!(
            "{}/preferences?token={}",
            self.base,
            self.key.sign(Purpose::Preferences, id, None, 0)
        )
    }

    /// A confirmation link: valid until `expires`, and only while the subscriber's
    /// confirmation nonce is still `nonce`.
    pub fn confirm(&self, id: SubscriberId, expires: DateTime<Utc>, nonce: u64) -> String {
        format!(
            "{}/confirm?token={}",
            self.base,
            self.key.sign(Purpose::Confirm, id, Some(expires), nonce)
        )
    }

    /// Their own copy of the digest of `date` on the web.
    pub fn digest(&self, id: SubscriberId, date: EditionDate) -> String {
        format!(
            "{}/digest/{date}?token={}",
            self.base,
            self.key
                .sign(Purpose::Digest, id, None, digest_binding(date))
        )
    }

    /// The address of a subscriber's personal feed: the digests they were sent.
    pub fn feed(&self, id: SubscriberId) -> String {
        format!(
            "{}/feed/{}.xml",
            self.base,
            self.key.sign(Purpose::Feed, id, None, 0)
        )
    }
}

impl TokenKey {
    pub fn from_bytes(bytes: Vec<u8>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bytes.len() >= MIN_KEY_LEN,
            "the signing key must be at least {MIN_KEY_LEN} bytes, it is {}",
            bytes.len()
        );
        Ok(Self(bytes))
    }

    /// Reads the key from `path`, or creates a random one there (mode 0600) when the file
    /// does not exist yet, so links in mail already sent keep working across restarts.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        match std::fs::read(path) {
            Ok(bytes) => {
                Self::from_bytes(bytes).with_context(|| format!("signing key {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options
                    .open(path)
                    .with_context(|| format!("creating signing key {}", path.display()))?;
                file.write_all(&key)?;
                file.sync_all()?;
                Ok(Self(key.to_vec()))
            }
            Err(e) => Err(e).with_context(|| format!("reading signing key {}", path.display())),
        }
    }

    fn mac(&self, body: &[u8], binding: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(body);
        mac.update(&binding.to_be_bytes());
        mac
    }

    /// A token for `purpose` and `subscriber`, valid until `expires` (if given) and only
    /// while `binding` stays the same (0 binds nothing).
    pub fn sign(
        &self,
        purpose: Purpose,
        subscriber: SubscriberId,
        expires: Option<DateTime<Utc>>,
        binding: u64,
    ) -> String {
        let mut raw = Vec::with_capacity(BODY_LEN + TAG_LEN);
        raw.push(VERSION);
        raw.push(purpose as u8);
        raw.extend_from_slice(&subscriber.to_bytes());
        raw.extend_from_slice(&expires.map_or(0, |t| t.timestamp()).to_be_bytes());
        let tag = self.mac(&raw, binding).finalize().into_bytes();
        raw.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whose token this claims to be, before any check: only for looking up the binding
    /// to pass to [`TokenKey::verify`].
    pub fn claimed_subscriber(token: &str) -> Option<SubscriberId> {
        let raw = decode(token)?;
        Some(SubscriberId::from_u64(u64::from_be_bytes(
            raw[2..10].try_into().expect("8 bytes"),
        )))
    }

    /// Checks a token for `purpose` and `binding` and returns whose it is.
    pub fn verify(
        &self,
        purpose: Purpose,
        token: &str,
        now: DateTime<Utc>,
        binding: u64,
    ) -> Result<SubscriberId, TokenError> {
        let raw = decode(token).ok_or(TokenError::Invalid)?;
        let (body, tag) = raw.split_at(BODY_LEN);
        self.mac(body, binding)
            .verify_truncated_left(tag)
            .map_err(|_| TokenError::Invalid)?;
        if body[0] != VERSION || body[1] != purpose as u8 {
            return Err(TokenError::Invalid);
        }
        let id = u64::from_be_bytes(body[2..10].try_into().expect("8 bytes"));
        let expires = i64::from_be_bytes(body[10..18].try_into().expect("8 bytes"));
        if expires != 0 && now.timestamp() > expires {
            return Err(TokenError::Expired);
        }
        Ok(SubscriberId::from_u64(id))
    }
}

/// What a digest token is bound to: its edition's date.
pub fn digest_binding(date: EditionDate) -> u64 {
    date.day_number().into()
}

impl TokenKey {
    /// The return-path token for a message to `subscriber`: a digest of `edition`, or a
    /// notice about the subscription (`None`).
    pub fn sign_return(&self, subscriber: SubscriberId, edition: Option<EditionDate>) -> String {
        let mut raw = Vec::with_capacity(RETURN_BODY_LEN + RETURN_TAG_LEN);
        raw.extend_from_slice(&subscriber.to_bytes());
        let day = edition.map_or(0, |d| d.day_number());
        raw.extend_from_slice(&day.to_be_bytes()[1..]);
        let tag = self.return_mac(&raw).finalize().into_bytes();
        raw.extend_from_slice(&tag[..RETURN_TAG_LEN]);
        base32(&raw)
    }

    /// Whose message a return-path token names, and which edition (`None`: a notice), if
    /// this key signed it. Case does not matter.
    pub fn verify_return(
        &self,
        token: &str,
    ) -> Result<(SubscriberId, Option<EditionDate>), TokenError> {
        let raw = unbase32(token)
            .filter(|r| r.len() == RETURN_BODY_LEN + RETURN_TAG_LEN)
            .ok_or(TokenError::Invalid)?;
        let (body, tag) = raw.split_at(RETURN_BODY_LEN);
        self.return_mac(body)
            .verify_truncated_left(tag)
            .map_err(|_| TokenError::Invalid)?;
        let id = SubscriberId::from_u64(u64::from_be_bytes(body[..8].try_into().expect("8")));
        let day = u32::from_be_bytes([0, body[8], body[9], body[10]]);
        let edition = match day {
            0 => None,
            n => Some(EditionDate::from_day_number(n).ok_or(TokenError::Invalid)?),
        };
        Ok((id, edition))
    }

    fn return_mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&[VERSION, Purpose::ReturnPath as u8]);
        mac.update(body);
        mac
    }
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32 in lower case, without padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// [`base32`] read back, in either case; `None` for anything else, or a token too long.
fn unbase32(text: &str) -> Option<Vec<u8>> {
    if text.len() > 2 * RETURN_TOKEN_CHARS {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = BASE32.iter().position(|&x| x == c.to_ascii_lowercase())? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn decode(token: &str) -> Option<Vec<u8>> {
    if token.len() > 64 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    (raw.len() == BODY_LEN + TAG_LEN).then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn key(b: u8) -> TokenKey {
        TokenKey::from_bytes(vec![b; 32]).unwrap()
    }

    #[test]
    fn round_trip() {
        let id = SubscriberId::from_u64(42);
        let t = key(1).sign(Purpose::Unsubscribe, id, None, 0);
        assert_eq!(
            key(1).verify(Purpose::Unsubscribe, &t, Utc::now(), 0),
            Ok(id)
        );
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn a_digest_token_opens_its_own_edition_only() {
        let id = SubscriberId::from_u64(42);
        let day = |d| EditionDate::parse(d).unwrap();
        let links = Links::new(key(1), "https://p.example.org/");
        let url = links.digest(id, day("2025-12-09"));
        let token = url
            .strip_prefix("https://p.example.org/digest/2025-12-09?token=")
            .expect("the digest's address");
        let now = Utc::now();
        let on = |d| digest_binding(day(d));
        assert_eq!(
            key(1).verify(Purpose::Digest, token, now, on("2025-12-09")),
            Ok(id)
        );
        assert_eq!(
            key(1).verify(Purpose::Digest, token, now, on("2025-12-08")),
            Err(TokenError::Invalid)
        );
        for other in [Purpose::Unsubscribe, Purpose::Preferences, Purpose::Feed] {
            assert_eq!(
                key(1).verify(other, token, now, on("2025-12-09")),
                Err(TokenError::Invalid)
            );
            assert_eq!(
                key(1).verify(other, token, now, 0),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn bound_to_purpose_key_and_content() {
        let id = SubscriberId::from_u64(42);
        let t = key(1).sign(Purpose::Unsubscribe, id, None, 0);
        let now = Utc::now();
        for other in [Purpose::Preferences, Purpose::Confirm, Purpose::Feed] {
            assert_eq!(key(1).verify(other, &t, now, 0), Err(TokenError::Invalid));
        }
        // Nor the other way round: a feed token, shared with a feed reader, cannot unsubscribe.
        let feed = key(1).sign(Purpose::Feed, id, None, 0);
        assert_eq!(key(1).verify(Purpose::Feed, &feed, now, 0), Ok(id));
        assert_eq!(
            key(1).verify(Purpose::Unsubscribe, &feed, now, 0),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            key(2).verify(Purpose::Unsubscribe, &t, now, 0),
            Err(TokenError::Invalid)
        );
        // Flip every bit in turn: no tampered token may pass.
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() * 8 {
            let mut m = raw.clone();
            m[i / 8] ^= 1 << (i % 8);
            let forged = URL_SAFE_NO_PAD.encode(m);
            assert!(
                key(1)
                    .verify(Purpose::Unsubscribe, &forged, now, 0)
                    .is_err()
            );
        }
        for junk in ["", "abc", "!!!!", &"A".repeat(500)] {
            assert_eq!(
                key(1).verify(Purpose::Unsubscribe, junk, now, 0),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn confirm_tokens_expire() {
        let id = SubscriberId::from_u64(7);
        let now = Utc::now();
        let t = key(1).sign(Purpose::Confirm, id, Some(now + Duration::hours(48)), 99);
        assert_eq!(key(1).verify(Purpose::Confirm, &t, now, 99), Ok(id));
        assert_eq!(
            key(1).verify(Purpose::Confirm, &t, now + Duration::hours(49), 99),
            Err(TokenError::Expired)
        );
        // Once the nonce changes (the subscriber confirmed), the link is dead.
        assert_eq!(
            key(1).verify(Purpose::Confirm, &t, now, 100),
            Err(TokenError::Invalid)
        );
        assert_eq!(TokenKey::claimed_subscriber(&t), Some(id));
    }

    #[test]
    fn return_path_tokens_name_subscriber_and_edition() {
        let id = SubscriberId::from_u64(0xfedc_ba98_7654_3210);
        let date = EditionDate::parse("2026-12-01").unwrap();
        let t = key(1).sign_return(id, Some(date));
        assert_eq!(t.len(), RETURN_TOKEN_CHARS);
        assert!(
            t.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(key(1).verify_return(&t), Ok((id, Some(date))));
        assert_eq!(
            key(1).verify_return(&t.to_uppercase()),
            Ok((id, Some(date)))
        );
        let notice = key(1).sign_return(id, None);
        assert_eq!(key(1).verify_return(&notice), Ok((id, None)));
        assert_eq!(key(2).verify_return(&t), Err(TokenError::Invalid));
        // Change any one character: no tampered token may pass.
        for i in 0..t.len() {
            let mut forged = t.clone().into_bytes();
            forged[i] = if forged[i] == b'a' { b'b' } else { b'a' };
            let forged = String::from_utf8(forged).unwrap();
            assert!(key(1).verify_return(&forged).is_err(), "{forged}");
        }
        for junk in ["", "abc", "!!!!", &"a".repeat(500), &t[..30]] {
            assert_eq!(key(1).verify_return(junk), Err(TokenError::Invalid));
        }
        // Nor does a link token pass as one, or the other way round.
        let link = key(1).sign(Purpose::Unsubscribe, id, None, 0);
        assert!(key(1).verify_return(&link).is_err());
        assert!(
            key(1)
                .verify(Purpose::Unsubscribe, &t, Utc::now(), 0)
                .is_err()
        );
    }

    #[test]
    fn key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let a = TokenKey::load_or_create(&path).unwrap();
        let b = TokenKey::load_or_create(&path).unwrap();
        let id = SubscriberId::from_u64(1);
        let t = a.sign(Purpose::Unsubscribe, id, None, 0);
        assert_eq!(b.verify(Purpose::Unsubscribe, &t, Utc::now(), 0), Ok(id));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(TokenKey::load_or_create(&path).is_err());
    }
}
