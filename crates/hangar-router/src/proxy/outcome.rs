//! A tool call's outcome, read from its answer while the answer streams to
//! the client: nothing is buffered, whatever the answer's size, and JSON and
//! SSE answers are judged alike (an SSE answer by the JSON-RPC response
//! among its events, not by the stream having opened).
//!
//! The reading is a small byte scanner rather than a JSON parser: it keeps
//! only the nesting of containers and the few keys the audit needs
//! (`error` and `result` at the top of a message, `isError` in `result`),
//! so its memory is a few dozen bytes plus the nesting depth. Written here
//! because no streaming JSON crate reads a value's members without either
//! buffering them or building them.

/// What the audit records of a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A JSON-RPC error, a failed HTTP status, or no answer at all.
    Error,
    /// The tool ran and said it failed (`isError: true`).
    ToolError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::ToolError => "tool_error",
        }
    }
}

/// Deeper than this, the scanner stops reading (and the outcome is what it
/// had seen): the audit's interest is in the first two levels.
const MAX_DEPTH: usize = 4096;

/// Reads one answer, chunk by chunk.
pub struct AnswerReader {
    framing: Framing,
    message: Scan,
    /// The outcome of the last response seen.
    found: Option<Outcome>,
}

enum Framing {
    /// The body is one JSON-RPC message.
    Json,
    /// The body is an SSE stream; `data` lines carry the messages.
    Sse(SseLines),
}

impl AnswerReader {
    pub fn json() -> AnswerReader {
        AnswerReader {
            framing: Framing::Json,
            message: Scan::default(),
            found: None,
        }
    }

    pub fn sse() -> AnswerReader {
        AnswerReader {
            framing: Framing::Sse(SseLines::default()),
            message: Scan::default(),
            found: None,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match &mut self.framing {
            Framing::Json => self.message.feed(chunk),
            Framing::Sse(lines) => {
                let message = &mut self.message;
                let found = &mut self.found;
                lines.feed(chunk, |event| match event {
                    SseEvent::Data(bytes) => message.feed(bytes),
                    SseEvent::LineBetweenData => message.feed(b"\n"),
                    SseEvent::End => {
                        if let Some(outcome) = message.outcome() {
                            *found = Some(outcome);
                        }
                        *message = Scan::default();
                    }
                });
            }
        }
    }

    /// The outcome once the answer has ended (or been cut off): that of the
    /// response it carried; a JSON body that is no JSON-RPC response counts
    /// as answered (the instance said 200), an SSE stream without one as an
    /// error (the client never got its answer on this stream).
    pub fn finish(mut self) -> Outcome {
        match self.framing {
            Framing::Json => self.message.outcome().unwrap_or(Outcome::Ok),
            Framing::Sse(_) => {
                // An event not closed by a blank line still counts.
                if let Some(outcome) = self.message.outcome() {
                    self.found = Some(outcome);
                }
                self.found.unwrap_or(Outcome::Error)
            }
        }
    }
}

/// Which of the keys the audit cares about a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Error,
    Result,
    Method,
    IsError,
    Other,
}

/// An incremental scan of one JSON value for the members the audit needs.
#[derive(Default)]
struct Scan {
    /// For each open container: true for an object.
    stack: Vec<bool>,
    in_string: bool,
    escaped: bool,
    /// The string being read is an object key.
    string_is_key: bool,
    /// The key's first bytes (no key of interest is longer).
    key: [u8; 8],
    key_len: usize,
    /// The next string in the current object is a key.
    expect_key: bool,
    /// The last key read, waiting for its `:`.
    last_key: Option<Key>,
    /// Set by a `:`: the next value belongs to this key.
    value_of: Option<Key>,
    /// The top-level key whose value is open now.
    top_key: Option<Key>,
    started: bool,
    done: bool,
    too_deep: bool,
    error: bool,
    tool_error: bool,
    result: bool,
    method: bool,
}

