//! A small HTTP/1.1 client for the calls the load is made of (`/passwordless/start`, the OTP
//! grant, `/userinfo`), so that the bench's own CPU goes to the requests and not to a general
//! client's machinery. The bench shares the machine with Tessera, and every millisecond it
//! spends is one Tessera cannot: with reqwest (URL parsing and IDNA on every call, a pool
//! lookup, a channel and a task switch to the connection's task) it took about a seventh of
//! the CPU of a sign-in. Here a request is one `write` on a kept connection and its answer is
//! read in place, as wrk and other load generators do.
//!
//! It speaks what Tessera answers with: `Content-Length` or chunked bodies, keep-alive unless
//! the answer says `Connection: close`. A kept connection the server has closed meanwhile
//! (found closed before a byte of the answer came) is replaced once and the request sent again.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer: its status and its whole body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Kept connections to one server.
pub struct Client {
    addr: SocketAddr,
    host: String,
    idle: Mutex<Vec<Conn>>,
}

struct Conn {
    stream: TcpStream,
    /// Bytes read past the last answer (none from a server that answers one request at a time).
    buf: Vec<u8>,
}

/// Why a request failed, in the bench's error categories.
#[derive(Debug, PartialEq)]
pub enum Error {
    Connect,
    /// The connection broke, or the answer was not HTTP/1.1 as expected.
    Other(String),
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            host: addr.to_string(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends one request and reads its answer. `body` is its content type and bytes.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<Response, Error> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.host);
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        let mut req = head.into_bytes();
        if let Some((kind, bytes)) = body {
            req.extend_from_slice(
                format!(
                    "content-type: {kind}\r\ncontent-length: {}\r\n\r\n",
                    bytes.len()
                )
                .as_bytes(),
            );
            req.extend_from_slice(bytes);
        } else {
            req.extend_from_slice(b"\r\n");
        }
        let kept = self.take();
        let reused = kept.is_some();
        let mut conn = match kept {
            Some(c) => c,
            None => self.connect().await?,
        };
        let answer = match exchange(&mut conn, &req).await {
            Err(Broken::BeforeAnswer) if reused => {
                conn = self.connect().await?;
                exchange(&mut conn, &req).await
            }
            other => other,
        };
        match answer {
            Ok((response, keep)) => {
                if keep {
                    self.put(conn);
                }
                Ok(response)
            }
            Err(Broken::BeforeAnswer) => Err(Error::Other("connection closed".into())),
            Err(Broken::Other(e)) => Err(Error::Other(e)),
        }
    }

    fn take(&self) -> Option<Conn> {
        self.idle.lock().ok()?.pop()
    }

    fn put(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|_| Error::Connect)?;
        stream.set_nodelay(true).map_err(|_| Error::Connect)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }
}

enum Broken {
    /// Closed (or reset) before any byte of the answer: the request can be sent again.
    BeforeAnswer,
    Other(String),
}

/// Writes the request and reads the answer; whether the connection can be kept.
async fn exchange(conn: &mut Conn, req: &[u8]) -> Result<(Response, bool), Broken> {
    if conn.stream.write_all(req).await.is_err() {
        return Err(Broken::BeforeAnswer);
    }
    // The head.
    let (status, head_len, length, chunked, close) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&conn.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = parsed.code.unwrap_or(0);
                let (mut length, mut chunked, mut close) = (None, false, false);
                for h in parsed.headers.iter() {
                    let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(
                            value
                                .parse::<usize>()
                                .map_err(|_| Broken::Other("bad content-length".into()))?,
                        );
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = value.eq_ignore_ascii_case("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = value.eq_ignore_ascii_case("close");
                    }
                }
                break (status, n, length, chunked, close);
            }
            Ok(httparse::Status::Partial) => match read_more(conn).await {
                Ok(n) if n > 0 => {}
                // Nothing of the answer came: the server had closed the kept connection.
                _ if conn.buf.is_empty() => return Err(Broken::BeforeAnswer),
                Ok(_) => return Err(Broken::Other("closed in the answer's head".into())),
                Err(e) => return Err(e),
            },
            Err(e) => return Err(Broken::Other(format!("bad answer: {e}"))),
        }
    };
    conn.buf.drain(..head_len);
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else if chunked {
        dechunk(conn).await?
    } else if let Some(n) = length {
        while conn.buf.len() < n {
            more(conn, "the body").await?;
        }
        conn.buf.drain(..n).collect()
    } else {
        // Delimited by the end of the connection.
        while read_more(conn).await? > 0 {}
        return Ok((
            Response {
                status,
                body: std::mem::take(&mut conn.buf),
            },
            false,
        ));
    };
    Ok((Response { status, body }, !close))
}

