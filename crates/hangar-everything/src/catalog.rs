//! What `hangar-everything` offers: tool, resource and prompt definitions,
//! and the fixed content the conformance suite expects from them.

use serde_json::{json, Value};

/// A 1×1 PNG.
pub const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A tiny (one-sample) WAV file.
pub const WAV_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": { "type": "object", "properties": properties, "required": required },
    })
}

fn no_args(name: &str, description: &str) -> Value {
    tool(name, description, json!({}), &[])
}

/// Tools as listed by `tools/list`, in a stable order. Hidden hooks
/// (`test_trigger_*`) are callable but not listed, so triggering a change does
/// not itself change the list.
pub fn tools() -> Vec<Value> {
    vec![
        no_args("test_simple_text", "Returns simple text content"),
        no_args("test_image_content", "Returns image content"),
        no_args("test_audio_content", "Returns audio content"),
        no_args("test_embedded_resource", "Returns an embedded resource"),
        no_args(
            "test_multiple_content_types",
            "Returns text, image and resource content",
        ),
        no_args(
            "test_tool_with_logging",
            "Sends three log messages while it runs",
        ),
        no_args(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100",
        ),
        no_args("test_error_handling", "Always fails with a tool error"),
        tool(
            "test_sampling",
            "Asks the client's model to answer a prompt",
            json!({"prompt": {"type": "string"}}),
            &["prompt"],
        ),
        tool(
            "test_elicitation",
            "Asks the user for information",
            json!({"message": {"type": "string"}}),
            &["message"],
        ),
        no_args(
            "test_elicitation_sep1034_defaults",
            "Asks the user with a form whose fields have defaults",
        ),
        no_args(
            "test_elicitation_sep1330_enums",
            "Asks the user with every kind of enum field",
        ),
        no_args(
            "test_reconnection",
            "Closes its SSE stream mid-call; the client must resume it",
        ),
        no_args("test_missing_capability", "Needs the sampling capability"),
        no_args(
            "test_streaming_elicitation",
            "Asks for input through an input-required result",
        ),
        no_args(
            "test_logging_tool",
            "Logs when the request asks for a log level",
        ),
        no_args(
            "test_input_required_result_elicitation",
            "Asks the user's name (MRTR)",
        ),
        no_args(
            "test_input_required_result_sampling",
            "Asks the client's model a question (MRTR)",
        ),
        no_args(
            "test_input_required_result_list_roots",
            "Asks for the client's roots (MRTR)",
        ),
        no_args(
            "test_input_required_result_request_state",
            "Carries state across an input round (MRTR)",
        ),
        no_args(
            "test_input_required_result_multiple_inputs",
            "Asks for three inputs at once (MRTR)",
        ),
        no_args(
            "test_input_required_result_multi_round",
            "Asks in two rounds (MRTR)",
        ),
        no_args(
            "test_input_required_result_tampered_state",
            "Refuses a tampered request state (MRTR)",
        ),
        no_args(
            "test_input_required_result_capabilities",
            "Asks only for what the client can give (MRTR)",
        ),
        json!({"name": "json_schema_2020_12_tool",
            "description": "Takes input described with JSON Schema 2020-12 features",
            "inputSchema": json_schema_2020_12()}),
        // Demo tools come after the fixtures: generic probes call the first
        // listed tool with no arguments, and these need some.
        tool(
            "echo",
            "Echoes the message back",
            json!({"message": {"type": "string", "description": "Text to echo"}}),
            &["message"],
        ),
        tool(
            "add",
            "Adds two numbers",
            json!({"a": {"type": "number"}, "b": {"type": "number"}}),
            &["a", "b"],
        ),
        no_args(
            "whoami",
            "Shows the identity and instance Hangar passed to this server",
        ),
        tool(
            "sleep",
            "Waits for the given number of milliseconds",
            json!({"ms": {"type": "integer", "minimum": 0}}),
            &["ms"],
        ),
    ]
}

/// An input schema using 2020-12 keywords; it must be listed verbatim.
fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"$anchor": "addressDef", "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": false,
    })
}

