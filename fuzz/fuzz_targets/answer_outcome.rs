#![no_main]
//! The router's reading of a tool call's outcome from its answer as it
//! streams (`hangar_router::proxy::outcome`), JSON and SSE. Properties:
//! * no panic, whatever the instance answers;
//! * how the answer is cut into chunks does not change the outcome;
//! * on any JSON value (written out as serde_json writes it, so with no
//!   repeated keys), the outcome is what a full parse says: `error` that is
//!   not null → error, else `result.isError` true → tool_error, else ok; and
//!   the same value as the data of an SSE event gives the same outcome.

use arbitrary::Arbitrary;
use hangar_router::proxy::outcome::{AnswerReader, Outcome};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input {
    sse: bool,
    cuts: Vec<u16>,
    body: Vec<u8>,
}

fn read(sse: bool, chunks: &[&[u8]]) -> Outcome {
    let mut reader = if sse {
        AnswerReader::sse()
    } else {
        AnswerReader::json()
    };
    for chunk in chunks {
        reader.feed(chunk);
    }
    reader.finish()
}

fn chunks<'a>(body: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| c as usize % (body.len() + 1))
        .collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for p in points {
        out.push(&body[from..p]);
        from = p;
    }
    out.push(&body[from..]);
    out
}

/// What a full parse of the answer says.
fn reference(value: &Value) -> Outcome {
    let Some(top) = value.as_object() else {
        return Outcome::Ok;
    };
    if top.contains_key("method") {
        return Outcome::Ok; // a request or notification, not an answer
    }
    if top.get("error").is_some_and(|e| !e.is_null()) {
        return Outcome::Error;
    }
    if top
        .get("result")
        .and_then(|r| r.get("isError"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Outcome::ToolError;
    }
    Outcome::Ok
}

fuzz_target!(|input: Input| {
    let whole = read(input.sse, &[&input.body]);
    let cut = read(input.sse, &chunks(&input.body, &input.cuts));
    assert_eq!(whole, cut, "chunking changed the outcome");

    if let Ok(value) = serde_json::from_slice::<Value>(&input.body) {
        let canonical = serde_json::to_vec(&value).unwrap();
        let want = reference(&value);
        assert_eq!(read(false, &[&canonical]), want, "JSON {value}");
        if value.is_object() && value.get("method").is_none() && want != Outcome::Ok
            || value.get("result").is_some() && value.get("method").is_none()
        {
            let mut event = b"id: 1_1\ndata: ".to_vec();
            event.extend_from_slice(&canonical);
            event.extend_from_slice(b"\n\n");
            assert_eq!(
                read(true, &chunks(&event, &input.cuts)),
                want,
                "SSE {value}"
            );
        }
    }
});
