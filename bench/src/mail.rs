//! Reading a delivered message the way a mail client would: unfolded headers, RFC 2047 encoded
//! words in the Subject, MIME parts with quoted-printable or base64 bodies. From it the sink
//! takes the recipient and the one-time code.
//!
//! The code is found where Tessera's built-in template puts it: first in the Subject
//! ("NNNNNN is your verification code for …"), else on a line of its own in the text part
//! (or between tags in the HTML part), so a custom template that keeps the code on its own
//! line still works.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// What the sink needs from one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The address in the `To` header, lower-cased.
    pub to: Option<String>,
    /// The decoded Subject.
    pub subject: Option<String>,
    /// The one-time code.
    pub code: Option<String>,
}

/// Parses a whole message (headers, blank line, body) as received after `DATA`.
pub fn parse(raw: &[u8]) -> Parsed {
    // `from_utf8` first: `from_utf8_lossy` checks valid text chunk by chunk, several times
    // slower, and the bench shares the cores with Tessera.
    let text = match std::str::from_utf8(raw) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(raw),
    };
    let (headers, body) = split_message(&text);
    let to = header(&headers, "to").and_then(|v| address(&v));
    let subject = header(&headers, "subject").map(|s| decode_words(&s));
    let code = subject
        .as_deref()
        .and_then(code_in_subject)
        .or_else(|| code_in_part(&headers, body));
    Parsed { to, subject, code }
}

