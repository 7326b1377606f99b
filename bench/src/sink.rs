//! An SMTP sink on loopback: the mail server Tessera delivers to during a benchmark
//! (`email.smtp_url = "smtp://127.0.0.1:<port>?tls=none"`). It speaks enough SMTP for a real
//! client (EHLO/HELO, MAIL FROM, RCPT TO, DATA with dot-unstuffing, BDAT, RSET, NOOP, QUIT,
//! PIPELINING and CHUNKING), reads each message as delivered, and hands its code to the login
//! that waits for that address.
//!
//! A login registers its address before it calls `/passwordless/start`, so a message never
//! arrives before its waiter; messages nobody waits for (the `start` scenario's) are counted
//! and dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use socket2::SockRef;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::mail;

/// The largest message the sink accepts (Tessera's are a few KiB).
const MAX_MESSAGE: usize = 1 << 20;

#[derive(Default)]
pub struct Sink {
    /// Acknowledge every read at once (`TCP_QUICKACK`); see [`Sink::start`].
    quickack: bool,
    waiters: Mutex<HashMap<String, oneshot::Sender<String>>>,
    /// Messages accepted after DATA.
    pub received: AtomicU64,
    /// Messages with a code but no login waiting for their address.
    pub unclaimed: AtomicU64,
    /// Messages in which no code was found.
    pub unparsed: AtomicU64,
}

/// A login's claim on the next code mailed to one address; dropping it withdraws the claim.
pub struct Waiter {
    sink: Arc<Sink>,
    email: String,
    rx: Option<oneshot::Receiver<String>>,
}

impl Waiter {
    pub async fn code(mut self) -> Result<String, String> {
        let rx = self.rx.take().ok_or("waited twice")?;
        rx.await.map_err(|_| "sink closed".to_string())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Withdraw this claim only: a newer waiter for the same address keeps its own.
        drop(self.rx.take());
        let mut waiters = self.sink.lock();
        if waiters.get(&self.email).is_some_and(|tx| tx.is_closed()) {
            waiters.remove(&self.email);
        }
    }
}

