//! The user's side of sign-in: the loopback redirect listener
//! (`http://127.0.0.1:PORT/oauth/callback`, the path mcp-remote uses) and
//! opening the authorization URL in a browser.
//!
//! The port is `--callback-port`, else one derived from the server URL
//! (mcp-remote's range, 3335 + hash mod 45816), so the redirect URI stays
//! the same between runs and a registration can be reused; when that port
//! is taken, any free port (the registration is redone if its redirect URIs
//! do not list the new one).
//!
//! The browser: `$BROWSER` when set (a program, run directly with the URL
//! as its last argument; no shell), else `xdg-open` / `open`. Only http(s)
//! URLs are ever opened. `--no-browser` prints the URL on stderr instead.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

pub const CALLBACK_PATH: &str = "/oauth/callback";

/// A stable port for `server_url`: 3335 + (first two hash bytes mod 45816).
pub fn derived_port(server_url: &str) -> u16 {
    let h = Sha256::digest(server_url.as_bytes());
    let n = u32::from(u16::from_be_bytes([h[0], h[1]]));
    (3335 + n % 45816) as u16
}

pub fn redirect_uri(port: u16) -> String {
    format!("http://127.0.0.1:{port}{CALLBACK_PATH}")
}

/// Only http(s) URLs without control characters are handed to a browser.
pub fn validate_browser_url(url: &str) -> Result<Url, String> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the URL contains whitespace or control characters".into());
    }
    let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("refusing to open a {} URL", parsed.scheme()));
    }
    Ok(parsed)
}

/// How the authorization URL reaches the user.
#[derive(Clone)]
pub enum Browser {
    /// Run this program with the URL as its last argument.
    Command(Vec<String>),
    /// Print the URL on stderr.
    Print,
    /// Hand the URL to a function (tests).
    Func(Arc<dyn Fn(Url) + Send + Sync>),
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Browser::Command(c) => f.debug_tuple("Command").field(c).finish(),
            Browser::Print => f.write_str("Print"),
            Browser::Func(_) => f.write_str("Func"),
        }
    }
}

impl Browser {
    /// `--no-browser`, else `$BROWSER` (split on whitespace: program and
    /// its arguments, no shell), else the platform's opener.
    pub fn from_env(no_browser: bool, browser_var: Option<String>) -> Browser {
        if no_browser {
            return Browser::Print;
        }
        if let Some(v) = browser_var {
            let parts: Vec<String> = v.split_whitespace().map(str::to_owned).collect();
            if !parts.is_empty() {
                return Browser::Command(parts);
            }
        }
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        Browser::Command(vec![opener.to_owned()])
    }

    /// Shows `url` to the user. Failing to start a browser is not fatal:
    /// the URL is printed instead.
    pub fn open(&self, url: &str) -> Result<(), String> {
        let url = validate_browser_url(url)?;
        match self {
            Browser::Print => print_url(&url),
            Browser::Func(f) => f(url),
            Browser::Command(cmd) => {
                let Some((program, args)) = cmd.split_first() else {
                    print_url(&url);
                    return Ok(());
                };
                let spawned = std::process::Command::new(program)
                    .args(args)
                    .arg(url.as_str())
                    .stdin(std::process::Stdio::null())
                    // Our stdout is the protocol: the browser gets stderr.
                    .stdout(std::process::Stdio::from(std::io::stderr()))
                    .spawn();
                match spawned {
                    Ok(mut child) => {
                        // Reap it in the background; never block on it.
                        std::thread::spawn(move || {
                            let _ = child.wait();
                        });
                        eprintln!("hangar connect: opened the sign-in page in your browser; if it did not open, visit:\n  {url}");
                    }
                    Err(e) => {
                        tracing::warn!("could not start the browser {program:?}: {e}");
                        print_url(&url);
                    }
                }
            }
        }
        Ok(())
    }
}

fn print_url(url: &Url) {
    eprintln!("hangar connect: to sign in, open this URL in a browser:\n  {url}");
}

/// The loopback listener for one sign-in.
pub struct Callback {
    listener: TcpListener,
    port: u16,
}

