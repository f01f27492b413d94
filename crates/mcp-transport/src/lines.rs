//! Newline-delimited framing for stdio peers (stdio MCP servers and
//! clients), bounded: an overlong line is skipped to its end and reported,
//! and reading goes on. (tokio-util's `LinesCodec` ends the whole stream
//! after one overlong line, which would end a session over one bad line.)

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line read from a stdio peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (without its line break) is in the buffer.
    Complete,
    /// The line was longer than the limit and was skipped to its end.
    TooLong,
    Eof,
}

/// Reads one newline-terminated line into `buf`, keeping at most `max`
/// bytes of it (one more while reading, for the CR of a CRLF, which is the
/// line break and not the line): a longer line is consumed and reported,
/// and reading goes on with the next one (so one bad line cannot end the
/// session).
pub async fn next_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    let mut seen = false;
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(match (seen, too_long || buf.len() > max) {
                (false, _) => Line::Eof,
                (true, true) => {
                    buf.clear();
                    Line::TooLong
                }
                (true, false) => Line::Complete,
            });
        }
        seen = true;
        let (take, used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, i + 1, true),
            None => (chunk.len(), chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > max.saturating_add(1) {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        input.consume(used);
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if buf.len() > max {
                too_long = true;
                buf.clear();
            }
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn lines_are_bounded_and_reading_goes_on() {
        let data: &[u8] = b"short\r\n0123456789abc\nok\n\nlast-without-newline";
        let mut input = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            let line = next_line(&mut input, &mut buf, 10).await.unwrap();
            if line == Line::Eof {
                break;
            }
            got.push((line, String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            got,
            vec![
                (Line::Complete, "short".into()),
                (Line::TooLong, String::new()),
                (Line::Complete, "ok".into()),
                (Line::Complete, String::new()),
                (Line::TooLong, String::new()),
            ]
        );
    }

    // Found by fuzz/lines: a line of exactly the limit ending in CRLF was
    // reported too long (its CR counted), the same line ending in LF not.
    #[tokio::test]
    async fn the_limit_is_on_the_line_not_its_line_break() {
        let data: &[u8] = b"12345\r\n12345\n\r\n123456\r\n1234\r";
        let mut input = BufReader::with_capacity(3, data);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for _ in 0..10 {
            let line = next_line(&mut input, &mut buf, 5).await.unwrap();
            assert!(buf.len() <= 5);
            if line == Line::Eof {
                break;
            }
            got.push((line, String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            got,
            vec![
                (Line::Complete, "12345".into()),
                (Line::Complete, "12345".into()),
                (Line::Complete, String::new()),
                (Line::TooLong, String::new()),
                (Line::Complete, "1234\r".into()),
            ]
        );
    }
}
