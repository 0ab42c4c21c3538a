//! Just enough HTTP/1.1 for a keep-alive client: build a request, read one response.

use std::net::SocketAddr;

#[derive(Debug)]
pub struct Target {
    address: SocketAddr,
    host: String,
    path_and_query: String,
}

impl Target {
    /// `http://127.0.0.1:PORT/path?query` or `http://[::1]:PORT/...`; load runs stay on this
    /// machine, so other hosts are refused.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let address: SocketAddr = host.parse().map_err(|_| format!("{url}: the host must be an IP address with a port"))?;
        if !address.ip().is_loopback() {
            return Err(format!("{url}: load runs target only the loopback interface"));
        }
        Ok(Target { address, host: host.to_string(), path_and_query: path.to_string() })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn request(&self, method: &str, content_type: &str, body: Option<String>) -> Vec<u8> {
        let mut out = format!("{method} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/fhir+json\r\n", self.path_and_query, self.host);
        match body {
            Some(body) => {
                out.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len()));
                out.push_str(&body);
            }
            None => out.push_str("\r\n"),
        }
        out.into_bytes()
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The server will close the connection after this response.
    pub close: bool,
    /// The first bytes of the body, for reporting unexpected responses.
    pub body_start: String,
}

/// Reads responses from one connection; keeps its buffer between them.
#[derive(Default)]
pub struct ResponseReader {
    buffer: Vec<u8>,
}

impl ResponseReader {
    pub fn read(&mut self, stream: &mut impl std::io::Read) -> Result<Response, String> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some((head, total)) = parse(&self.buffer)? {
                let body = &self.buffer[head.body_offset..total];
                let response = Response {
                    status: head.status,
                    close: head.close,
                    body_start: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                };
                self.buffer.drain(..total);
                return Ok(response);
            }
            let n = stream.read(&mut chunk).map_err(|e| format!("reading a response: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

struct Head {
    status: u16,
    close: bool,
    body_offset: usize,
}

/// The head of the response at the start of `buffer` and the length of the whole response, once
/// all of it is there; `None` while more bytes are needed.
fn parse(buffer: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&buffer[..head_end]).map_err(|_| "a response head that is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("a malformed status line: {status_line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| format!("a malformed Content-Length: {value:?}"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body_offset = head_end + 4;
    let head = Head { status, close, body_offset };
    if chunked {
        return Ok(chunked_end(buffer, body_offset)?.map(|end| (head, end)));
    }
    let total = body_offset + length.unwrap_or(0);
    Ok((buffer.len() >= total).then_some((head, total)))
}

/// Where a chunked body starting at `at` ends (after the last chunk and the trailers), if it
/// is complete.
fn chunked_end(buffer: &[u8], mut at: usize) -> Result<Option<usize>, String> {
    loop {
        let Some(line_len) = buffer[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let size_text = std::str::from_utf8(&buffer[at..at + line_len]).unwrap_or_default();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| format!("a malformed chunk size: {size_text:?}"))?;
        at += line_len + 2;
        if size == 0 {
            // Trailers, if any, then an empty line.
            loop {
                let Some(line_len) = buffer[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
                at += line_len + 2;
                if line_len == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if buffer.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in pieces of `step` bytes, as a socket might deliver them.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(self.bytes.len()).min(out.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_back_to_back_responses_of_both_framings_in_any_pieces() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 422 Unprocessable Entity\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        for step in [1, 2, 7, 4096] {
            let mut reader = ResponseReader::default();
            let mut stream = Trickle { bytes: wire, step };
            let first = reader.read(&mut stream).unwrap();
            assert_eq!((first.status, first.body_start.as_str(), first.close), (200, "hello", false));
            let second = reader.read(&mut stream).unwrap();
            assert_eq!((second.status, second.body_start.as_str()), (422, "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"));
            let third = reader.read(&mut stream).unwrap();
            assert_eq!((third.status, third.close), (503, true));
            assert!(reader.read(&mut stream).unwrap_err().contains("closed"));
        }
    }

    #[test]
    fn refuses_malformed_heads_and_other_hosts() {
        let mut reader = ResponseReader::default();
        let err = reader.read(&mut Trickle { bytes: b"HTTP/1.1 OK\r\n\r\n", step: 100 }).unwrap_err();
        assert!(err.contains("status line"), "{err}");
        assert!(Target::parse("http://10.0.0.1:80/").unwrap_err().contains("loopback"));
        assert!(Target::parse("https://127.0.0.1:80/").is_err());
        let t = Target::parse("http://[::1]:8080/fhir/x?a=b").unwrap();
        let request = String::from_utf8(t.request("POST", "application/json", Some("{}".into()))).unwrap();
        assert!(request.starts_with("POST /fhir/x?a=b HTTP/1.1\r\nHost: [::1]:8080\r\n"), "{request}");
        assert!(request.ends_with("Content-Length: 2\r\n\r\n{}"), "{request}");
    }
}