impl Scan {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done || self.too_deep {
                return;
            }
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.string_is_key {
                    self.end_key();
                }
            } else if self.string_is_key && self.key_len < self.key.len() + 1 {
                if self.key_len < self.key.len() {
                    self.key[self.key_len] = b;
                }
                self.key_len += 1;
            }
            return;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return;
        }
        if let Some(key) = self.value_of.take() {
            // The first byte of the value of `key`.
            match key {
                Key::Error => self.error |= b != b'n', // `"error": null` is none
                Key::Result => self.result = true,
                Key::Method => self.method = true,
                Key::IsError => self.tool_error |= b == b't',
                Key::Other => {}
            }
        }
        match b {
            b'{' | b'[' => {
                self.started = true;
                if self.stack.len() >= MAX_DEPTH {
                    self.too_deep = true;
                    return;
                }
                self.stack.push(b == b'{');
                self.expect_key = b == b'{';
            }
            b'}' | b']' => {
                self.stack.pop();
                self.expect_key = false;
                if self.stack.len() == 1 {
                    self.top_key = None;
                }
                if self.stack.is_empty() {
                    self.done = true;
                }
            }
            b',' => {
                self.expect_key = self.stack.last() == Some(&true);
                if self.stack.len() == 1 {
                    self.top_key = None;
                }
            }
            b':' => {
                self.value_of = self.last_key.take();
                self.expect_key = false;
            }
            b'"' => {
                self.started = true;
                self.in_string = true;
                self.string_is_key = self.expect_key;
                self.key_len = 0;
                self.expect_key = false;
            }
            _ => self.started = true, // numbers and literals
        }
    }

    fn end_key(&mut self) {
        let key = if self.key_len > self.key.len() {
            Key::Other
        } else {
            match &self.key[..self.key_len] {
                b"error" => Key::Error,
                b"result" => Key::Result,
                b"method" => Key::Method,
                b"isError" => Key::IsError,
                _ => Key::Other,
            }
        };
        let key = match (self.stack.len(), key) {
            (1, Key::IsError) => Key::Other,
            (1, key) => {
                self.top_key = Some(key);
                key
            }
            // `isError` counts only directly in the top-level `result`.
            (2, Key::IsError) if self.top_key == Some(Key::Result) && self.stack[1] => Key::IsError,
            _ => Key::Other,
        };
        self.last_key = Some(key);
    }

    /// What a complete (or cut-off) message says, if it is a response.
    fn outcome(&self) -> Option<Outcome> {
        if !self.started || self.method || self.stack.first() == Some(&false) {
            return None; // nothing, a request or notification, or a batch
        }
        if self.error {
            Some(Outcome::Error)
        } else if self.tool_error {
            Some(Outcome::ToolError)
        } else if self.result {
            Some(Outcome::Ok)
        } else {
            None
        }
    }
}

/// What the SSE line splitter reports.
enum SseEvent<'a> {
    /// Part of a `data` field's value.
    Data(&'a [u8]),
    /// A second `data` line of the same event begins (joined by a newline).
    LineBetweenData,
    /// A blank line: the event is complete.
    End,
}

/// Splits an SSE stream into `data` values and event ends, across chunk
/// boundaries, holding at most a field name's few bytes.
#[derive(Default)]
struct SseLines {
    /// Bytes of the current line's field name, until its `:` (or a
    /// longer name, which is no `data` field).
    field: [u8; 5],
    field_len: usize,
    state: LineState,
    /// The current event has had a data line.
    has_data: bool,
    last_cr: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// At the start of a line, or reading its field name.
    #[default]
    Field,
    /// Right after `data:` (one space may follow and is not part of the value).
    DataStart,
    /// In a data value.
    Data,
    /// In some other field's value or a comment: skipped.
    Skip,
}

impl SseLines {
    fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(SseEvent<'_>)) {
        while !chunk.is_empty() {
            let b = chunk[0];
            if self.last_cr && b == b'\n' {
                // The LF of a CRLF: the line already ended.
                self.last_cr = false;
                chunk = &chunk[1..];
                continue;
            }
            self.last_cr = false;
            match self.state {
                LineState::Data => {
                    // Hand on the value up to the line's end in one piece.
                    let end = chunk
                        .iter()
                        .position(|&c| c == b'\n' || c == b'\r')
                        .unwrap_or(chunk.len());
                    if end > 0 {
                        emit(SseEvent::Data(&chunk[..end]));
                    }
                    chunk = &chunk[end..];
                    if let Some(&eol) = chunk.first() {
                        self.end_line(eol);
                        chunk = &chunk[1..];
                    }
                }
                LineState::DataStart => {
                    if b == b'\n' || b == b'\r' {
                        self.end_line(b);
                    } else {
                        self.state = LineState::Data;
                        if b != b' ' {
                            continue; // this byte is the value's first
                        }
                    }
                    chunk = &chunk[1..];
                }
                LineState::Skip => {
                    if b == b'\n' || b == b'\r' {
                        self.end_line(b);
                    }
                    chunk = &chunk[1..];
                }
                LineState::Field => {
                    if b == b'\n' || b == b'\r' {
                        if self.field_len == 0 {
                            // A blank line ends the event.
                            if self.has_data {
                                emit(SseEvent::End);
                            }
                            self.has_data = false;
                            self.last_cr = b == b'\r';
                        } else {
                            // A field with no colon: its name is the line.
                            if self.is_data() {
                                self.begin_data(&mut emit);
                            }
                            self.end_line(b);
                        }
                    } else if b == b':' {
                        if self.is_data() {
                            self.begin_data(&mut emit);
                            self.state = LineState::DataStart;
                        } else {
                            self.state = LineState::Skip;
                        }
                    } else if self.field_len < self.field.len() {
                        self.field[self.field_len] = b;
                        self.field_len += 1;
                    } else {
                        self.state = LineState::Skip;
                    }
                    chunk = &chunk[1..];
                }
            }
        }
    }

