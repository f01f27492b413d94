//! `Mcp-Param-*` headers (2026-07-28, SEP-2243): a tool's input schema may
//! mark a parameter with `x-mcp-header: Name`; a modern client then mirrors
//! that argument of every `tools/call` into the header `Mcp-Param-Name`, so
//! gateways can route on it without reading the body. A host on stdio has
//! no headers to set, so the shim does it (for the requests the era bridge
//! sends).
//!
//! * From each `tools/list` result the annotations are read and checked: a
//!   name must be a non-empty RFC 9110 token, unique in the tool without
//!   regard to case, on a `string`, `integer` or `boolean` parameter reached
//!   through `properties` only. A tool with an invalid annotation is dropped
//!   from the list the host sees (the client MUST NOT call it), with a warning.
//! * On `tools/call`, each annotated argument that is present and not null
//!   becomes its header: strings as they are, or `=?base64?…?=` when not
//!   header-safe; numbers and booleans in their JSON form.

use std::collections::HashMap;
use std::sync::Mutex;

use http::{HeaderName, HeaderValue};
use mcp_transport::era;
use mcp_transport::Message;
use serde_json::Value;

/// One annotated parameter: where its argument is and the header it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Param {
    header: HeaderName,
    path: Vec<String>,
}

/// What the listed tools ask to have mirrored, by tool name.
#[derive(Default)]
pub struct ToolHeaders {
    tools: Mutex<HashMap<String, Vec<Param>>>,
}

/// Most nesting we follow into `properties`.
const MAX_DEPTH: usize = 8;

impl ToolHeaders {
    /// Learns the annotations of a `tools/list` answer and returns it
    /// without the tools whose annotations are invalid.
    pub fn learn(&self, answer: Message) -> Message {
        if !answer.as_str().contains("x-mcp-header") {
            return answer;
        }
        let mut v = answer.to_value();
        let Some(tools) = v.pointer_mut("/result/tools").and_then(Value::as_array_mut) else {
            return answer;
        };
        let mut learned = Vec::new();
        let before = tools.len();
        tools.retain(|tool| {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            match annotations(tool.get("inputSchema").unwrap_or(&Value::Null)) {
                Ok(params) => {
                    if !params.is_empty() {
                        learned.push((name.to_owned(), params));
                    }
                    true
                }
                Err(why) => {
                    tracing::warn!("tool {name:?} has an invalid x-mcp-header ({why}); not offered to the client");
                    false
                }
            }
        });
        let dropped = before != tools.len();
        {
            let mut known = self.tools.lock().unwrap_or_else(|p| p.into_inner());
            known.extend(learned);
        }
        if dropped {
            Message::from_value(&v)
        } else {
            answer
        }
    }

    /// The `Mcp-Param-*` headers of a `tools/call` request.
    pub fn headers(&self, request: &Message) -> Vec<(HeaderName, HeaderValue)> {
        if request.method() != Some("tools/call") {
            return Vec::new();
        }
        let Some(params) = request.params() else {
            return Vec::new();
        };
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Vec::new();
        };
        let known = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        let Some(wanted) = known.get(name) else {
            return Vec::new();
        };
        let arguments = params.get("arguments").unwrap_or(&Value::Null);
        wanted
            .iter()
            .filter_map(|p| {
                let mut value = arguments;
                for key in &p.path {
                    value = value.get(key)?;
                }
                let text = match value {
                    Value::String(s) => era::encode_header_value(s),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                HeaderValue::from_str(&text)
                    .ok()
                    .map(|v| (p.header.clone(), v))
            })
            .collect()
    }
}

/// The annotated parameters of an input schema, or why they are invalid.
fn annotations(schema: &Value) -> Result<Vec<Param>, String> {
    let mut out = Vec::new();
    walk(schema, &mut Vec::new(), &mut out, 0)?;
    let mut seen = std::collections::HashSet::new();
    for p in &out {
        if !seen.insert(p.header.as_str().to_owned()) {
            return Err(format!("{} is used twice", p.header));
        }
    }
    Ok(out)
}

