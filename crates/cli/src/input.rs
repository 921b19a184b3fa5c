//! Reading NDJSON input without trusting it: lines are read as bytes (invalid UTF-8 is the
//! adapter's to reject, with a reason), and a line longer than the record limit is consumed
//! without being kept, so one huge line cannot exhaust memory.

use std::io::{self, BufRead};

/// Reads the next line into `buf`, keeping at most `cap + 1` bytes. `Ok(None)` at the end.
pub fn read_capped_line<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<Option<usize>> {
    buf.clear();
    let mut len = 0usize;
    let mut any = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(len));
        }
        any = true;
        let (chunk, done) = match memchr_newline(available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = (cap + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        len += chunk.len();
        let used = done.unwrap_or(available.len());
        r.consume(used);
        if done.is_some() {
            if buf.last() == Some(&b'\r') && len <= cap + 1 {
                buf.pop();
                len -= 1;
            }
            return Ok(Some(len));
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| *c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_long_lines_and_keeps_counting() {
        let data = b"short\r\n0123456789abcdef\nlast";
        let mut r = io::BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_capped_line(&mut r, &mut buf, 8).expect("io"), Some(5));
        assert_eq!(buf, b"short");
        assert_eq!(read_capped_line(&mut r, &mut buf, 8).expect("io"), Some(16));
        assert_eq!(buf.len(), 9);
        assert_eq!(read_capped_line(&mut r, &mut buf, 8).expect("io"), Some(4));
        assert_eq!(buf, b"last");
        assert_eq!(read_capped_line(&mut r, &mut buf, 8).expect("io"), None);
    }
}