impl Sink {
    /// Binds `127.0.0.1:0` and serves until the process ends; returns the sink and its port.
    ///
    /// By default the sink acknowledges TCP segments as the kernel does for any server (delayed
    /// ACKs). `quickack` acknowledges each read at once instead, a diagnostic: a client that
    /// writes a message and its final `.` in two small writes without `TCP_NODELAY` then no
    /// longer waits for the delayed ACK (Nagle's algorithm), so the difference shows what that
    /// wait costs the client.
    pub async fn start(quickack: bool) -> anyhow::Result<(Arc<Sink>, u16)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let sink = Arc::new(Sink {
            quickack,
            ..Sink::default()
        });
        let me = Arc::clone(&sink);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = Arc::clone(&me);
                tokio::spawn(async move {
                    let _ = me.session(stream).await;
                });
            }
        });
        Ok((sink, port))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<String>>> {
        match self.waiters.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Registers interest in the next code for `email`; call before asking Tessera to send it.
    pub fn expect(self: &Arc<Self>, email: &str) -> Waiter {
        let (tx, rx) = oneshot::channel();
        let email = email.to_ascii_lowercase();
        self.lock().insert(email.clone(), tx);
        Waiter {
            sink: Arc::clone(self),
            email,
            rx: Some(rx),
        }
    }

    /// Hands a delivered message's code to whoever waits for one of its recipients.
    fn deliver(&self, rcpts: &[String], raw: &[u8]) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let parsed = mail::parse(raw);
        let Some(code) = parsed.code else {
            self.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // The envelope decides where mail goes; the To header is the fallback.
        let mut to: Vec<String> = rcpts.to_vec();
        if to.is_empty() {
            to.extend(parsed.to);
        }
        let mut claimed = false;
        for addr in to {
            if let Some(tx) = self.lock().remove(&addr) {
                claimed |= tx.send(code.clone()).is_ok();
            }
        }
        if !claimed {
            self.unclaimed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One SMTP conversation.
    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 bench-sink ESMTP ready\r\n").await?;
        let mut greeted = false;
        let mut from: Option<String> = None;
        let mut rcpts: Vec<String> = Vec::new();
        let mut line = Vec::new();
        let mut held = Vec::new();
        // The chunks of a message sent with BDAT so far (RFC 3030).
        let mut chunks: Option<Vec<u8>> = None;
        loop {
            line.clear();
            self.ack_now(&r);
            if read_line(&mut r, &mut line).await? == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            let verb = text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => {
                    greeted = true;
                    b"250-bench-sink\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE 1048576\r\n250 SMTPUTF8\r\n"
                }
                "HELO" => {
                    greeted = true;
                    b"250 bench-sink\r\n"
                }
                "MAIL" if !greeted => b"503 5.5.1 EHLO/HELO first\r\n",
                "MAIL" => match path_arg(text, "FROM:") {
                    Some(f) => {
                        from = Some(f);
                        rcpts.clear();
                        chunks = None;
                        b"250 2.1.0 Ok\r\n"
                    }
                    None => b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n",
                },
                "RCPT" if from.is_none() => b"503 5.5.1 MAIL first\r\n",
                "RCPT" => match path_arg(text, "TO:").filter(|a| a.contains('@')) {
                    Some(to) => {
                        rcpts.push(to.to_ascii_lowercase());
                        b"250 2.1.5 Ok\r\n"
                    }
                    None => b"501 5.1.3 Syntax: RCPT TO:<address>\r\n",
                },
                "DATA" if rcpts.is_empty() => b"503 5.5.1 RCPT first\r\n",
                // RFC 3030: no DATA in a transaction that has begun with BDAT.
                "DATA" if chunks.is_some() => b"503 5.5.1 BDAT in progress\r\n",
                "DATA" => {
                    send_held(
                        &mut w,
                        &mut held,
                        b"354 End data with <CR><LF>.<CR><LF>\r\n",
                    )
                    .await?;
                    self.ack_now(&r);
                    match read_data(&mut r).await? {
                        Some(raw) => {
                            self.deliver(&rcpts, &raw);
                            from = None;
                            rcpts.clear();
                            b"250 2.0.0 Ok: queued\r\n"
                        }
                        None => b"552 5.3.4 Message too big\r\n",
                    }
                }
                // RFC 3030: the chunk's octets follow the command line whatever the answer.
                "BDAT" => match bdat_args(text) {
                    None => {
                        // Where the chunk ends is not known: the conversation cannot go on.
                        send_held(&mut w, &mut held, b"501 5.5.4 Syntax: BDAT size [LAST]\r\n")
                            .await?;
                        return Ok(());
                    }
                    Some((size, last)) => {
                        let octets = read_chunk(&mut r, size).await?;
                        if rcpts.is_empty() {
                            chunks = None;
                            b"503 5.5.1 RCPT first\r\n"
                        } else {
                            let message = chunks.get_or_insert_with(Vec::new);
                            match octets {
                                Some(o) if message.len() + o.len() <= MAX_MESSAGE => {
                                    message.extend_from_slice(&o);
                                    if last {
                                        let raw = chunks.take().unwrap_or_default();
                                        self.deliver(&rcpts, &raw);
                                        from = None;
                                        rcpts.clear();
                                        b"250 2.0.0 Ok: queued\r\n"
                                    } else {
                                        b"250 2.0.0 Ok: chunk received\r\n"
                                    }
                                }
                                _ => {
                                    chunks = None;
                                    from = None;
                                    rcpts.clear();
                                    b"552 5.3.4 Message too big\r\n"
                                }
                            }
                        }
                    }
                },
                "RSET" => {
                    from = None;
                    rcpts.clear();
                    chunks = None;
                    b"250 2.0.0 Ok\r\n"
                }
                "NOOP" => b"250 2.0.0 Ok\r\n",
                "VRFY" => b"252 2.0.0 Cannot VRFY user\r\n",
                "QUIT" => return send_held(&mut w, &mut held, b"221 2.0.0 Bye\r\n").await,
                _ => b"502 5.5.2 Command not recognized\r\n",
            };
            // PIPELINING (RFC 2920 §3.2): while more commands of the client's group are already
            // here, hold the answers and send them together.
            if r.buffer().is_empty() {
                send_held(&mut w, &mut held, reply).await?;
            } else {
                held.extend_from_slice(reply);
            }
        }
    }
}

