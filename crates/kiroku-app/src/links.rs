//! Signed links: what a page's one-click "Acknowledge" button and a
//! calendar's feed URL carry instead of a login. A link names what it is
//! for, who it was made for and when it expires, and is signed with
//! HMAC-SHA256 under a key only the server holds, so it can be neither
//! forged nor stretched to another incident, person or purpose.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;
use uuid::Uuid;

/// The server's link key. Every node serving one database must hold the
/// same one, or links made by one are refused by the other.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(…)")
    }
}

impl LinkKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        LinkKey(bytes)
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    /// A link for `purpose` (e.g. `ack`), about `subject`, for `person`,
    /// good until `expires`.
    pub fn sign(&self, link: &Link) -> String {
        let payload = link.encode();
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{}.{signature}", URL_SAFE_NO_PAD.encode(payload))
    }

    /// The link a token carries, if this key signed it for `purpose`. An
    /// expired link is told apart from a forged one, so the person who
    /// clicks it learns to look for a fresh one.
    pub fn verify(&self, token: &str, purpose: &str, now: Timestamp) -> Result<Link, LinkError> {
        let (payload, signature) = token.split_once('.').ok_or(LinkError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| LinkError::Invalid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkError::Invalid)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&signature)
            .map_err(|_| LinkError::Invalid)?;
        let link = std::str::from_utf8(&payload)
            .ok()
            .and_then(Link::decode)
            .ok_or(LinkError::Invalid)?;
        if link.purpose != purpose {
            return Err(LinkError::Invalid);
        }
        if link.expires.is_some_and(|e| e <= now) {
            return Err(LinkError::Expired);
        }
        Ok(link)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub purpose: String,
    pub subject: Uuid,
    pub person: Option<Uuid>,
    /// None: good until the key changes (calendar feeds).
    pub expires: Option<Timestamp>,
    /// Who made it, when that decides whether it still works (a calendar
    /// feed stops with its maker's access).
    pub by: Option<Uuid>,
}

impl Link {
    fn encode(&self) -> String {
        let person = self.person.map(|p| p.to_string()).unwrap_or_default();
        let expires = self
            .expires
            .map(|e| e.as_second().to_string())
            .unwrap_or_default();
        let by = self.by.map(|b| b.to_string()).unwrap_or_default();
        format!("{}|{}|{person}|{expires}|{by}", self.purpose, self.subject)
    }

    fn decode(s: &str) -> Option<Link> {
        let mut parts = s.split('|');
        let purpose = parts.next()?.to_string();
        let subject = Uuid::parse_str(parts.next()?).ok()?;
        let person = match parts.next()? {
            "" => None,
            p => Some(Uuid::parse_str(p).ok()?),
        };
        let expires = match parts.next()? {
            "" => None,
            e => Some(Timestamp::from_second(e.parse().ok()?).ok()?),
        };
        let by = match parts.next()? {
            "" => None,
            b => Some(Uuid::parse_str(b).ok()?),
        };
        parts.next().is_none().then_some(Link {
            purpose,
            subject,
            person,
            expires,
            by,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is not one Kiroku made, or it was altered")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            purpose: "ack".into(),
            subject: Uuid::from_u128(7),
            person: Some(Uuid::from_u128(9)),
            expires: Some(Timestamp::from_second(2_000).unwrap()),
            by: None,
        }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let key = LinkKey::new([1; 32]);
        let token = key.sign(&link());
        let at = Timestamp::from_second(1_000).unwrap();
        assert_eq!(key.verify(&token, "ack", at), Ok(link()));
        assert_eq!(
            key.verify(&token, "ack", Timestamp::from_second(2_000).unwrap()),
            Err(LinkError::Expired)
        );
        // Another purpose, another key, an altered payload: forged.
        assert_eq!(key.verify(&token, "ical", at), Err(LinkError::Invalid));
        assert_eq!(
            LinkKey::new([2; 32]).verify(&token, "ack", at),
            Err(LinkError::Invalid)
        );
        let (_, sig) = token.split_once('.').unwrap();
        let other = Link {
            subject: Uuid::from_u128(8),
            ..link()
        };
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(other.encode()));
        assert_eq!(key.verify(&forged, "ack", at), Err(LinkError::Invalid));
        for junk in ["", ".", "a.b", "%%%.%%%", &token[..token.len() - 2]] {
            assert_eq!(
                key.verify(junk, "ack", at),
                Err(LinkError::Invalid),
                "{junk}"
            );
        }
        assert_eq!(format!("{key:?}"), "LinkKey(…)");
    }
}
