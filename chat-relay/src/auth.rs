//! Identity: a viewer's JWT (HS256, `sub` = user id, `name`, `exp`), and the admin token.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::protocol::User;

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize)]
struct Minted<'a> {
    sub: &'a str,
    name: &'a str,
    exp: u64,
}

/// Checks tokens with the configured secret (and mints guests' with it).
pub struct Auth {
    key: DecodingKey,
    signing: EncodingKey,
    validation: Validation,
    admin: Vec<u8>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Expired.
    #[error("the token has expired")]
    Expired,
    /// Bad signature, malformed, or missing claims.
    #[error("the token is not valid")]
    Invalid,
}

impl Auth {
    /// With the HS256 `secret` and the `admin` token.
    pub fn new(secret: &str, admin: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            signing: EncodingKey::from_secret(secret.as_bytes()),
            validation,
            admin: admin.as_bytes().to_vec(),
        }
    }

    /// The user of `token`.
    pub fn user(&self, token: &str) -> Result<User, Refused> {
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refused::Expired,
                _ => Refused::Invalid,
            })?;
        let Claims { sub, name } = data.claims;
        if sub.is_empty() || sub.len() > 128 {
            return Err(Refused::Invalid);
        }
        let name = name
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(64).collect())
            .unwrap_or_else(|| sub.clone());
        Ok(User { id: sub, name })
    }

    /// A token for `user` that expires at `exp` (unix seconds).
    pub fn mint(&self, user: &User, exp: u64) -> String {
        let claims = Minted {
            sub: &user.id,
            name: &user.name,
            exp,
        };
        // HS256 over a serializable struct cannot fail.
        encode(&Header::new(Algorithm::HS256), &claims, &self.signing).unwrap_or_default()
    }

    /// Whether `authorization` (a header value) is `Bearer <admin token>`; compared in
    /// constant time.
    pub fn is_admin(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        let token = token.as_bytes();
        token.len() == self.admin.len()
            && token
                .iter()
                .zip(&self.admin)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encodes")
    }

    #[test]
    fn tokens_name_their_user_and_bad_ones_are_refused() {
        let auth = Auth::new("dev-chat-secret", "dev-admin-token");
        let exp = 4_000_000_000u64;
        let good = token(
            "dev-chat-secret",
            serde_json::json!({"sub": "u1", "name": "Ann", "exp": exp}),
        );
        assert_eq!(
            auth.user(&good),
            Ok(User {
                id: "u1".into(),
                name: "Ann".into()
            })
        );
        let forged = token(
            "another-secret",
            serde_json::json!({"sub": "u1", "exp": exp}),
        );
        assert_eq!(auth.user(&forged), Err(Refused::Invalid));
        let old = token(
            "dev-chat-secret",
            serde_json::json!({"sub": "u1", "exp": 1000}),
        );
        assert_eq!(auth.user(&old), Err(Refused::Expired));
        assert_eq!(auth.user("garbage"), Err(Refused::Invalid));
        assert!(auth.is_admin(Some("Bearer dev-admin-token")));
        assert!(!auth.is_admin(Some("Bearer dev-admin-tokem")));
        assert!(!auth.is_admin(None));
        let guest = User {
            id: "guest-1".into(),
            name: "Bo".into(),
        };
        assert_eq!(auth.user(&auth.mint(&guest, exp)), Ok(guest));
    }
}
