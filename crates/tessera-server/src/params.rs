//! Request parameters, read the way Auth0's SDKs send them.
//!
//! A body is JSON whenever it looks like JSON, whatever its `Content-Type` says (node-auth0 v4
//! labels JSON `text/plain`); otherwise it is form-urlencoded, where `authParams[key]=value`
//! builds a nested object (auth0.js v7). JSON `null` means absent. A form parameter given
//! twice is refused (RFC 6749 §3.1), so nothing can be smuggled by repetition. A NUL character
//! anywhere, in a name or a value, is refused too: no parameter has a use for one, and
//! PostgreSQL cannot store or even compare text that holds one (a query with it fails).

use serde_json::{Map, Value};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params(pub Map<String, Value>);

/// A parameter was present but was not a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAString;

#[derive(Debug, PartialEq, Eq)]
pub enum ParamsError {
    NotJson,
    NotAnObject,
    Duplicate(String),
    BadBrackets(String),
    /// A NUL character in this parameter's name or value.
    Nul(String),
}

impl Params {
    pub fn parse(body: &[u8]) -> Result<Params, ParamsError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        let map = match first {
            None => Map::new(),
            Some(b'{') | Some(b'[') => match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(ParamsError::NotAnObject),
                Err(_) => return Err(ParamsError::NotJson),
            },
            Some(_) => parse_form(body)?,
        };
        refuse_nul(&map)?;
        Ok(Params(drop_nulls(map)))
    }

    pub fn from_query(query: Option<&str>) -> Result<Params, ParamsError> {
        let map = parse_form(query.unwrap_or_default().as_bytes())?;
        refuse_nul(&map)?;
        Ok(Params(drop_nulls(map)))
    }

    /// A string parameter; an error when present but not a string.
    pub fn str(&self, key: &str) -> Result<Option<&str>, NotAString> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(NotAString),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

fn parse_form(body: &[u8]) -> Result<Map<String, Value>, ParamsError> {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(body) {
        let (k, v) = (k.into_owned(), v.into_owned());
        match k.find('[') {
            Some(open) if k.ends_with(']') && open > 0 => {
                let outer = &k[..open];
                let inner = &k[open + 1..k.len() - 1];
                if inner.is_empty() || inner.contains('[') || inner.contains(']') {
                    return Err(ParamsError::BadBrackets(k));
                }
                let entry = map
                    .entry(outer.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(obj) = entry else {
                    return Err(ParamsError::Duplicate(outer.to_string()));
                };
                if obj.insert(inner.to_string(), Value::String(v)).is_some() {
                    return Err(ParamsError::Duplicate(k));
                }
            }
            _ => {
                if map.insert(k.clone(), Value::String(v)).is_some() {
                    return Err(ParamsError::Duplicate(k));
                }
            }
        }
    }
    Ok(map)
}

/// Whether a JSON value holds a NUL character in any string or key. PostgreSQL cannot store
/// one, so such input is refused as bad input before it reaches a query.
pub fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Whether a request's path or query, percent-decoded, holds a NUL character.
pub fn uri_has_nul(uri: &axum::http::Uri) -> bool {
    let decoded = |s: &str| percent_decoded_has_nul(s.as_bytes());
    decoded(uri.path()) || uri.query().is_some_and(decoded)
}

fn percent_decoded_has_nul(b: &[u8]) -> bool {
    b.contains(&0)
        || b.windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// The first top-level parameter with a NUL character in its name or anywhere in its value.
fn refuse_nul(map: &Map<String, Value>) -> Result<(), ParamsError> {
    match map.iter().find(|(k, v)| k.contains('\0') || has_nul(v)) {
        Some((k, _)) => Err(ParamsError::Nul(k.replace('\0', "\\0"))),
        None => Ok(()),
    }
}

/// Drops the members that are `null`, in objects within objects too. In place: rebuilding the
/// map, as this did before, sorted its entries all over again.
fn drop_nulls(mut map: Map<String, Value>) -> Map<String, Value> {
    drop_nulls_in(&mut map);
    map
}

fn drop_nulls_in(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        if let Value::Object(inner) = v {
            drop_nulls_in(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_regardless_of_content_type_and_nulls_dropped() {
        let p = Params::parse(
            br#" {"client_id":"c","audience":null,"authParams":{"scope":"openid","state":null}}"#,
        )
        .unwrap();
        assert_eq!(p.str("client_id"), Ok(Some("c")));
        assert_eq!(p.str("audience"), Ok(None));
        assert_eq!(p.get("authParams"), Some(&json!({"scope":"openid"})));
    }

    #[test]
    fn form_with_brackets() {
        let p = Params::parse(
            b"client_id=c&email=a%40b.co&authParams%5Bscope%5D=openid+email&authParams[state]=xyz",
        )
        .unwrap();
        assert_eq!(p.str("email"), Ok(Some("a@b.co")));
        assert_eq!(
            p.get("authParams"),
            Some(&json!({"scope":"openid email","state":"xyz"}))
        );
    }

    #[test]
    fn refuses_duplicates_and_junk() {
        assert_eq!(
            Params::parse(b"a=1&a=2"),
            Err(ParamsError::Duplicate("a".into()))
        );
        assert!(Params::parse(b"p[x]=1&p[x]=2").is_err());
        assert!(Params::parse(b"p=1&p[x]=2").is_err());
        assert!(Params::parse(b"p[x][y]=1").is_err());
        assert_eq!(Params::parse(b"{not json"), Err(ParamsError::NotJson));
        assert_eq!(Params::parse(b"[1,2]"), Err(ParamsError::NotAnObject));
        assert!(Params::parse(b"").unwrap().0.is_empty());
    }

    #[test]
    fn nul_characters_are_refused_anywhere() {
        for body in [
            &br#"{"client_id":"a\u0000b"}"#[..],
            br#"{"authParams":{"state":["x\u0000"]}}"#,
            br#"{"a\u0000":1}"#,
            b"client_id=a%00b",
            b"authParams[sta%00te]=x",
        ] {
            assert!(
                matches!(Params::parse(body), Err(ParamsError::Nul(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            Params::from_query(Some("client_id=x&state=%00")),
            Err(ParamsError::Nul("state".into()))
        );
        assert!(Params::parse(br#"{"client_id":"a\u0001b"}"#).is_ok());
    }

    #[test]
    fn non_string_values_are_reported() {
        let p = Params::parse(br#"{"email": 5}"#).unwrap();
        assert_eq!(p.str("email"), Err(NotAString));
    }
}
