//! The message as it goes on the wire: multipart/alternative with the text and the HTML.
//!
//! Built here rather than by lettre's builder, which reads the From and To it was given back
//! out of its own headers with its address parser (three times) and turns each `\n` into
//! `\r\n` one insertion at a time: together more work than the rest of a delivery. lettre
//! still encodes the header values that need it (From, To, Subject and Date: RFC 2047
//! words and folding), so they come out exactly as its builder writes them; the other headers
//! are fixed text. Each part goes as `7bit` when it is ASCII in short lines, else
//! quoted-printable, or base64 when most of it would need escaping: the choice lettre makes
//! for a server without `8BITMIME`. With DKIM, lettre's builder makes the message
//! (`smtp::build`), because its signer signs a lettre message.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use lettre::Address;
use lettre::address::{AddressError, Envelope};
use lettre::message::header::{self, Headers};
use lettre::message::{Mailbox, Mailboxes};
use tessera_core::rand::Random as _;

use crate::mailer::DeliveryError;
use crate::message::EmailMessage;

/// The envelope and the bytes of a message.
pub fn compose(m: &EmailMessage) -> Result<(Envelope, Vec<u8>), DeliveryError> {
    let bad = |what: &str, e: String| DeliveryError::Permanent(format!("{what}: {e}"));
    let (from, from_line) = sender(&m.from).map_err(|e| bad("from", e))?;
    let to: Address =
        m.to.parse()
            .map_err(|e: AddressError| bad("to", e.to_string()))?;
    // Both are made by Tessera; anything else here would be a header of its own.
    if !m
        .message_id
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
    {
        return Err(bad("message", "the Message-ID is not one word".into()));
    }
    if m.subject.contains(['\r', '\n']) {
        return Err(bad("message", "the subject is not one line".into()));
    }
    let envelope =
        Envelope::new(Some(from), vec![to.clone()]).map_err(|e| bad("message", e.to_string()))?;

    let mut headers = Headers::new();
    headers.set(header::To::from(Mailboxes::from(Mailbox::new(None, to))));
    headers.set(header::Subject::from(m.subject.clone()));
    headers.set(header::Date::now());
    let boundary = boundary();
    let mut out = String::with_capacity(1024 + m.text.len() + m.html.len() * 5 / 4);
    out.push_str(&from_line);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{headers}Message-ID: <{}>\r\n\
         Auto-Submitted: auto-generated\r\n\
         X-Auto-Response-Suppress: All\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative;\r\n boundary=\"{boundary}\"\r\n\r\n",
        m.message_id
    );
    part(&mut out, &boundary, "text/plain", &m.text);
    part(&mut out, &boundary, "text/html", &m.html);
    let _ = write!(out, "--{boundary}--\r\n");
    Ok((envelope, out.into_bytes()))
}

/// The From header line and the address of a sender. Parsed once for as long as it stays
/// the same (every message of a node has the operator's sender, or a template's).
fn sender(from: &str) -> Result<(Address, Arc<str>), String> {
    type Parsed = (String, Address, Arc<str>);
    static LAST: Mutex<Option<Parsed>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((text, address, line)) = last.as_ref()
        && text == from
    {
        return Ok((address.clone(), Arc::clone(line)));
    }
    let mailbox: Mailbox = from.parse().map_err(|e: AddressError| e.to_string())?;
    let mut headers = Headers::new();
    headers.set(header::From::from(Mailboxes::from(mailbox.clone())));
    let line: Arc<str> = headers.to_string().into();
    *last = Some((from.to_string(), mailbox.email.clone(), Arc::clone(&line)));
    Ok((mailbox.email, line))
}

/// 40 random letters and digits: text that appears in no body.
fn boundary() -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 40];
    tessera_core::rand::SystemRandom.fill(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    SevenBit,
    QuotedPrintable,
    Base64,
}

/// One part: its headers, then its text with CRLF line ends, encoded.
fn part(out: &mut String, boundary: &str, content_type: &str, text: &str) {
    let text = crlf(text);
    let encoding = choose(&text);
    let name = match encoding {
        Encoding::SevenBit => "7bit",
        Encoding::QuotedPrintable => "quoted-printable",
        Encoding::Base64 => "base64",
    };
    let _ = write!(
        out,
        "--{boundary}\r\nContent-Type: {content_type}; charset=utf-8\r\n\
         Content-Transfer-Encoding: {name}\r\n\r\n"
    );
    match encoding {
        Encoding::SevenBit => out.push_str(&text),
        Encoding::QuotedPrintable => out.push_str(&quoted_printable::encode_to_str(&text)),
        Encoding::Base64 => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&text);
            for (i, line) in encoded.as_bytes().chunks(76).enumerate() {
                if i > 0 {
                    out.push_str("\r\n");
                }
                // Base64 is ASCII.
                out.push_str(std::str::from_utf8(line).unwrap_or_default());
            }
        }
    }
    out.push_str("\r\n");
}

