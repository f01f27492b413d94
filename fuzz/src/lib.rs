//! What the fuzz targets share: an independent model of how the peers
//! behind Hangar read JSON ([`json`]), and small input helpers.
//!
//! The properties the targets check are stated against the model, not
//! against serde_json, because the question is "does Hangar read a message
//! the way the server or client on the other side will?" — and that side is
//! typically JavaScript (`JSON.parse`) or Python.

pub mod json;

/// Picks one of `options` with a fuzz byte.
pub fn pick<'a, T: ?Sized>(options: &[&'a T], byte: u8) -> &'a T {
    options[byte as usize % options.len()]
}

/// Splits `data` into chunks at the given cut points (each taken modulo the
/// remaining length), so one input can be fed to a decoder as a network
/// would deliver it.
pub fn chunks<'a>(data: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for &cut in cuts {
        if rest.is_empty() {
            break;
        }
        let at = cut as usize % (rest.len() + 1);
        let (head, tail) = rest.split_at(at);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

/// Decodes one `application/x-www-form-urlencoded` name or value (WHATWG
/// URL §5.1: `+` is a space, `%XX` a byte, anything else itself; the bytes
/// are UTF-8 with replacement). Written for the oracles, independent of the
/// `form_urlencoded` crate the code uses.
pub fn form_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len()
                && s[i + 1].is_ascii_hexdigit()
                && s[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(s[i + 1]) * 16 + hex(s[i + 2]));
                i += 3;
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A whole form body as name/value pairs, in order (empty pieces skipped).
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None => (piece, &b""[..]),
            };
            (form_decode(name), form_decode(value))
        })
        .collect()
}