pub fn resources() -> Vec<Value> {
    vec![
        json!({"uri": "test://static-text", "name": "static-text", "title": "Static text", "description": "A static text resource", "mimeType": "text/plain"}),
        json!({"uri": "test://static-binary", "name": "static-binary", "title": "Static binary", "description": "A static PNG resource", "mimeType": "image/png"}),
        json!({"uri": "test://watched-resource", "name": "watched-resource", "title": "Watched resource", "description": "A resource that can be subscribed to", "mimeType": "text/plain"}),
    ]
}

pub fn resource_templates() -> Vec<Value> {
    vec![json!({
        "uriTemplate": "test://template/{id}/data",
        "name": "template",
        "title": "Template",
        "description": "Data for an id",
        "mimeType": "application/json",
    })]
}

/// The contents of `uri`, or `None` when there is no such resource.
pub fn read_resource(uri: &str) -> Option<Value> {
    let contents = match uri {
        "test://static-text" => {
            json!({"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."})
        }
        "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG_BASE64}),
        "test://watched-resource" => {
            json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content"})
        }
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            let data =
                json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            json!({"uri": uri, "mimeType": "application/json", "text": data.to_string()})
        }
    };
    Some(contents)
}

pub fn prompts() -> Vec<Value> {
    vec![
        json!({"name": "test_simple_prompt", "description": "A simple prompt without arguments"}),
        json!({"name": "test_prompt_with_arguments", "description": "A prompt with two required arguments", "arguments": [
            {"name": "arg1", "description": "First argument", "required": true},
            {"name": "arg2", "description": "Second argument", "required": true},
        ]}),
        json!({"name": "test_prompt_with_embedded_resource", "description": "A prompt that embeds a resource", "arguments": [
            {"name": "resourceUri", "description": "URI of the resource to embed", "required": true},
        ]}),
        json!({"name": "test_prompt_with_image", "description": "A prompt that includes an image"}),
        json!({"name": "test_input_required_result_prompt", "description": "A prompt that asks for context first (MRTR)"}),
    ]
}

fn user_text(text: &str) -> Value {
    json!({"role": "user", "content": {"type": "text", "text": text}})
}

/// The messages of a prompt that needs no client input, or `None` if unknown.
pub fn prompt_messages(name: &str, args: &Value) -> Option<Result<Vec<Value>, String>> {
    let arg = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_owned);
    let messages = match name {
        "test_simple_prompt" => vec![user_text("This is a simple prompt for testing.")],
        "test_prompt_with_arguments" => {
            let (Some(a1), Some(a2)) = (arg("arg1"), arg("arg2")) else {
                return Some(Err("arguments arg1 and arg2 are required".into()));
            };
            vec![user_text(&format!(
                "Prompt with arguments: arg1='{a1}', arg2='{a2}'"
            ))]
        }
        "test_prompt_with_embedded_resource" => {
            let Some(uri) = arg("resourceUri") else {
                return Some(Err("argument resourceUri is required".into()));
            };
            vec![
                json!({"role": "user", "content": {"type": "resource", "resource": {
                    "uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."}}}),
                user_text("Please process the embedded resource above."),
            ]
        }
        "test_prompt_with_image" => vec![
            json!({"role": "user", "content": {"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}}),
            user_text("Please analyze the image above."),
        ],
        _ => return None,
    };
    Some(Ok(messages))
}

pub fn text(t: impl Into<String>) -> Value {
    json!({"type": "text", "text": t.into()})
}

pub fn tool_result(content: Vec<Value>) -> Value {
    json!({ "content": content })
}

pub fn tool_error(message: impl Into<String>) -> Value {
    json!({ "content": [text(message)], "isError": true })
}

/// Results of tools that need nothing but their arguments.
pub fn simple_tool(name: &str) -> Option<Value> {
    let result = match name {
        "test_simple_text" => {
            tool_result(vec![text("This is a simple text response for testing.")])
        }
        "test_image_content" => tool_result(vec![
            json!({"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}),
        ]),
        "test_audio_content" => tool_result(vec![
            json!({"type": "audio", "data": WAV_BASE64, "mimeType": "audio/wav"}),
        ]),
        "test_embedded_resource" => tool_result(vec![json!({"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource content."}})]),
        "test_multiple_content_types" => tool_result(vec![
            text("Multiple content types test:"),
            json!({"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}),
            json!({"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                "text": json!({"test": "data", "value": 123}).to_string()}}),
        ]),
        "test_error_handling" => tool_error("This tool intentionally returns an error for testing"),
        _ => return None,
    };
    Some(result)
}
