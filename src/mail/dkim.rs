//! DKIM signatures (RFC 6376) on every message paperboy sends, made where a message becomes
//! bytes, so the file outbox, lettre and the pipelining client all carry the same signed
//! message.
//!
//! lettre does the signing; this module reads the key (RSA in either PEM form, or Ed25519)
//! and decides which headers the signature covers. The key is read once, at start: a key
//! that cannot sign is a config error then, never a failed send later.

use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey, dkim_sign,
};
use lettre::message::header::HeaderName;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::der::SecretDocument;
use rsa::pkcs8::{DecodePrivateKey, ObjectIdentifier, PrivateKeyInfo};
use rsa::traits::PublicKeyParts;

use crate::config::{ConfigError, DkimSettings};

/// The headers a signature covers. RFC 8058 requires `List-Unsubscribe` and
/// `List-Unsubscribe-Post` to be signed for one-click unsubscription to be trusted; the rest
/// is what a reader sees and what makes the message MIME. A header a message lacks (notices
/// have no list headers) is still listed, which per RFC 6376 5.4 keeps anyone on the way from
/// adding one that would pass as signed.
const SIGNED: [&str; 11] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
];

/// RFC 8301: verifiers reject RSA keys under 1024 bits; 2048 is what to publish.
const MIN_RSA_BITS: usize = 1024;

const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Why a key cannot sign, in words for the config error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct KeyError(String);

/// Signs messages for one domain with one key.
pub struct Signer {
    config: DkimConfig,
    algorithm: &'static str,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer `[mail.dkim]` describes; every way the key or names can be wrong is an
    /// error naming the key.
    pub fn from_settings(dkim: &DkimSettings) -> Result<Self, ConfigError> {
        // Both end up in DNS names (SELECTOR._domainkey.DOMAIN) and in the signature header.
        let dns_name = |s: &str| {
            !s.is_empty()
                && !s.starts_with(['.', '-'])
                && !s.ends_with(['.', '-'])
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
        if !dns_name(&dkim.selector) {
            return Err(ConfigError::invalid(
                "mail.dkim.selector",
                format!("'{}' is not a DNS label like \"paperboy\"", dkim.selector),
            ));
        }
        if !dns_name(&dkim.domain) || !dkim.domain.contains('.') {
            return Err(ConfigError::invalid(
                "mail.dkim.domain",
                format!("'{}' is not a domain like example.org", dkim.domain),
            ));
        }
        let Some(pem) = &dkim.key else {
            return Err(ConfigError::invalid(
                "mail.dkim.key_file",
                "not set, and no dkim-key credential: DKIM needs a private key",
            ));
        };
        Self::new(&dkim.selector, &dkim.domain, pem.expose()).map_err(|e| {
            let file = dkim
                .key_file
                .as_ref()
                .map_or_else(String::new, |f| format!("{}: ", f.display()));
            ConfigError::invalid("mail.dkim.key_file", format!("{file}{e}"))
        })
    }

    /// A signer for `d=domain; s=selector` with the private key in `pem`: PKCS#1 RSA
    /// (`BEGIN RSA PRIVATE KEY`), or PKCS#8 (`BEGIN PRIVATE KEY`) RSA or Ed25519.
    pub fn new(selector: &str, domain: &str, pem: &str) -> Result<Self, KeyError> {
        let (key, algorithm) = signing_key(pem)?;
        let config = DkimConfig::new(
            selector.to_string(),
            domain.to_string(),
            key,
            SIGNED
                .iter()
                .map(|h| HeaderName::new_from_ascii_str(h))
                .collect(),
            // Relaxed both ways: relays that refold headers or trim trailing blanks do not
            // break it.
            DkimCanonicalization {
                header: DkimCanonicalizationType::Relaxed,
                body: DkimCanonicalizationType::Relaxed,
            },
        );
        Ok(Self { config, algorithm })
    }

    /// `rsa` or `ed25519`, for the startup log.
    pub fn algorithm(&self) -> &'static str {
        self.algorithm
    }

