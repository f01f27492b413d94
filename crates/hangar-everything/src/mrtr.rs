//! Multi-round-trip requests (2026-07-28, SEP-2322): instead of sending the
//! client a request, a tool returns an `InputRequiredResult` naming what it
//! needs; the client retries with `inputResponses` and the `requestState` we
//! gave it. The state comes back from the client, so it is signed (HMAC) and
//! anything tampered with is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::error::RpcError;

/// Signs and verifies request states with a key that lives as long as the process.
pub struct StateSigner {
    key: [u8; 32],
}

impl StateSigner {
    pub fn new(key: [u8; 32]) -> StateSigner {
        StateSigner { key }
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        // A 32-byte key is always a valid HMAC key.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }

    /// `base64(payload).base64(hmac)`.
    pub fn sign(&self, state: &Value) -> String {
        let payload = state.to_string();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()))
        )
    }

    pub fn verify(&self, token: &str) -> Result<Value, RpcError> {
        let tampered = || RpcError::invalid_params("requestState integrity check failed");
        let (payload, sig) = token.split_once('.').ok_or_else(tampered)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| tampered())?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| tampered())?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).map_err(|_| tampered())?;
        mac.update(&payload);
        mac.verify_slice(&sig).map_err(|_| tampered())?;
        serde_json::from_slice(&payload).map_err(|_| tampered())
    }
}

/// What a client sent back in a retry.
pub struct Retry {
    pub responses: Map<String, Value>,
    pub state: Option<Value>,
}

impl Retry {
    /// Reads `inputResponses` and `requestState` from a request's params,
    /// verifying the state. A malformed `inputResponses` is an error, not an
    /// empty answer.
    pub fn from_params(params: &Value, signer: &StateSigner) -> Result<Retry, RpcError> {
        let responses = match params.get("inputResponses") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(RpcError::invalid_params("inputResponses must be an object")),
        };
        let state = match params.get("requestState") {
            None => None,
            Some(Value::String(s)) => Some(signer.verify(s)?),
            Some(_) => return Err(RpcError::invalid_params("requestState must be a string")),
        };
        Ok(Retry { responses, state })
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

/// An `InputRequiredResult`.
pub fn input_required(requests: Map<String, Value>, state: Option<String>) -> Value {
    let mut result = json!({"resultType": "input_required", "inputRequests": requests});
    if let Some(state) = state {
        result["requestState"] = Value::String(state);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_state_round_trips_and_tampering_is_refused() {
        let s = StateSigner::new([7; 32]);
        let token = s.sign(&json!({"round": 1}));
        assert_eq!(s.verify(&token).unwrap(), json!({"round": 1}));
        assert!(s.verify(&format!("{token}-TAMPERED")).is_err());
        let other = StateSigner::new([8; 32]);
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn malformed_input_responses_are_errors() {
        let s = StateSigner::new([1; 32]);
        assert!(Retry::from_params(&json!({"inputResponses": null}), &s).is_err());
        let r = Retry::from_params(&json!({"inputResponses": {"user_name": 12345}}), &s).unwrap();
        assert!(r.elicited("user_name").is_err());
        assert!(r.elicited("other").unwrap().is_none());
    }
}
