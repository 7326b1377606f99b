//! OAuth scopes: a space-separated set, kept in the order given.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<String>);

impl Scope {
    pub fn parse(raw: &str) -> Self {
        let mut v: Vec<String> = Vec::new();
        for s in raw.split([' ', '\t', '\n', '+']).filter(|s| !s.is_empty()) {
            if !v.iter().any(|x| x == s) {
                v.push(s.to_string());
            }
        }
        Scope(v)
    }

    pub fn has(&self, s: &str) -> bool {
        self.0.iter().any(|x| x == s)
    }

    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.iter().all(|s| other.has(s))
    }

    pub fn without(&self, s: &str) -> Scope {
        Scope(self.0.iter().filter(|x| *x != s).cloned().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_string(&self) -> String {
        self.0.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dedupes_and_checks() {
        let s = Scope::parse("openid  profile email openid offline_access");
        assert_eq!(s.as_string(), "openid profile email offline_access");
        assert!(s.has("email"));
        assert!(!s.has("phone"));
        assert!(Scope::parse("openid email").is_subset_of(&s));
        assert!(!Scope::parse("openid phone").is_subset_of(&s));
        assert_eq!(
            s.without("offline_access").as_string(),
            "openid profile email"
        );
        assert!(Scope::parse("").is_empty());
    }
}