/// Splits at the first empty line; returns the unfolded headers and the body.
fn split_message(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match blank_line(text.as_bytes()) {
        Some((at, after)) => (&text[..at], &text[after..]),
        None => (text, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            // A folded continuation of the previous header (RFC 5322 §2.2.3).
            if let Some((_, v)) = headers.last_mut() {
                v.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (headers, body)
}

/// The first empty line, `\r\n\r\n` or `\n\n` (whichever comes first): where the head ends
/// and where the body begins. One pass over the head only; searching for each pattern in turn
/// went through the whole message for the one that is not there.
fn blank_line(text: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = text[from..].iter().position(|&b| b == b'\n') {
        let lf = from + i;
        let next = &text[lf + 1..];
        if next.starts_with(b"\n") {
            return Some((lf, lf + 2));
        }
        if next.starts_with(b"\r\n") && lf > 0 && text[lf - 1] == b'\r' {
            return Some((lf - 1, lf + 3));
        }
        from = lf + 1;
    }
    None
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// `Name <a@b>` or a bare `a@b`, lower-cased.
pub fn address(v: &str) -> Option<String> {
    let v = v.trim();
    let inner = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    };
    let inner = inner.trim();
    inner.contains('@').then(|| inner.to_ascii_lowercase())
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`); the blanks between two
/// encoded words are dropped, as the RFC says.
fn decode_words(v: &str) -> String {
    let mut out = String::new();
    let mut pending_blank = String::new();
    let mut last_was_word = false;
    for token in v.split_inclusive([' ', '\t']) {
        let word = token.trim_end_matches([' ', '\t']);
        let blank = &token[word.len()..];
        match decode_word(word) {
            Some(decoded) => {
                if !last_was_word {
                    out.push_str(&pending_blank);
                }
                out.push_str(&decoded);
                last_was_word = true;
            }
            None => {
                out.push_str(&pending_blank);
                out.push_str(word);
                last_was_word = false;
            }
        }
        pending_blank = blank.to_string();
    }
    out.push_str(&pending_blank);
    out
}

fn decode_word(w: &str) -> Option<String> {
    let inner = w.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut it = inner.splitn(3, '?');
    let (_charset, enc, text) = (it.next()?, it.next()?, it.next()?);
    let bytes = match enc {
        "b" | "B" => B64.decode(text).ok()?,
        "q" | "Q" => quoted_printable(&text.replace('_', " ")),
        _ => return None,
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Decodes quoted-printable (RFC 2045 §6.7): `=XX` escapes and `=` soft line breaks.
fn quoted_printable(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if b[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let Some(hex) = b.get(i + 1..i + 3)
                && let Ok(h) = std::str::from_utf8(hex)
                && let Ok(v) = u8::from_str_radix(h, 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The built-in subject starts with the code.
fn code_in_subject(subject: &str) -> Option<String> {
    subject
        .split_whitespace()
        .next()
        .filter(|w| is_code(w))
        .map(str::to_string)
}

fn is_code(w: &str) -> bool {
    (4..=12).contains(&w.len()) && w.bytes().all(|c| c.is_ascii_digit())
}

/// Looks through a MIME entity (recursing into multiparts) for the code: a line of its own in
/// a text/plain part, or the text between two tags in a text/html part.
fn code_in_part(headers: &[(String, String)], body: &str) -> Option<String> {
    let ctype = header(headers, "content-type").unwrap_or_else(|| "text/plain".into());
    let lower = ctype.to_ascii_lowercase();
    if lower.starts_with("multipart/") {
        let boundary = param(&ctype, "boundary")?;
        let delimiter = format!("--{boundary}");
        return body
            .split(delimiter.as_str())
            .skip(1)
            .take_while(|p| !p.starts_with("--"))
            .find_map(|part| {
                let part = part.trim_start_matches(['\r', '\n']);
                let (h, b) = split_message(part);
                code_in_part(&h, b)
            });
    }
    let encoding = header(headers, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => B64
            .decode(body.split_whitespace().collect::<String>())
            .ok()?,
        "quoted-printable" => quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    let text = String::from_utf8_lossy(&bytes);
    if lower.starts_with("text/plain") {
        text.lines()
            .map(str::trim)
            .find(|l| is_code(l))
            .map(str::to_string)
    } else if lower.starts_with("text/html") {
        text.split('>')
            .filter_map(|s| s.split('<').next())
            .map(str::trim)
            .find(|l| is_code(l))
            .map(str::to_string)
    } else {
        None
    }
}

/// A parameter of a structured header (`multipart/alternative; boundary="x"`).
fn param(v: &str, name: &str) -> Option<String> {
    v.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| val.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape lettre gives Tessera's messages: multipart/alternative, folded headers, a
    /// quoted-printable HTML part.
    const LETTRE_LIKE: &str = "From: Tessera <no-reply@localhost.localdomain>\r\n\
To: Login7@Bench.Test\r\n\
Subject: 482913 is your verification code for\r\n Bench\r\n\
Message-ID: <abc@tessera>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative;\r\n boundary=\"XyZ123\"\r\n\
\r\n\
--XyZ123\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
Your verification code for Bench is:\r\n\
\r\n\
482913\r\n\
\r\n\
--XyZ123\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<p style=3D\"font-size: 32px;\">482913</p>=\r\n\
\r\n\
--XyZ123--\r\n";

    #[test]
    fn the_head_ends_at_the_first_empty_line_of_either_kind() {
        let split = |t: &str| blank_line(t.as_bytes());
        assert_eq!(
            split("A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore"),
            Some((10, 14))
        );
        assert_eq!(split("A: 1\nB: 2\n\nbody"), Some((9, 11)));
        // Whichever comes first.
        assert_eq!(split("A: 1\n\nB\r\n\r\n"), Some((4, 6)));
        assert_eq!(split("A: 1\r\n\r\nB\n\n"), Some((4, 8)));
        // A lone CR before the LF is not a CRLF line end; no empty line at all.
        assert_eq!(split("A: 1\n\r\nB"), None);
        assert_eq!(split("A: 1\r\nB: 2\r\n"), None);
        assert_eq!(split("\r\n\r\nbody"), Some((0, 4)));
        assert_eq!(split("\n\nbody"), Some((0, 2)));
        let (headers, body) = split_message("To: a@b\r\n\r\nhello");
        assert_eq!((headers.len(), body), (1, "hello"));
    }

    #[test]
    fn reads_recipient_and_code_from_the_subject() {
        let p = parse(LETTRE_LIKE.as_bytes());
        assert_eq!(p.to.as_deref(), Some("login7@bench.test"));
        assert_eq!(
            p.subject.as_deref(),
            Some("482913 is your verification code for Bench")
        );
        assert_eq!(p.code.as_deref(), Some("482913"));
    }

    #[test]
    fn decodes_encoded_word_subjects() {
        let raw = "To: \"Zoë\" <zoe@bench.test>\r\nSubject: =?utf-8?b?MTIzNDU2IGlzdCBJaHIgQmVzdMOkdGlndW5nc2NvZGU=?=\r\n =?utf-8?q?_f=C3=BCr_Caf=C3=A9?=\r\n\r\nbody\r\n";
        let p = parse(raw.as_bytes());
        assert_eq!(p.to.as_deref(), Some("zoe@bench.test"));
        assert_eq!(
            p.subject.as_deref(),
            Some("123456 ist Ihr Bestätigungscode für Café")
        );
        assert_eq!(p.code.as_deref(), Some("123456"));
    }

    #[test]
    fn falls_back_to_the_body_in_base64_and_quoted_printable() {
        let text = B64.encode("Hello,\r\n\r\n  0042  \r\n\r\nBye 2026\r\n");
        let raw = format!(
            "To: a@b.test\r\nSubject: Sign in to Bench\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n{}\r\n--b1--\r\n",
            &text[..20],
            &text[20..]
        );
        assert_eq!(parse(raw.as_bytes()).code.as_deref(), Some("0042"));
        let html = "To: a@b.test\r\nSubject: Hi\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p style=3D\"x\">=\r\n918273</p>\r\n";
        assert_eq!(parse(html.as_bytes()).code.as_deref(), Some("918273"));
        assert_eq!(
            parse(b"To: a@b.test\r\nSubject: Hi\r\n\r\nno code 12\r\n").code,
            None
        );
    }
}