fn walk(
    schema: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<Param>,
    depth: usize,
) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    for (key, prop) in props {
        path.push(key.clone());
        if let Some(annotation) = prop.get("x-mcp-header") {
            let name = annotation
                .as_str()
                .ok_or_else(|| format!("on {key:?} it is not a string"))?;
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(format!("{name:?} on {key:?} is not a header token"));
            }
            if !primitive(prop) {
                return Err(format!(
                    "{name:?} is on {key:?}, which is not a string, integer or boolean"
                ));
            }
            let header = HeaderName::from_bytes(format!("mcp-param-{name}").as_bytes())
                .map_err(|_| format!("{name:?} on {key:?} is not a header token"))?;
            out.push(Param {
                header,
                path: path.clone(),
            });
        }
        walk(prop, path, out, depth + 1)?;
        path.pop();
    }
    Ok(())
}

/// `type` is `string`, `integer` or `boolean` (alone, or with `null`).
fn primitive(prop: &Value) -> bool {
    let ok = |t: &str| matches!(t, "string" | "integer" | "boolean");
    match prop.get("type") {
        Some(Value::String(t)) => ok(t),
        Some(Value::Array(types)) => {
            let named: Vec<&str> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            named.len() == 1 && named.len() + 1 >= types.len() && ok(named[0])
        }
        _ => false,
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(tools: Value) -> Message {
        Message::from_value(&json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}))
    }

    #[test]
    fn invalid_annotations_drop_the_tool_and_valid_ones_are_mirrored() {
        let h = ToolHeaders::default();
        let tool = |name: &str, props: Value| json!({"name": name, "inputSchema": {"type": "object", "properties": props}});
        let answer = h.learn(list(json!([
            tool("ok", json!({
                "region": {"type": "string", "x-mcp-header": "Region"},
                "n": {"type": "integer", "x-mcp-header": "Priority"},
                "flag": {"type": ["boolean", "null"], "x-mcp-header": "Verbose"},
                "deep": {"type": "object", "properties": {"id": {"type": "string", "x-mcp-header": "Tenant"}}},
                "plain": {"type": "number"},
            })),
            tool("empty", json!({"v": {"type": "string", "x-mcp-header": ""}})),
            tool("object", json!({"v": {"type": "object", "x-mcp-header": "Data"}})),
            tool("number", json!({"v": {"type": "number", "x-mcp-header": "Score"}})),
            tool("space", json!({"v": {"type": "string", "x-mcp-header": "My Region"}})),
            tool("colon", json!({"v": {"type": "string", "x-mcp-header": "A:B"}})),
            tool("accent", json!({"v": {"type": "string", "x-mcp-header": "Région"}})),
            tool("dup", json!({"a": {"type": "string", "x-mcp-header": "MyField"}, "b": {"type": "string", "x-mcp-header": "myfield"}})),
            tool("none", json!({"q": {"type": "string"}})),
        ])));
        let names: Vec<String> = answer.to_value()["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["ok", "none"]);

        let call = Message::from_value(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "ok", "arguments": {"region": " eu west", "n": 7, "flag": null, "deep": {"id": "acme"}, "plain": 1.5}}}),
        );
        let headers: HashMap<String, String> = h
            .headers(&call)
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(headers.len(), 3, "{headers:?}");
        assert_eq!(
            era::decode_header_value(&headers["mcp-param-region"]).as_deref(),
            Some(" eu west")
        );
        assert!(headers["mcp-param-region"].starts_with("=?base64?"));
        assert_eq!(headers["mcp-param-priority"], "7");
        assert_eq!(headers["mcp-param-tenant"], "acme");
        assert!(
            !headers.contains_key("mcp-param-verbose"),
            "null is omitted"
        );
    }

    #[test]
    fn answers_without_annotations_pass_untouched() {
        let h = ToolHeaders::default();
        let answer = list(json!([{"name": "a", "inputSchema": {"type": "object"}}]));
        assert_eq!(h.learn(answer.clone()).as_str(), answer.as_str());
    }
}