/// Sends the answers held back for a pipelined group, then `last`.
async fn send_held(w: &mut OwnedWriteHalf, held: &mut Vec<u8>, last: &[u8]) -> std::io::Result<()> {
    held.extend_from_slice(last);
    w.write_all(held).await?;
    held.clear();
    Ok(())
}

impl Sink {
    /// With `quickack`, re-enters quick-ACK mode (the kernel leaves it on its own).
    fn ack_now(&self, r: &BufReader<OwnedReadHalf>) {
        if self.quickack {
            let _ = SockRef::from(r.get_ref().as_ref()).set_tcp_quickack(true);
        }
    }
}

/// Reads one line (up to and including LF), refusing lines longer than the message limit.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let n = r.read_until(b'\n', buf).await?;
    if buf.len() > MAX_MESSAGE {
        return Err(std::io::Error::other("line too long"));
    }
    Ok(n)
}

/// The address in `MAIL FROM:<a@b> SIZE=…` or `RCPT TO:<a@b>` (empty for the null sender).
fn path_arg(line: &str, keyword: &str) -> Option<String> {
    let rest = line.get(5..)?.trim_start();
    let prefix = rest.get(..keyword.len())?;
    if !prefix.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let arg = rest[keyword.len()..].trim_start();
    let path = arg.split_whitespace().next().unwrap_or_default();
    let inner = path.strip_prefix('<')?.strip_suffix('>')?;
    Some(inner.to_string())
}

