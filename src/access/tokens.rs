//! Token secrets: made from the OS's random source, kept only as SHA-256, compared in
//! constant time.

use std::fmt::Write;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every token starts with this, so a leaked one is easy to recognise (secret scanners).
pub const PREFIX: &str = "tsk_";

/// A freshly made token: the text to hand out once, and what is stored of it.
pub struct NewSecret {
    /// `tsk_<id>_<secret>`, shown once and never stored.
    pub token: String,
    /// The public id.
    pub id: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex(&buffer)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The hex SHA-256 of a secret.
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// A new token with a 64-bit id and a 256-bit secret.
pub fn new_secret() -> NewSecret {
    let id = random_hex(8);
    let secret = random_hex(32);
    NewSecret {
        token: format!("{PREFIX}{id}_{secret}"),
        secret_sha256: digest(&secret),
        id,
    }
}

/// The id and secret of a presented token, if it has the token's shape.
pub fn split(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let hex_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_digits(id) && hex_digits(secret)).then_some((id, secret))
}

/// Whether `secret` is the one whose digest was stored; constant time in the digest.
pub fn matches(secret: &str, stored_sha256: &str) -> bool {
    digest(secret)
        .as_bytes()
        .ct_eq(stored_sha256.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_verifies_and_a_changed_one_does_not() {
        let made = new_secret();
        let (id, secret) = split(&made.token).expect("its own shape");
        assert_eq!(id, made.id);
        assert!(matches(secret, &made.secret_sha256));
        let mut other = secret.to_string();
        other.replace_range(0..1, if other.starts_with('0') { "1" } else { "0" });
        assert!(!matches(&other, &made.secret_sha256));
        assert_ne!(new_secret().token, made.token);
    }

    #[test]
    fn only_the_token_shape_splits() {
        assert!(split("tsk_ab12_cd34").is_some());
        for bad in [
            "",
            "tsk_",
            "tsk_ab12",
            "tsk__cd",
            "tsk_ab_",
            "xx_ab_cd",
            "tsk_zz_cd",
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
    }
}
