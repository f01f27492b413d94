//! A reference JSON reader with the semantics of JavaScript's `JSON.parse`
//! (ECMA-262 §25.5.1), written for the fuzz oracles only (plain, slow,
//! obviously right rather than fast):
//!
//! * the grammar is RFC 8259's: whitespace is space, tab, LF and CR only;
//!   raw control characters in strings are refused;
//! * strings are sequences of UTF-16 code units, so a lone surrogate
//!   (`"\ud800"`) is a string like any other (serde_json refuses it);
//! * an object keeps every member in order; a lookup finds the *last* one
//!   with the key (what `JSON.parse`, Python's `json` and Go do);
//! * nesting has no limit but the input's size.

/// A JSON value as `JSON.parse` sees it. Numbers keep their text.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(Vec<u16>),
    Arr(Vec<J>),
    Obj(Vec<(Vec<u16>, J)>),
}

/// A key or string as UTF-16 code units.
pub fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

impl J {
    /// The member `key` of an object (the last one when it repeats).
    pub fn get(&self, key: &str) -> Option<&J> {
        let J::Obj(members) = self else { return None };
        let key = utf16(key);
        members
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// How many members of an object have the key (0 for a non-object).
    pub fn count(&self, key: &str) -> usize {
        let J::Obj(members) = self else { return 0 };
        let key = utf16(key);
        members.iter().filter(|(k, _)| *k == key).count()
    }

    /// The object's members without `key`.
    pub fn without(&self, key: &str) -> J {
        match self {
            J::Obj(members) => {
                let key = utf16(key);
                J::Obj(members.iter().filter(|(k, _)| *k != key).cloned().collect())
            }
            other => other.clone(),
        }
    }

    /// A string that is valid Unicode, as a Rust string.
    pub fn as_string(&self) -> Option<String> {
        match self {
            J::Str(units) => String::from_utf16(units).ok(),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, J::Obj(_))
    }

    /// The value as a program reading it sees it: objects with repeated
    /// keys reduced to the last one, members in key order (order carries no
    /// meaning in JSON).
    pub fn canonical(&self) -> J {
        match self {
            J::Arr(items) => J::Arr(items.iter().map(J::canonical).collect()),
            J::Obj(members) => {
                let mut out: Vec<(Vec<u16>, J)> = Vec::new();
                for (k, v) in members {
                    out.retain(|(x, _)| x != k);
                    out.push((k.clone(), v.canonical()));
                }
                out.sort_by(|a, b| a.0.cmp(&b.0));
                J::Obj(out)
            }
            other => other.clone(),
        }
    }
}

/// Parses one JSON text the way `JSON.parse` does; `None` where it throws.
pub fn parse(text: &str) -> Option<J> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &str, v: J) -> Option<J> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Some(v)
        } else {
            None
        }
    }

    fn value(&mut self) -> Option<J> {
        match self.peek()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(J::Str),
            b't' => self.lit("true", J::Bool(true)),
            b'f' => self.lit("false", J::Bool(false)),
            b'n' => self.lit("null", J::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<J> {
        let start = self.i;
        self.eat(b'-');
        if self.eat(b'0') {
            // no leading zeros
        } else if self.digits() == 0 {
            return None;
        }
        if self.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(J::Num(self.text[start..self.i].to_owned()))
    }

    fn hex4(&mut self) -> Option<u16> {
        let h = self.s.get(self.i..self.i + 4)?;
        let h = std::str::from_utf8(h).ok()?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u16::from_str_radix(h, 16).ok()
    }

    fn string(&mut self) -> Option<Vec<u16>> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            match b {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.i += 1;
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'"' => out.push(0x22),
                        b'\\' => out.push(0x5c),
                        b'/' => out.push(0x2f),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(0x0a),
                        b'r' => out.push(0x0d),
                        b't' => out.push(0x09),
                        b'u' => out.push(self.hex4()?),
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => {
                    // One whole UTF-8 character (the input is a str).
                    let c = self.text[self.i..].chars().next()?;
                    let mut buf = [0u16; 2];
                    out.extend_from_slice(c.encode_utf16(&mut buf));
                    self.i += c.len_utf8();
                }
            }
        }
    }

    fn array(&mut self) -> Option<J> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat(b']') {
            return Some(J::Arr(items));
        }
        loop {
            self.ws();
            items.push(self.value()?);
            self.ws();
            if self.eat(b']') {
                return Some(J::Arr(items));
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn object(&mut self) -> Option<J> {
        self.i += 1;
        let mut members = Vec::new();
        self.ws();
        if self.eat(b'}') {
            return Some(J::Obj(members));
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return None;
            }
            let k = self.string()?;
            self.ws();
            if !self.eat(b':') {
                return None;
            }
            self.ws();
            let v = self.value()?;
            members.push((k, v));
            self.ws();
            if self.eat(b'}') {
                return Some(J::Obj(members));
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_json_parse() {
        assert_eq!(parse(" 1 "), Some(J::Num("1".into())));
        assert_eq!(parse("01"), None);
        assert_eq!(parse("1."), None);
        assert_eq!(parse("\u{a0}1"), None);
        assert_eq!(parse("\"\\ud800\""), Some(J::Str(vec![0xd800])));
        assert_eq!(parse("\"\u{1}\""), None);
        let o = parse(r#"{"a":1,"\u0061":2}"#).unwrap();
        assert_eq!(o.get("a"), Some(&J::Num("2".into())));
        assert_eq!(o.count("a"), 2);
        assert_eq!(parse("[1,]"), None);
        assert_eq!(parse("{\"a\":1,}"), None);
        assert_eq!(parse(&"[".repeat(5000)), None);
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(parse(&deep).is_some());
    }
}
