//! What `hangar connect` takes from its command line, checked: `--header`
//! lines with `${VAR}` expansion, and the server URL policy (HTTPS, or
//! plain HTTP on loopback or with `--allow-http`). Flag names and behaviour
//! follow mcp-remote, so `hangar connect` is a drop-in replacement.

use mcp_transport::client::Url;

/// Why an option is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("--header {0:?} is not in \"Name: value\" form")]
    Header(String),
    #[error("--header {name}: {why}")]
    HeaderValue { name: String, why: String },
    #[error("{url:?} is not a valid URL: {why}")]
    Url { url: String, why: String },
    #[error("{0} is not an http:// or https:// URL")]
    Scheme(String),
    #[error("{0} uses plain HTTP to a host that is not loopback: credentials and traffic would cross the network unencrypted; use https://, or pass --allow-http if you mean it")]
    InsecureHttp(String),
}

/// Splits a `--header` value, `Name: value` (mcp-remote's `^[A-Za-z0-9_-]+:\s*(.*)$`),
/// and expands `${VAR}` in the value from `env`.
pub fn parse_header(
    line: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, String), OptionError> {
    let Some((name, value)) = line.split_once(':') else {
        return Err(OptionError::Header(line.to_owned()));
    };
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(OptionError::Header(line.to_owned()));
    }
    let value = expand_env(value.trim_start(), name, env);
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(OptionError::HeaderValue {
            name: name.to_owned(),
            why: "the value contains a line break or NUL".into(),
        });
    }
    Ok((name.to_owned(), value))
}

/// Replaces `${VAR}` with the variable's value. A variable that is not set
/// is left as written, with a warning (what mcp-remote 0.15 does).
pub fn expand_env(value: &str, context: &str, env: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match env(name) {
            Some(v) if !name.is_empty() => out.push_str(&v),
            _ => {
                tracing::warn!(
                    "environment variable {name:?} is not set (in {context}); leaving ${{{name}}} as written"
                );
                out.push_str(&rest[start..start + 3 + end]);
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Parses the server URL and applies the transport-security policy.
pub fn server_url(url: &str, allow_http: bool) -> Result<Url, OptionError> {
    let parsed = Url::parse(url).map_err(|e| OptionError::Url {
        url: url.to_owned(),
        why: e.to_string(),
    })?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_http || is_loopback(&parsed) => Ok(parsed),
        "http" => Err(OptionError::InsecureHttp(url.to_owned())),
        _ => Err(OptionError::Scheme(url.to_owned())),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "SPACE" => Some("Bearer x y".into()),
            _ => None,
        }
    }

    #[test]
    fn headers_split_and_expand() {
        assert_eq!(
            parse_header("Authorization: Bearer ${TOKEN}", env).unwrap(),
            ("Authorization".into(), "Bearer s3cret".into())
        );
        // Claude Desktop on Windows cannot pass spaces: the space lives in the variable.
        assert_eq!(
            parse_header("Authorization:${SPACE}", env).unwrap(),
            ("Authorization".into(), "Bearer x y".into())
        );
        assert_eq!(
            parse_header("X-Trace:  a:b ${TOKEN}${TOKEN} ${MISSING} ${", env).unwrap(),
            ("X-Trace".into(), "a:b s3crets3cret ${MISSING} ${".into())
        );
        assert_eq!(
            parse_header("X_A-1:", env).unwrap(),
            ("X_A-1".into(), String::new())
        );
        assert!(matches!(
            parse_header("no colon", env),
            Err(OptionError::Header(_))
        ));
        assert!(matches!(
            parse_header("Bad Name: x", env),
            Err(OptionError::Header(_))
        ));
        assert!(matches!(
            parse_header(": x", env),
            Err(OptionError::Header(_))
        ));
        assert!(matches!(
            parse_header("X: a\nb", env),
            Err(OptionError::HeaderValue { .. })
        ));
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for ok in [
            "https://mcp.example.com/mcp",
            "http://127.0.0.1:8000/mcp",
            "http://127.9.9.9/mcp",
            "http://localhost:8080/mcp/everything",
            "http://[::1]:8000/mcp",
        ] {
            assert!(server_url(ok, false).is_ok(), "{ok}");
        }
        assert!(matches!(
            server_url("http://mcp.example.com/mcp", false),
            Err(OptionError::InsecureHttp(_))
        ));
        assert!(matches!(
            server_url("http://10.0.0.1/mcp", false),
            Err(OptionError::InsecureHttp(_))
        ));
        assert!(server_url("http://mcp.example.com/mcp", true).is_ok());
        assert!(matches!(
            server_url("ftp://x/mcp", true),
            Err(OptionError::Scheme(_))
        ));
        assert!(matches!(
            server_url("not a url", false),
            Err(OptionError::Url { .. })
        ));
    }
}
