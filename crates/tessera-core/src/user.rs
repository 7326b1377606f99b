//! Users and the claims drawn from their profile.

use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

use crate::UnixTime;
use crate::clock::rfc3339;
use crate::scope::Scope;

/// The picture of SMS users: Gravatar's generic silhouette, which says nothing about the user.
pub const SMS_PICTURE: &str =
    "https://s.gravatar.com/avatar/00000000000000000000000000000000?s=480&d=mp";

/// A stored user. `user_id` is `<provider>|<24 hex>` (`email|…` or `sms|…`).
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: String,
    pub connection: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone_number: Option<String>,
    pub phone_verified: bool,
    pub name: String,
    pub nickname: String,
    pub picture: String,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    pub last_login: Option<UnixTime>,
    pub logins_count: i64,
    pub blocked: bool,
    /// Auth0's `app_metadata`: what the operator's back end knows about the user (a JSON object).
    pub app_metadata: Map<String, Value>,
    /// Auth0's `user_metadata`: the user's own preferences (a JSON object).
    pub user_metadata: Map<String, Value>,
}

impl User {
    /// The profile a new email user gets on first sign-in.
    pub fn new_email_user(hex_id: &str, connection: &str, email: &str, now: UnixTime) -> User {
        let nickname = email
            .rsplit_once('@')
            .map(|(l, _)| l)
            .unwrap_or(email)
            .to_string();
        User {
            user_id: format!("email|{hex_id}"),
            connection: connection.to_string(),
            email: Some(email.to_string()),
            email_verified: true,
            phone_number: None,
            phone_verified: false,
            name: email.to_string(),
            nickname,
            picture: gravatar(email),
            created_at: now,
            updated_at: now,
            last_login: Some(now),
            logins_count: 1,
            blocked: false,
            app_metadata: Map::new(),
            user_metadata: Map::new(),
        }
    }

    /// The profile a new SMS user gets on first sign-in: named by the number.
    pub fn new_sms_user(hex_id: &str, connection: &str, phone: &str, now: UnixTime) -> User {
        User {
            user_id: format!("sms|{hex_id}"),
            connection: connection.to_string(),
            email: None,
            email_verified: false,
            phone_number: Some(phone.to_string()),
            phone_verified: true,
            name: phone.to_string(),
            nickname: phone.to_string(),
            // Not a hash of the number: an md5 of a phone number is easy to reverse.
            picture: SMS_PICTURE.to_string(),
            created_at: now,
            updated_at: now,
            last_login: Some(now),
            logins_count: 1,
            blocked: false,
            app_metadata: Map::new(),
            user_metadata: Map::new(),
        }
    }

    /// OpenID Connect claims for this user, filtered by scope (`profile`, `email`, `phone`).
    pub fn claims(&self, scope: &Scope) -> Map<String, Value> {
        let mut m = Map::new();
        if scope.has("profile") {
            m.insert("nickname".into(), json!(self.nickname));
            m.insert("name".into(), json!(self.name));
            m.insert("picture".into(), json!(self.picture));
            m.insert("updated_at".into(), json!(rfc3339(self.updated_at)));
        }
        if scope.has("email")
            && let Some(e) = &self.email
        {
            m.insert("email".into(), json!(e));
            m.insert("email_verified".into(), json!(self.email_verified));
        }
        if scope.has("phone")
            && let Some(p) = &self.phone_number
        {
            m.insert("phone_number".into(), json!(p));
            m.insert("phone_number_verified".into(), json!(self.phone_verified));
        }
        m
    }
}

/// The Gravatar URL Auth0 uses: md5 of the lower-cased email, with an initials fallback.
pub fn gravatar(email: &str) -> String {
    let lower = email.trim().to_lowercase();
    let hash = hex::encode(Md5::digest(lower.as_bytes()));
    let initials: String = lower
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .take(2)
        .collect();
    let initials = if initials.is_empty() {
        "us".to_string()
    } else {
        initials
    };
    format!(
        "https://s.gravatar.com/avatar/{hash}?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2F{initials}.png"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gravatar_matches_auth0s_recorded_example() {
        // go-auth0's recorded /userinfo answer for test-user@example.com
        assert_eq!(
            gravatar("test-user@example.com"),
            "https://s.gravatar.com/avatar/3664adb7d1eea0bd7d0b134577663889?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2Fte.png"
        );
    }

    #[test]
    fn new_email_user_profile() {
        let u = User::new_email_user("65c4bca2b6c3ddf424cef5d5", "email", "jane@example.com", 10);
        assert_eq!(u.user_id, "email|65c4bca2b6c3ddf424cef5d5");
        assert_eq!(u.nickname, "jane");
        assert_eq!(u.name, "jane@example.com");
        assert!(u.email_verified);
        assert_eq!(u.logins_count, 1);
    }

    #[test]
    fn claims_follow_scope() {
        let u = User::new_email_user("65c4bca2b6c3ddf424cef5d5", "email", "jane@example.com", 10);
        assert!(u.claims(&Scope::parse("openid")).is_empty());
        let e = u.claims(&Scope::parse("openid email"));
        assert_eq!(e.len(), 2);
        assert_eq!(e["email"], "jane@example.com");
        assert_eq!(e["email_verified"], true);
        let p = u.claims(&Scope::parse("openid profile"));
        assert_eq!(p["nickname"], "jane");
        assert_eq!(p["updated_at"], "1970-01-01T00:00:10.000Z");
        assert!(!p.contains_key("email"));
        assert!(u.claims(&Scope::parse("phone")).is_empty());
    }
}
