//! Email addresses, parsed once at the edge and normalised.
//!
//! Normalisation: surrounding white space is trimmed, the domain is converted to its ASCII
//! (IDNA) form, and the whole address is lower-cased, as Auth0 does, so `User@Example.COM` and
//! `user@example.com` are one user. The syntax accepted is the common dot-atom form of
//! RFC 5322; quoted local parts, comments and address literals are refused, and so is
//! anything that could smuggle a header (CR, LF, NUL or other control characters).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("email format validation failed")]
pub struct InvalidEmail;

const LOCAL_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-.";

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let s = raw.trim();
        if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_control()) {
            return Err(InvalidEmail);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(InvalidEmail)?;
        if !valid_local(local) {
            return Err(InvalidEmail);
        }
        let domain = normalise_domain(domain).ok_or(InvalidEmail)?;
        let addr = format!("{}@{}", local.to_lowercase(), domain);
        if addr.len() > 254 {
            return Err(InvalidEmail);
        }
        Ok(EmailAddress(addr))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or(&self.0)
    }

    /// The address with most of the local part hidden, for logs.
    pub fn masked(&self) -> String {
        match self.0.rsplit_once('@') {
            Some((l, d)) => format!("{}***@{}", l.chars().next().unwrap_or('*'), d),
            None => "***".into(),
        }
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || LOCAL_SPECIALS.contains(c)
                || (!c.is_ascii() && c.is_alphanumeric())
        })
}

fn normalise_domain(domain: &str) -> Option<String> {
    if domain.is_empty() || domain.starts_with('[') {
        return None;
    }
    let ascii = match url::Host::parse(domain).ok()? {
        url::Host::Domain(d) => d,
        _ => return None, // IP addresses are not accepted as mail domains
    };
    let ascii = ascii.trim_end_matches('.').to_string();
    let labels: Vec<&str> = ascii.split('.').collect();
    if ascii.len() > 253 || labels.len() < 2 {
        return None;
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !labels.iter().all(label_ok) {
        return None;
    }
    // The top-level label is never all digits.
    if labels
        .last()
        .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    Some(ascii.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        EmailAddress::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_case_and_space() {
        assert_eq!(ok("  User@Example.COM "), "user@example.com");
        assert_eq!(ok("user@example.com"), "user@example.com");
        assert_eq!(
            ok("first.last+tag@sub.example.co.uk"),
            "first.last+tag@sub.example.co.uk"
        );
    }

    #[test]
    fn converts_idn_domains_to_ascii() {
        assert_eq!(ok("jo@bücher.example"), "jo@xn--bcher-kva.example");
        assert_eq!(ok("jo@BÜCHER.example"), "jo@xn--bcher-kva.example");
    }

    #[test]
    fn refuses_malformed_addresses() {
        for bad in [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "user@",
            "user@@example.com",
            "user@localhost",
            "user@example..com",
            ".user@example.com",
            "user.@example.com",
            "us..er@example.com",
            "user@-example.com",
            "user@example.com\r\nBcc: x@evil.com",
            "user\n@example.com",
            "us er@example.com",
            "\"quoted\"@example.com",
            "user@[127.0.0.1]",
            "user@127.0.0.1",
            "user@example.123",
            "a<b>@example.com",
            "user@exa_mple.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "accepted {bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
    }

    #[test]
    fn exposes_local_part_and_masks() {
        let e = EmailAddress::parse("Jane.Doe@Example.com").unwrap();
        assert_eq!(e.local_part(), "jane.doe");
        assert_eq!(e.masked(), "j***@example.com");
    }
}
