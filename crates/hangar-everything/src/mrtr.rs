//! Multi-round-trip requests (2026-07-28, SEP-2322) for the fixtures: the
//! input requests the tools ask for and readers of the answers. Signing the
//! request state and reading a retry are shared ([`mcp_transport::mrtr`]).

use mcp_transport::mrtr;
pub use mcp_transport::mrtr::{input_required, StateSigner};
use serde_json::{json, Map, Value};

use crate::error::RpcError;

/// What a client sent back in a retry, with the fixtures' readers of each answer.
pub struct Retry {
    pub responses: Map<String, Value>,
    pub state: Option<Value>,
}

impl Retry {
    /// Reads and verifies `inputResponses` and `requestState` ([`mrtr::Retry`]).
    pub fn from_params(params: &Value, signer: &StateSigner) -> Result<Retry, RpcError> {
        let r =
            mrtr::Retry::from_params(params, signer).map_err(|e| RpcError::invalid_params(&e.0))?;
        Ok(Retry {
            responses: r.responses,
            state: r.state,
        })
    }

    /// The accepted form content for `key`, `None` if it was not answered.
    pub fn elicited(&self, key: &str) -> Result<Option<Map<String, Value>>, RpcError> {
        let Some(answer) = self.responses.get(key) else {
            return Ok(None);
        };
        let action = answer.get("action").and_then(Value::as_str);
        match (action, answer.get("content")) {
            (Some("accept"), Some(Value::Object(content))) => Ok(Some(content.clone())),
            (Some("accept"), None) => Ok(Some(Map::new())),
            (Some("decline" | "cancel"), _) => Err(RpcError::invalid_params(&format!(
                "the user declined the request for {key}"
            ))),
            _ => Err(RpcError::invalid_params(&format!(
                "inputResponses.{key} is not an elicitation result"
            ))),
        }
    }

    /// The text of a sampling answer for `key`.
    pub fn sampled(&self, key: &str) -> Result<Option<String>, RpcError> {
        let Some(answer) = self.responses.get(key) else {
            return Ok(None);
        };
        answer
            .pointer("/content/text")
            .and_then(Value::as_str)
            .map(|t| Some(t.to_owned()))
            .ok_or_else(|| {
                RpcError::invalid_params(&format!("inputResponses.{key} is not a sampling result"))
            })
    }

    /// The roots of a roots/list answer for `key`.
    pub fn roots(&self, key: &str) -> Result<Option<Vec<Value>>, RpcError> {
        let Some(answer) = self.responses.get(key) else {
            return Ok(None);
        };
        answer
            .get("roots")
            .and_then(Value::as_array)
            .map(|r| Some(r.clone()))
            .ok_or_else(|| {
                RpcError::invalid_params(&format!(
                    "inputResponses.{key} is not a roots/list result"
                ))
            })
    }
}

pub fn elicit(message: &str, properties: Value, required: &[&str]) -> Value {
    json!({"method": "elicitation/create", "params": {
        "mode": "form",
        "message": message,
        "requestedSchema": {"type": "object", "properties": properties, "required": required},
    }})
}

pub fn sample(prompt: &str, max_tokens: u32) -> Value {
    json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
        "maxTokens": max_tokens,
    }})
}

pub fn list_roots() -> Value {
    json!({"method": "roots/list", "params": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_input_responses_are_errors() {
        let s = StateSigner::new([1; 32]);
        assert!(Retry::from_params(&json!({"inputResponses": null}), &s).is_err());
        assert!(Retry::from_params(&json!({"inputResponses": {"user_name": 12345}}), &s).is_err());
        let r = Retry::from_params(&json!({"inputResponses": {"user_name": {}}}), &s).unwrap();
        assert!(r.elicited("user_name").is_err());
        assert!(r.elicited("other").unwrap().is_none());
    }
}
