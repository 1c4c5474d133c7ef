//! Secrets: Argon2id password hashes, random bearer secrets stored as
//! SHA-256 digests, and TOTP (RFC 6238) second factors.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::{AppError, Result};

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| AppError::Internal(format!("random source: {e}")))?;
    Ok(b)
}

/// Hashes with Argon2id off the async threads: it is slow on purpose.
pub async fn hash_password(password: String) -> Result<String> {
    let salt = random_bytes::<16>()?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt).map_err(|e| AppError::Internal(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?
}

/// A hash of a password nobody has, verified when the user does not exist
/// so that a wrong name takes as long as a wrong password.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3bZ8Wpp3bTO7Z7Dx1KWOGpwO1QB1qbRMQ2lKuT5D9n8";

pub async fn verify_password(password: String, phc: Option<String>) -> Result<bool> {
    let known = phc.is_some();
    let phc = phc.unwrap_or_else(|| DECOY_HASH.to_string());
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(known && ok)
}

/// A new bearer secret (`kiroku_…`, 256 random bits) and the digest to store.
pub fn new_secret() -> Result<(String, String)> {
    let secret = format!("kiroku_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
    let digest = digest(&secret);
    Ok((secret, digest))
}

/// A routing key: 128 random bits as 32 lowercase hex characters, the shape
/// of PagerDuty's integration keys so that senders accept it.
pub fn new_routing_key() -> Result<String> {
    Ok(kiroku_audit::hex::encode(&random_bytes::<16>()?))
}

/// Secrets carry 256 bits of entropy, so a plain SHA-256 is enough to store
/// them: there is nothing to brute-force, unlike a password.
pub fn digest(secret: &str) -> String {
    kiroku_audit::hex::encode(&Sha256::digest(secret.as_bytes()))
}

pub fn new_totp_secret() -> Result<String> {
    match Secret::Raw(random_bytes::<20>()?.to_vec()).to_encoded() {
        Secret::Encoded(s) => Ok(s),
        Secret::Raw(_) => Err(AppError::Internal("totp secret encoding".into())),
    }
}

const TOTP_STEP: u64 = 30;

fn totp(secret_b32: &str) -> Result<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_string())
        .to_bytes()
        .map_err(|e| AppError::Internal(format!("stored totp secret: {e:?}")))?;
    TOTP::new(Algorithm::SHA1, 6, 1, TOTP_STEP, bytes)
        .map_err(|e| AppError::Internal(format!("totp: {e}")))
}

/// The code an authenticator shows at `unix_time` (for tests and tooling).
pub fn totp_code(secret_b32: &str, unix_time: u64) -> Result<String> {
    Ok(totp(secret_b32)?.generate(unix_time))
}

/// Checks `code` against the steps around `unix_time`; returns the step it
/// matched if that step is newer than `last_step`, so each code works once.
pub fn check_totp(
    secret_b32: &str,
    code: &str,
    unix_time: u64,
    last_step: Option<i64>,
) -> Result<Option<i64>> {
    let t = totp(secret_b32)?;
    let now_step = unix_time / TOTP_STEP;
    for step in [now_step.saturating_sub(1), now_step, now_step + 1] {
        let step_i = step as i64;
        if last_step.is_some_and(|l| step_i <= l) {
            continue;
        }
        let expected = t.generate(step * TOTP_STEP);
        if constant_time_eq(expected.as_bytes(), code.trim().as_bytes()) {
            return Ok(Some(step_i));
        }
    }
    Ok(None)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `otpauth://` URI authenticator apps import (as a QR code or pasted).
pub fn totp_uri(user: &str, secret_b32: &str) -> String {
    format!(
        "otpauth://totp/Kiroku:{user}?secret={secret_b32}&issuer=Kiroku&algorithm=SHA1&digits=6&period={TOTP_STEP}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse battery".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify_password("wrong".into(), Some(h)).await.unwrap());
        assert!(!verify_password("x".into(), None).await.unwrap());
    }

    #[test]
    fn decoy_hash_parses() {
        PasswordHash::new(DECOY_HASH).unwrap();
    }

    #[test]
    fn totp_matches_rfc6238_and_is_single_use() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890" at T=59 → 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let secret = match Secret::Raw(b"12345678901234567890".to_vec()).to_encoded() {
            Secret::Encoded(s) => s,
            Secret::Raw(_) => unreachable!(),
        };
        assert_eq!(totp_code(&secret, 59).unwrap(), "287082");
        let step = check_totp(&secret, "287082", 59, None).unwrap();
        assert_eq!(step, Some(1));
        assert_eq!(check_totp(&secret, "287082", 59, step).unwrap(), None);
        assert_eq!(check_totp(&secret, "000000", 59, None).unwrap(), None);
    }

    #[test]
    fn secrets_are_random_and_digested() {
        let (a, da) = new_secret().unwrap();
        let (b, _) = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("kiroku_"));
        assert_eq!(digest(&a), da);
        assert_eq!(da.len(), 64);
    }
}