impl Callback {
    /// Binds 127.0.0.1 on `preferred`; if it is taken and `fallback_any`,
    /// on any free port.
    pub async fn bind(preferred: u16, fallback_any: bool) -> std::io::Result<Callback> {
        let listener = match TcpListener::bind(("127.0.0.1", preferred)).await {
            Ok(l) => l,
            Err(e) if fallback_any => {
                tracing::debug!("callback port {preferred} is not free ({e}); using another");
                TcpListener::bind(("127.0.0.1", 0)).await?
            }
            Err(e) => return Err(e),
        };
        let port = listener.local_addr()?.port();
        Ok(Callback { listener, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn redirect_uri(&self) -> String {
        redirect_uri(self.port)
    }

    /// Waits (at most `timeout`, at most 64 connections) for the redirect
    /// carrying `state`, answers the browser, returns the query parameters.
    pub async fn wait(
        &self,
        state: &str,
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        for _ in 0..64 {
            let accepted = tokio::time::timeout_at(deadline, self.listener.accept())
                .await
                .map_err(|_| {
                    format!("no answer from the browser within {} s", timeout.as_secs())
                })?;
            let Ok((mut sock, _)) = accepted else {
                continue;
            };
            let Ok(Some(target)) =
                tokio::time::timeout(Duration::from_secs(10), read_request_target(&mut sock)).await
            else {
                continue;
            };
            let Ok(url) = Url::parse(&format!("http://127.0.0.1{target}")) else {
                let _ = respond(&mut sock, 400, "Bad request.").await;
                continue;
            };
            if url.path() != CALLBACK_PATH {
                let _ = respond(&mut sock, 404, "Not found.").await;
                continue;
            }
            let params: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let ours = params.iter().any(|(k, v)| k == "state" && v == state);
            if !ours {
                let _ = respond(
                    &mut sock,
                    400,
                    "This sign-in response is not for the current sign-in; it was ignored.",
                )
                .await;
                continue;
            }
            let failed = params.iter().any(|(k, _)| k == "error");
            let text = if failed {
                "Sign-in failed. You can close this window and check the terminal."
            } else {
                "Signed in. You can close this window and return to your MCP client."
            };
            let _ = respond(&mut sock, 200, text).await;
            return Ok(params);
        }
        Err("too many unrelated requests on the callback port".into())
    }
}

/// Reads an HTTP/1 request head (bounded to 16 KiB) and returns its target.
async fn read_request_target(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return None;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = std::str::from_utf8(&buf).ok()?;
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    (method == "GET" && target.starts_with('/')).then(|| target.to_owned())
}

async fn respond(sock: &mut tokio::net::TcpStream, status: u16, text: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body =
        format!("<!doctype html><meta charset=utf-8><title>hangar connect</title><p>{text}</p>\n");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_stable_and_in_range() {
        let a = derived_port("https://mcp.example.com/mcp");
        assert_eq!(a, derived_port("https://mcp.example.com/mcp"));
        assert!((3335..3335 + 45816).contains(&u32::from(a)));
        assert_ne!(a, derived_port("https://mcp.example.com/other"));
        assert_eq!(redirect_uri(5000), "http://127.0.0.1:5000/oauth/callback");
    }

    #[test]
    fn only_http_urls_are_opened() {
        assert!(validate_browser_url("https://auth.example.com/authorize?x=1").is_ok());
        assert!(validate_browser_url("http://127.0.0.1:1/authorize").is_ok());
        for bad in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "-a https://x",
            "https://x/\n--flag",
            "https://x/ y",
            "data:text/html,x",
            "not a url",
        ] {
            assert!(validate_browser_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn browser_var_is_a_program_not_a_shell_line() {
        match Browser::from_env(false, Some("/usr/bin/firefox --new-window".into())) {
            Browser::Command(c) => assert_eq!(c, ["/usr/bin/firefox", "--new-window"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Browser::from_env(true, Some("x".into())),
            Browser::Print
        ));
        assert!(matches!(
            Browser::from_env(false, None),
            Browser::Command(_)
        ));
    }

    #[tokio::test]
    async fn the_callback_takes_only_its_state() {
        let cb = Callback::bind(0, true).await.unwrap();
        let port = cb.port();
        let client = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let base = format!("http://127.0.0.1:{port}");
            let r = http
                .get(format!("{base}/favicon.ico"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404);
            let r = http
                .get(format!("{base}/oauth/callback?code=x&state=wrong"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
            let r = http
                .get(format!("{base}/oauth/callback?code=c%20d&state=s1"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        });
        let params = cb.wait("s1", Duration::from_secs(10)).await.unwrap();
        assert!(params.contains(&("code".to_owned(), "c d".to_owned())));
        client.await.unwrap();
    }
}