/// Reads what has come; 0 at the end of the connection. An error here is never
/// [`Broken::BeforeAnswer`]: only the head's loop knows whether any of the answer came.
async fn read_more(conn: &mut Conn) -> Result<usize, Broken> {
    conn.buf.reserve(8192);
    conn.stream
        .read_buf(&mut conn.buf)
        .await
        .map_err(|e| Broken::Other(e.to_string()))
}

/// Reads more of the answer, which must not end before it is whole (`what`: where in it).
async fn more(conn: &mut Conn, what: &str) -> Result<(), Broken> {
    if read_more(conn).await? == 0 {
        return Err(Broken::Other(format!("closed in {what}")));
    }
    Ok(())
}

/// Reads a chunked body (RFC 9112 §7.1), trailers included and dropped.
async fn dechunk(conn: &mut Conn) -> Result<Vec<u8>, Broken> {
    let mut body = Vec::new();
    loop {
        let (start, size) = loop {
            match httparse::parse_chunk_size(&conn.buf) {
                Ok(httparse::Status::Complete((start, size))) => break (start, size),
                Ok(httparse::Status::Partial) => more(conn, "a chunk's size").await?,
                Err(_) => return Err(Broken::Other("bad chunk size".into())),
            }
        };
        let size = usize::try_from(size).map_err(|_| Broken::Other("chunk too large".into()))?;
        if size == 0 {
            conn.buf.drain(..start);
            // Trailer fields, then the empty line.
            loop {
                match conn.buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        conn.buf.drain(..2);
                        return Ok(body);
                    }
                    Some(i) => {
                        conn.buf.drain(..i + 2);
                    }
                    None => more(conn, "the trailer").await?,
                }
            }
        }
        while conn.buf.len() < start + size + 2 {
            more(conn, "a chunk").await?;
        }
        body.extend_from_slice(&conn.buf[start..start + size]);
        if &conn.buf[start + size..start + size + 2] != b"\r\n" {
            return Err(Broken::Other("chunk not followed by CRLF".into()));
        }
        conn.buf.drain(..start + size + 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request with the next of `answers` (bytes, then whether to
    /// close the connection; empty bytes: close without an answer), and sends on what it read
    /// so that the test can check the request.
    async fn server(
        answers: Vec<(&'static [u8], bool)>,
    ) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                loop {
                    let mut buf = vec![0; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    tx.send(buf[..n].to_vec()).unwrap();
                    let Some((answer, close)) = answers.next() else {
                        break;
                    };
                    s.write_all(answer).await.unwrap();
                    if close {
                        break;
                    }
                }
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn keeps_the_connection_and_reads_length_and_chunked_bodies() {
        let (addr, mut seen) = server(vec![
            (b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}", false),
            (b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n", false),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        ])
        .await;
        let c = Client::new(addr);
        let r = c
            .request(
                "POST",
                "/p",
                &[("x-a", "1")],
                Some(("application/json", b"{}")),
            )
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{\"a\":1}"[..]));
        let req = String::from_utf8(seen.recv().await.unwrap()).unwrap();
        assert_eq!(
            req,
            format!(
                "POST /p HTTP/1.1\r\nhost: {addr}\r\nx-a: 1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
            )
        );
        let r = c.request("GET", "/q", &[], None).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (400, &b"abcde"[..]));
        let r = c.request("GET", "/r", &[], None).await.unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        // All three on one connection: the server accepted once.
        assert_eq!(c.idle.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_kept_connection_found_closed_is_replaced_once() {
        let (addr, _seen) = server(vec![
            (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na", false),
            (b"", true),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb", false),
        ])
        .await;
        let c = Client::new(addr);
        assert_eq!(c.request("GET", "/", &[], None).await.unwrap().body, b"a");
        assert_eq!(c.request("GET", "/", &[], None).await.unwrap().body, b"b");
    }

    #[tokio::test]
    async fn a_broken_answer_is_an_error_and_is_not_sent_again() {
        let (addr, mut seen) = server(vec![
            (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na", false),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort", true),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nc", false),
        ])
        .await;
        let c = Client::new(addr);
        assert_eq!(c.request("GET", "/1", &[], None).await.unwrap().body, b"a");
        // On the kept connection, the answer breaks off in its body: the request may have
        // been carried out, so it is not sent again.
        assert!(matches!(
            c.request("GET", "/2", &[], None).await,
            Err(Error::Other(_))
        ));
        assert!(c.idle.lock().unwrap().is_empty());
        assert_eq!(c.request("GET", "/3", &[], None).await.unwrap().body, b"c");
        let paths: Vec<String> = std::iter::from_fn(|| seen.try_recv().ok())
            .map(|r| {
                String::from_utf8(r)
                    .unwrap()
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(paths, ["/1", "/2", "/3"]);
        let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            Client::new(closed)
                .request("GET", "/", &[], None)
                .await
                .err(),
            Some(Error::Connect)
        );
    }
}