    /// Adds the `DKIM-Signature` header. The message must be complete: anything changed
    /// after this breaks the signature.
    pub fn sign(&self, message: &mut Message) {
        dkim_sign(message, &self.config);
    }
}

fn signing_key(pem: &str) -> Result<(DkimSigningKey, &'static str), KeyError> {
    let bad = |what: String| KeyError(what);
    let (label, document) = SecretDocument::from_pem(pem.trim())
        .map_err(|e| bad(format!("not a PEM private key ({e})")))?;
    match label {
        "RSA PRIVATE KEY" => {
            let key = rsa::RsaPrivateKey::from_pkcs1_der(document.as_bytes())
                .map_err(|e| bad(format!("not an RSA private key ({e})")))?;
            rsa_key(&key)
        }
        "PRIVATE KEY" => {
            let info = PrivateKeyInfo::try_from(document.as_bytes())
                .map_err(|e| bad(format!("not a PKCS#8 private key ({e})")))?;
            match info.algorithm.oid {
                RSA_OID => {
                    let key = rsa::RsaPrivateKey::from_pkcs8_der(document.as_bytes())
                        .map_err(|e| bad(format!("not an RSA private key ({e})")))?;
                    rsa_key(&key)
                }
                ED25519_OID => {
                    // RFC 8410: the private key is an OCTET STRING of the 32-byte seed.
                    let seed = match info.private_key {
                        [0x04, 0x20, seed @ ..] if seed.len() == 32 => seed,
                        _ => return Err(bad("an Ed25519 key of the wrong shape".into())),
                    };
                    use base64::Engine;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(seed);
                    let key = DkimSigningKey::new(&encoded, DkimSigningAlgorithm::Ed25519)
                        .map_err(|e| bad(format!("not an Ed25519 key ({e})")))?;
                    Ok((key, "ed25519"))
                }
                other => Err(bad(format!(
                    "a key of algorithm {other}; DKIM signs with RSA or Ed25519"
                ))),
            }
        }
        other => Err(bad(format!("a PEM \"{other}\", not a private key"))),
    }
}