/// The size and whether it is the last of `BDAT <size> [LAST]`.
fn bdat_args(line: &str) -> Option<(usize, bool)> {
    let mut args = line.split_whitespace().skip(1);
    let size = args.next()?.parse().ok()?;
    let last = match args.next() {
        None => false,
        Some(a) if a.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    args.next().is_none().then_some((size, last))
}

/// Reads a BDAT chunk of `size` octets; `None` if it is larger than the limit (it is still
/// read, and dropped).
async fn read_chunk<R: AsyncBufRead + Unpin>(
    r: &mut R,
    size: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    if size > MAX_MESSAGE {
        let n = tokio::io::copy(&mut r.take(size as u64), &mut tokio::io::sink()).await?;
        if n < size as u64 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(None);
    }
    let mut octets = vec![0; size];
    r.read_exact(&mut octets).await?;
    Ok(Some(octets))
}

/// Reads the message after `354` up to the lone `.` line, undoing dot-stuffing (RFC 5321
/// §4.5.2). `None` if it is larger than the limit (the rest is still read and dropped).
pub async fn read_data<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut msg = Vec::new();
    let mut line = Vec::new();
    let mut too_big = false;
    loop {
        line.clear();
        if read_line(r, &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok((!too_big).then_some(msg));
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        if msg.len() + unstuffed.len() > MAX_MESSAGE {
            too_big = true;
        } else if !too_big {
            msg.extend_from_slice(unstuffed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn data_is_dot_unstuffed_up_to_the_lone_dot() {
        let wire = b"Subject: x\r\n\r\n..starts with a dot\r\n.\r\n..\r\nlast\r\n.\r\nQUIT\r\n";
        let mut r = BufReader::new(&wire[..]);
        let got = read_data(&mut r).await.unwrap().unwrap();
        assert_eq!(got, b"Subject: x\r\n\r\n.starts with a dot\r\n");
        let got = read_data(&mut r).await.unwrap().unwrap();
        assert_eq!(got, b".\r\nlast\r\n");
    }

    #[test]
    fn reads_envelope_paths() {
        assert_eq!(
            path_arg("MAIL FROM:<a@b.test> BODY=8BITMIME", "FROM:").as_deref(),
            Some("a@b.test")
        );
        assert_eq!(path_arg("mail from: <>", "FROM:").as_deref(), Some(""));
        assert_eq!(
            path_arg("RCPT TO:<x@y.test>", "TO:").as_deref(),
            Some("x@y.test")
        );
        assert_eq!(path_arg("RCPT TO:x@y.test", "TO:"), None);
    }

    /// A message in two BDAT chunks, pipelined with its envelope: the sink joins the chunks
    /// as they are (a chunk's dots stay), answers the group in order (a `DATA` between the
    /// chunks gets 503 and changes nothing), and hands the code on.
    #[tokio::test]
    async fn bdat_chunks_make_one_message() {
        use tokio::io::AsyncReadExt;
        let (sink, port) = Sink::start(false).await.unwrap();
        let waiter = sink.expect("login2@bench.test");
        let first = "Subject: 481516 is your verification code\r\n";
        let second = "\r\n.a line with a dot\r\n";
        let wire = format!(
            "EHLO client\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<Login2@bench.test>\r\n\
             BDAT {} \r\n{first}DATA\r\nBDAT {} LAST\r\n{second}BDAT x\r\n",
            first.len(),
            second.len()
        );
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(wire.as_bytes()).await.unwrap();
        let mut answers = String::new();
        stream.read_to_string(&mut answers).await.unwrap();
        let codes: Vec<&str> = answers.lines().map(|l| &l[..4]).collect();
        assert_eq!(
            codes,
            [
                "220 ", "250-", "250-", "250-", "250-", "250-", "250 ", "250 ", "250 ", "250 ",
                "503 ", "250 ", "501 "
            ],
            "{answers}"
        );
        let code = tokio::time::timeout(Duration::from_secs(5), waiter.code())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, "481516");
        assert_eq!(bdat_args("BDAT 12 last"), Some((12, true)));
        assert_eq!(bdat_args("BDAT 12"), Some((12, false)));
        assert_eq!(bdat_args("BDAT 12 FIRST"), None);
        assert_eq!(bdat_args("BDAT -1 LAST"), None);
    }

    /// Tessera's own mailer (lettre, plain SMTP to loopback) delivers to the sink, and the
    /// login waiting for that address gets the code; an address nobody waits for is counted.
    #[tokio::test]
    async fn tessera_mailer_delivers_codes_to_waiters() {
        use tessera_delivery::message::EmailMessage;
        use tessera_delivery::smtp::{SmtpMailer, SmtpSettings};
        let (sink, port) = Sink::start(false).await.unwrap();
        let settings = SmtpSettings::from_url(
            &format!("smtp://127.0.0.1:{port}?tls=none"),
            Duration::from_secs(5),
        )
        .unwrap();
        let mailer = SmtpMailer::new(settings).unwrap();
        let waiter = sink.expect("Login1@Bench.Test");
        let html = format!(
            "<p style=\"font-size: 32px; letter-spacing: 6px;\">{}</p>\n.{}",
            "730155",
            "é".repeat(100)
        );
        let msg = |to: &str| EmailMessage {
            message_id: format!("{to}.bench"),
            from: "Tessera <no-reply@localhost.localdomain>".into(),
            to: to.into(),
            subject: "730155 is your verification code for Café Ünïcode".into(),
            text: "Your verification code for Café is:\n\n730155\n\n.a line with a dot\n".into(),
            html: html.clone(),
        };
        mailer.send(&msg("login1@bench.test")).await.unwrap();
        mailer.send(&msg("nobody@bench.test")).await.unwrap();
        let code = tokio::time::timeout(Duration::from_secs(5), waiter.code())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, "730155");
        assert_eq!(sink.received.load(Ordering::Relaxed), 2);
        assert_eq!(sink.unclaimed.load(Ordering::Relaxed), 1);
        assert_eq!(sink.unparsed.load(Ordering::Relaxed), 0);
    }
}
