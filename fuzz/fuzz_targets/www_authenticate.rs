#![no_main]
//! `WWW-Authenticate` parsing of the client half
//! (`mcp_transport::client::parse_www_authenticate`, used by `hangar
//! connect` to read the server's challenge: `resource_metadata`, `scope`,
//! `error` for sign-in and step-up).
//!
//! Properties:
//! * no panic on any header value;
//! * a challenge written by the RFC 9110 §11.6.1 grammar (tokens or quoted
//!   strings with escapes, optional whitespace around `=` and `,`) reads
//!   back as its scheme and auth-params, names lowercased; a following
//!   challenge does not leak its params into the first;
//! * `Challenge` finds params by name case-insensitively.

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_transport::client::{parse_www_authenticate, Challenge};

#[derive(Arbitrary, Debug)]
struct Param {
    name: String,
    value: String,
    quoted: bool,
    spaced: bool,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(String),
    Written {
        scheme: String,
        params: Vec<Param>,
        next: Option<(String, Vec<Param>)>,
        tight: bool,
    },
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn token(s: &str) -> Option<String> {
    let t: String = s.chars().filter(|c| is_tchar(*c)).collect();
    (!t.is_empty()).then_some(t)
}

/// `name=value` by the grammar, and the value a reader must get back.
fn write(p: &Param) -> Option<(String, String, String)> {
    let name = token(&p.name)?;
    let eq = if p.spaced { " = " } else { "=" };
    let value_token = token(&p.value).filter(|t| *t == p.value);
    match value_token {
        Some(t) if !p.quoted => Some((format!("{name}{eq}{t}"), name, t)),
        _ => {
            // qdtext / quoted-pair: any visible character, space or tab.
            let value: String = p
                .value
                .chars()
                .filter(|c| *c == '\t' || !c.is_control())
                .collect();
            let escaped: String = value
                .chars()
                .flat_map(|c| match c {
                    '"' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            Some((format!("{name}{eq}\"{escaped}\""), name, value))
        }
    }
}

fn challenge(
    scheme: &str,
    params: &[Param],
    tight: bool,
) -> Option<(String, String, Vec<(String, String)>)> {
    let scheme = token(scheme)?;
    let mut written = Vec::new();
    let mut expected = Vec::new();
    for p in params {
        if let Some((text, name, value)) = write(p) {
            written.push(text);
            expected.push((name.to_ascii_lowercase(), value));
        }
    }
    let sep = if tight { "," } else { " , " };
    let text = if written.is_empty() {
        scheme.clone()
    } else {
        format!("{scheme} {}", written.join(sep))
    };
    Some((text, scheme, expected))
}

fuzz_target!(|input: Input| match input {
    Input::Raw(value) => {
        let parsed = parse_www_authenticate(&value);
        let c = Challenge::new(401, Some(&value), String::new());
        assert_eq!(c.scheme, parsed.as_ref().map(|p| p.0.clone()));
        if let Some((scheme, params)) = parsed {
            assert!(!scheme.is_empty());
            for (name, value) in &params {
                assert_eq!(c.param(&name.to_ascii_uppercase()), c.param(name));
                assert!(c.param(name).is_some());
                let _ = value;
            }
        }
    }
    Input::Written {
        scheme,
        params,
        next,
        tight,
    } => {
        let Some((mut text, scheme, expected)) = challenge(&scheme, &params, tight) else {
            return;
        };
        if let Some((s, p)) = next {
            if let Some((more, _, _)) = challenge(&s, &p, tight) {
                text = format!("{text}, {more}");
            }
        }
        assert_eq!(
            parse_www_authenticate(&text),
            Some((scheme, expected)),
            "{text:?}"
        );
    }
});