/// Every line end as CRLF: a `\n` without its `\r` gets one.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32 + 2);
    let mut rest = text;
    while let Some(i) = rest.find('\n') {
        out.push_str(&rest[..i]);
        if !rest[..i].ends_with('\r') {
            out.push('\r');
        }
        out.push('\n');
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out
}

/// `7bit` for printable ASCII in lines shorter than 76 (with CRLF ends only), else
/// quoted-printable when at most a third of the bytes need escaping, else base64.
fn choose(text: &str) -> Encoding {
    let printable = |c: &u8| matches!(c, b'\t' | b' '..=b'~');
    // After `crlf` every `\n` ends a line with its `\r`; a `\r` anywhere else is not printable.
    if text.split('\n').all(|line| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        line.len() < 76 && line.as_bytes().iter().all(printable)
    }) {
        return Encoding::SevenBit;
    }
    let escaped = text.bytes().filter(|c| !printable(c)).count();
    if escaped <= text.len() / 3 {
        Encoding::QuotedPrintable
    } else {
        Encoding::Base64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(subject: &str, text: &str, html: &str) -> EmailMessage {
        EmailMessage {
            message_id: "0123abcd@tessera.test".into(),
            from: "Tessera <no-reply@example.com>".into(),
            to: "user@example.com".into(),
            subject: subject.into(),
            text: text.into(),
            html: html.into(),
        }
    }

    /// The headers (unfolded) and the decoded parts of a composed message.
    fn read(raw: &str) -> (Vec<String>, Vec<(String, String, String)>) {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let headers: Vec<String> = head
            .replace("\r\n ", " ")
            .split("\r\n")
            .map(str::to_string)
            .collect();
        let ct = headers
            .iter()
            .find(|h| h.starts_with("Content-Type: multipart/alternative;"))
            .unwrap();
        let boundary = ct
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"');
        let mut parts = Vec::new();
        let sections: Vec<&str> = body.split(&format!("--{boundary}")).collect();
        assert_eq!(sections[0], "");
        assert_eq!(sections.last().unwrap(), &"--\r\n");
        for s in &sections[1..sections.len() - 1] {
            let (h, b) = s.trim_start_matches("\r\n").split_once("\r\n\r\n").unwrap();
            let b = b.strip_suffix("\r\n").unwrap();
            let ct = h
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .unwrap();
            let cte = h
                .lines()
                .find_map(|l| l.strip_prefix("Content-Transfer-Encoding: "))
                .unwrap();
            let decoded = match cte {
                "7bit" => b.to_string(),
                "quoted-printable" => String::from_utf8(
                    quoted_printable::decode(b, quoted_printable::ParseMode::Strict).unwrap(),
                )
                .unwrap(),
                "base64" => String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(b.replace("\r\n", ""))
                        .unwrap(),
                )
                .unwrap(),
                other => panic!("{other}"),
            };
            parts.push((ct.to_string(), cte.to_string(), decoded));
        }
        (headers, parts)
    }

    #[test]
    fn composes_multipart_alternative_with_crlf_lines_only() {
        let html = format!(
            "<p>Your code is</p>\n<p style=\"{}\">123456</p>\n",
            "x".repeat(90)
        );
        let m = message("123456 is your code", "Your code is\n\n123456\n", &html);
        let (envelope, raw) = compose(&m).unwrap();
        assert_eq!(envelope.from().unwrap().to_string(), "no-reply@example.com");
        assert_eq!(envelope.to()[0].to_string(), "user@example.com");
        let raw = String::from_utf8(raw).unwrap();
        assert!(raw.is_ascii());
        // No bare LF or CR, and no line longer than 78 characters.
        for (i, c) in raw.char_indices() {
            if c == '\n' {
                assert_eq!(&raw[i - 1..i], "\r", "bare LF at {i}");
            }
            if c == '\r' {
                assert_eq!(&raw[i + 1..i + 2], "\n", "bare CR at {i}");
            }
        }
        assert!(raw.split("\r\n").all(|l| l.len() <= 78));
        let (headers, parts) = read(&raw);
        for h in [
            "From: Tessera <no-reply@example.com>",
            "To: user@example.com",
            "Subject: 123456 is your code",
            "Message-ID: <0123abcd@tessera.test>",
            "Auto-Submitted: auto-generated",
            "X-Auto-Response-Suppress: All",
            "MIME-Version: 1.0",
        ] {
            assert!(headers.iter().any(|l| l == h), "{h} in {headers:?}");
        }
        assert!(headers.iter().any(|l| l.starts_with("Date: ")));
        assert_eq!(
            parts,
            [
                (
                    "text/plain; charset=utf-8".to_string(),
                    "7bit".to_string(),
                    "Your code is\r\n\r\n123456\r\n".to_string()
                ),
                (
                    "text/html; charset=utf-8".to_string(),
                    "quoted-printable".to_string(),
                    html.replace('\n', "\r\n")
                ),
            ]
        );
        // A second message has a boundary of its own.
        let (_, again) = compose(&m).unwrap();
        let boundary = |raw: &str| raw.split("boundary=\"").nth(1).unwrap()[..40].to_string();
        assert_ne!(boundary(&raw), boundary(&String::from_utf8(again).unwrap()));
    }

    #[test]
    fn headers_are_those_lettres_builder_writes() {
        let m = EmailMessage {
            from: "Bäckerei Müller <no-reply@example.com>".into(),
            ..message(
                "123456 ist Ihr Bestätigungscode für Bäckerei Müller, die beste Bäckerei der ganzen Stadt",
                "Ihr Bestätigungscode\n",
                "<p>Ihr Bestätigungscode</p>",
            )
        };
        let ours = String::from_utf8(compose(&m).unwrap().1).unwrap();
        let lettres = String::from_utf8(crate::smtp::build(&m).unwrap().formatted()).unwrap();
        let header = |raw: &str, name: &str| -> String {
            let head = raw
                .split_once("\r\n\r\n")
                .unwrap()
                .0
                .replace("\r\n ", "\u{1}");
            head.split("\r\n")
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_string()
        };
        for name in ["From: ", "To: ", "Subject: "] {
            assert_eq!(header(&ours, name), header(&lettres, name));
        }
        assert!(header(&ours, "Subject: ").contains("=?utf-8?b?"));
        let (_, parts) = read(&ours);
        assert_eq!(parts[0].1, "quoted-printable");
        assert_eq!(parts[0].2, "Ihr Bestätigungscode\r\n");
        assert_eq!(parts[1].2, "<p>Ihr Bestätigungscode</p>");
    }

    #[test]
    fn text_that_is_mostly_not_latin_goes_as_base64() {
        let text = "Ваш код подтверждения: 123456\n";
        let (_, raw) = compose(&message("Код", text, "<p>Ваш код</p>")).unwrap();
        let (_, parts) = read(&String::from_utf8(raw).unwrap());
        assert_eq!(parts[0].1, "base64");
        assert_eq!(parts[0].2, text.replace('\n', "\r\n"));
        assert_eq!(parts[1].1, "base64");
        // A bare CR or a control character is never sent as it is.
        assert_eq!(choose("a\rb"), Encoding::QuotedPrintable);
        assert_eq!(choose("a\u{7}b"), Encoding::QuotedPrintable);
        assert_eq!(choose("a\r\nb"), Encoding::SevenBit);
        assert_eq!(crlf("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
    }

    #[test]
    fn what_could_make_a_header_of_its_own_is_refused() {
        let m = message("Code", "t", "h");
        for bad in [
            EmailMessage {
                to: "x@example.com\r\nBcc: evil@example.com".into(),
                ..m.clone()
            },
            EmailMessage {
                from: "Evil <a@example.com>\r\nBcc: evil@example.com".into(),
                ..m.clone()
            },
            EmailMessage {
                subject: "Code\r\nBcc: evil@example.com".into(),
                ..m.clone()
            },
            EmailMessage {
                message_id: "a@b>\r\nBcc: evil@example.com".into(),
                ..m.clone()
            },
            EmailMessage {
                to: "not an address".into(),
                ..m.clone()
            },
        ] {
            assert!(
                matches!(compose(&bad), Err(DeliveryError::Permanent(_))),
                "{bad:?}"
            );
        }
        // The sender's cache does not keep a bad sender's place: a good one still works.
        assert!(compose(&m).is_ok());
    }
}
