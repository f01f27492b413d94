#![no_main]
//! The SSE decoding of the client half: `mcp_transport::client::events`,
//! which both shim transports read their streams with (the Streamable HTTP
//! answers and GET stream, and the legacy HTTP+SSE stream of
//! `hangar-connect/src/sse.rs`), and `Cursor::accept` (ids, `retry`, the
//! JSON-RPC message of each event).
//!
//! The body is fed as a network would deliver it: cut into chunks anywhere,
//! including inside a UTF-8 character, a byte order mark or between CR and
//! LF. Properties:
//! * no panic, whatever the server sends;
//! * chunking does not change what is decoded (the events and whether the
//!   stream fails);
//! * the client's per-event bound holds: an event it delivers is no larger
//!   than its limit plus one network chunk, and only the bound cuts the
//!   stream short;
//! * `Cursor::accept` takes an event's id and retry and parses exactly the
//!   `message` events.

use std::time::Duration;

use arbitrary::Arbitrary;
use eventsource_stream::Event;
use futures::executor::block_on;
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use mcp_transport::client::{self, ClientError, Cursor};
use mcp_transport::Message;

#[derive(Arbitrary, Debug)]
struct Input {
    limit: u16,
    cuts: Vec<u16>,
    body: Vec<u8>,
}

type Ev = (String, String, String, Option<Duration>);

fn ev(e: &Event) -> Ev {
    (e.event.clone(), e.data.clone(), e.id.clone(), e.retry)
}

fn byte_stream(
    chunks: &[&[u8]],
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    let owned: Vec<_> = chunks
        .iter()
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(owned)
}

/// What the client half makes of a response with this body.
fn client_events(chunks: &[&[u8]], limit: usize) -> (Vec<Event>, Option<ClientError>) {
    let body = reqwest::Body::wrap_stream(byte_stream(chunks));
    let resp = reqwest::Response::from(http::Response::new(body));
    block_on(async {
        let mut stream = client::events(resp, limit);
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(e) => out.push(e),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    })
}

fuzz_target!(|input: Input| {
    let chunks = hangar_fuzz::chunks(&input.body, &input.cuts);
    let unbounded = |chunks: &[&[u8]]| {
        let (events, error) = client_events(chunks, usize::MAX);
        (events.iter().map(ev).collect::<Vec<_>>(), error.is_some())
    };
    let whole = unbounded(&[&input.body]);
    let split = unbounded(&chunks);
    assert_eq!(whole, split, "chunking changed the events: {chunks:?}");

    let limit = input.limit as usize;
    let largest = chunks.iter().map(|c| c.len()).max().unwrap_or(0);
    let (events, error) = client_events(&chunks, limit);
    let got: Vec<Ev> = events.iter().map(ev).collect();
    assert!(
        split.0.starts_with(&got),
        "the bound changed the events it let through"
    );
    for e in &events {
        let size = e.data.len() + e.event.len() + e.id.len();
        assert!(
            size <= limit + largest,
            "an event of {size} bytes passed a {limit}-byte bound"
        );
    }
    match &error {
        Some(ClientError::TooLarge { .. }) => {}
        Some(_) => assert!(split.1 && got == split.0, "a failure only the bound saw"),
        None => assert_eq!((&got, false), (&split.0, split.1), "the bound lost events"),
    }

    let mut cursor = Cursor::default();
    for e in events {
        let parses = Message::parse(e.data.clone()).is_ok();
        let counts = e.event == "message" && !e.data.trim().is_empty();
        match cursor.accept(e) {
            Ok(Some(_)) => assert!(counts && parses),
            Ok(None) => assert!(!counts),
            Err(_) => assert!(counts && !parses),
        }
    }
});