    fn begin_data(&mut self, emit: &mut impl FnMut(SseEvent<'_>)) {
        if self.has_data {
            emit(SseEvent::LineBetweenData);
        }
        self.has_data = true;
    }

    /// The current line's field is `data`.
    fn is_data(&self) -> bool {
        &self.field[..self.field_len] == b"data"
    }

    fn end_line(&mut self, eol: u8) {
        self.state = LineState::Field;
        self.field_len = 0;
        self.last_cr = eol == b'\r';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> Outcome {
        let mut r = AnswerReader::json();
        r.feed(body.as_bytes());
        r.finish()
    }

    /// Every split of `body` into two chunks gives the same outcome as one.
    fn sse_split(body: &str) -> Outcome {
        let mut whole = AnswerReader::sse();
        whole.feed(body.as_bytes());
        let expected = whole.finish();
        for i in 0..=body.len() {
            let mut r = AnswerReader::sse();
            r.feed(&body.as_bytes()[..i]);
            r.feed(&body.as_bytes()[i..]);
            assert_eq!(r.finish(), expected, "split at {i} of {body:?}");
        }
        for step in [1, 2, 3, 7] {
            let mut r = AnswerReader::sse();
            for chunk in body.as_bytes().chunks(step) {
                r.feed(chunk);
            }
            assert_eq!(r.finish(), expected, "chunks of {step}");
        }
        expected
    }

    #[test]
    fn json_answers() {
        assert_eq!(
            json(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#),
            Outcome::Ok
        );
        assert_eq!(
            json(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#),
            Outcome::Error
        );
        assert_eq!(
            json(
                r#"{"result":{"content":[{"type":"text","text":"\"isError\":true"}],"isError":true},"id":1}"#
            ),
            Outcome::ToolError
        );
        assert_eq!(json(r#"{"result":{"isError":false},"id":1}"#), Outcome::Ok);
        // Only result's own isError counts, not one nested in its content.
        assert_eq!(
            json(
                r#"{"result":{"content":[{"isError":true}],"structuredContent":{"isError":true}},"id":1}"#
            ),
            Outcome::Ok
        );
        // Nor a top-level one, nor keys inside strings.
        assert_eq!(json(r#"{"isError":true,"result":{}}"#), Outcome::Ok);
        assert_eq!(json(r#"{"result":{"text":"\"error\": 1"}}"#), Outcome::Ok);
        assert_eq!(json(r#"{"error":null,"result":{}}"#), Outcome::Ok);
        // An escaped quote does not end a key.
        assert_eq!(json(r#"{"res\"ult":{},"error":{}}"#), Outcome::Error);
        // Longer keys that begin alike are other keys.
        assert_eq!(
            json(r#"{"errors":{},"resultant":1,"result":{}}"#),
            Outcome::Ok
        );
        assert_eq!(json("not json"), Outcome::Ok);
        assert_eq!(json(""), Outcome::Ok);
    }

    #[test]
    fn sse_answers_are_judged_by_their_response_event() {
        let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"error":1}}"#;
        let failed = r#"{"jsonrpc":"2.0","id":3,"result":{"content":[],"isError":true}}"#;
        let body = format!(": comment\nid: 1_0\nretry: 1000\n\nid: 1_1\ndata: {progress}\n\nevent: message\nid: 1_2\ndata: {failed}\n\n");
        assert_eq!(sse_split(&body), Outcome::ToolError);
        let crlf = body.replace('\n', "\r\n");
        assert_eq!(sse_split(&crlf), Outcome::ToolError);
        // A JSON-RPC error, with its data split over two data lines.
        let body = "data: {\"jsonrpc\":\"2.0\",\"id\":3,\ndata:\"error\":{\"code\":1}}\n\n";
        assert_eq!(sse_split(body), Outcome::Error);
        // A stream that ended before its response: the client got no answer.
        let body = format!("id: 1_1\ndata: {progress}\n\n");
        assert_eq!(sse_split(&body), Outcome::Error);
        let ok = r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#;
        assert_eq!(sse_split(&format!("data:{ok}\n\n")), Outcome::Ok);
        // The last event, unterminated, still counts.
        assert_eq!(sse_split(&format!("data: {ok}")), Outcome::Ok);
        // A field that only begins with "data" is another field.
        assert_eq!(sse_split(&format!("datax: {ok}\n\n")), Outcome::Error);
    }

    #[test]
    fn memory_does_not_grow_with_the_answer() {
        let mut r = AnswerReader::sse();
        r.feed(b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"");
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            r.feed(&chunk);
        }
        r.feed(b"\"}],\"isError\":true}}\n\n");
        assert!(r.message.stack.capacity() < 64);
        assert_eq!(r.finish(), Outcome::ToolError);
    }

    #[test]
    fn deep_nesting_stops_the_scan_but_not_the_answer() {
        let deep = format!(
            r#"{{"result":{{"content":{}1{}}},"id":1}}"#,
            "[".repeat(MAX_DEPTH + 10),
            "]".repeat(MAX_DEPTH + 10)
        );
        assert_eq!(json(&deep), Outcome::Ok);
    }
}