/// lettre reads RSA keys as PKCS#1 PEM only, so every RSA key goes to it in that form.
fn rsa_key(key: &rsa::RsaPrivateKey) -> Result<(DkimSigningKey, &'static str), KeyError> {
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError(format!(
            "an RSA key of {bits} bits; verifiers reject keys under {MIN_RSA_BITS} (use 2048)"
        )));
    }
    let pkcs1 = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| KeyError(format!("cannot re-encode the RSA key ({e})")))?;
    let key = DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa)
        .map_err(|e| KeyError(format!("not an RSA key ({e})")))?;
    Ok((key, "rsa"))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    #[cfg(feature = "e2e")]
    use std::process::Command;

    use super::*;
    #[cfg(feature = "e2e")]
    use crate::config::{DkimSettings, Settings};
    #[cfg(feature = "e2e")]
    use crate::domain::SubscriberEmail;
    #[cfg(feature = "e2e")]
    use crate::mail::{Formatted, Mailer, Outgoing};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dkim")
            .join(name)
    }

    #[cfg(feature = "e2e")]
    fn mailer(dir: &Path, key: &str) -> Mailer {
        let mut settings = Settings {
            data_dir: dir.to_path_buf(),
            ..Settings::default()
        };
        settings.mail.dkim = Some(DkimSettings {
            selector: "pb".into(),
            domain: "example.org".into(),
            key_file: Some(fixture(key)),
            key: None,
        });
        settings.load_dkim_key().unwrap();
        settings.validate().unwrap();
        Mailer::new(&settings.mail, &settings.outbox_dir()).unwrap()
    }

    #[cfg(feature = "e2e")]
    fn digest(mailer: &Mailer) -> Formatted {
        mailer
            .build(Outgoing {
                to: &SubscriberEmail::parse("ann@example.org").unwrap(),
                subject: "Trending papers, Dec 9: Über-Modelle and 4 more",
                text: "Papers\n\nFrom the abstract: 日本語 \n".repeat(50),
                html: "<p>Papers</p>\n".repeat(50),
                message_id: "<digest.2025-12-09.1@example.org>",
                unsubscribe_url: "https://p.example.org/unsubscribe?token=abc",
            })
            .unwrap()
    }

    /// dkimpy's verdict on `message` with the key record in `record`, and the `h=` list.
    #[cfg(feature = "e2e")]
    fn verify(message: &[u8], record: &str) -> (bool, String) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), message).unwrap();
        let out = Command::new("/usr/bin/python3")
            .arg(fixture("verify.py"))
            .arg(file.path())
            .arg(fixture(record))
            .arg("pb._domainkey.example.org")
            .output()
            .expect("python3 runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("ModuleNotFoundError"),
            "dkimpy is missing (scripts/install-test-deps installs python3-dkim): {stderr}"
        );
        let h = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success(), h)
    }

    #[cfg(feature = "e2e")]
    #[test]
    fn every_key_form_signs_what_an_independent_verifier_accepts() {
        let dir = tempfile::tempdir().unwrap();
        for (key, record, a) in [
            ("rsa-pkcs1.pem", "rsa.txt", "a=rsa-sha256"),
            ("rsa-pkcs8.pem", "rsa.txt", "a=rsa-sha256"),
            ("ed25519.pem", "ed25519.txt", "a=ed25519-sha256"),
        ] {
            let mailer = mailer(dir.path(), key);
            let message = digest(&mailer);
            let text = String::from_utf8_lossy(message.as_bytes()).into_owned();
            assert!(
                text.contains(&format!("\r\nDKIM-Signature: v=1; {a};")),
                "{key}"
            );
            let (ok, h) = verify(message.as_bytes(), record);
            assert!(ok, "{key}: the signature does not verify:\n{text}");
            let signed: Vec<&str> = h.split(':').collect();
            for header in [
                "from",
                "to",
                "subject",
                "date",
                "message-id",
                "mime-version",
                "content-type",
                "list-unsubscribe",
                "list-unsubscribe-post",
            ] {
                assert!(signed.contains(&header), "{key}: h={h} lacks {header}");
            }
            // Notices are signed too.
            let notice = mailer
                .build_notice(
                    &SubscriberEmail::parse("bob@example.org").unwrap(),
                    "confirm",
                    "Confirm your subscription",
                    "Confirm: https://p.example.org/confirm?token=x\n".into(),
                    "<p>Confirm</p>\n".into(),
                )
                .unwrap();
            assert!(verify(notice.as_bytes(), record).0, "{key}: notice");
        }
    }

    #[cfg(feature = "e2e")]
    #[test]
    fn a_changed_unsubscribe_link_or_a_wrong_key_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        let message = digest(&mailer(dir.path(), "rsa-pkcs8.pem"));
        let text = String::from_utf8(message.as_bytes().to_vec()).unwrap();
        let tampered = text.replace("token=abc", "token=abd");
        assert_ne!(tampered, text);
        assert!(!verify(tampered.as_bytes(), "rsa.txt").0);
        assert!(!verify(message.as_bytes(), "ed25519.txt").0);
    }

    #[test]
    fn keys_that_cannot_sign_are_refused_with_a_reason() {
        let read = |name: &str| std::fs::read_to_string(fixture(name)).unwrap();
        let err = |pem: &str| Signer::new("pb", "example.org", pem).unwrap_err().0;
        assert!(err("hunter2").contains("not a PEM private key"));
        assert!(err(&read("rsa-768.pem")).contains("768 bits"));
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAEAnaIAZHXp/IeKxiVpEWovhInxXhLtzOA+/e5Fzhkb0=\n-----END PUBLIC KEY-----\n";
        assert!(err(public).contains("PUBLIC KEY"), "{}", err(public));
        assert_eq!(
            Signer::new("pb", "example.org", &read("ed25519.pem"))
                .unwrap()
                .algorithm(),
            "ed25519"
        );
    }
}
