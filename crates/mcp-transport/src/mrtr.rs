//! Multi-round-trip requests (2026-07-28, SEP-2322), the parts every server
//! half shares: instead of sending the client a request, a server answers
//! with an `InputRequiredResult` naming what it needs; the client retries
//! with `inputResponses` and the `requestState` it was given. The state comes
//! back from the client, so it is signed (HMAC-SHA256) and anything tampered
//! with is refused.
//!
//! `hangar-everything` keeps its conversation in the state itself;
//! `hangar wrap` keeps a legacy child's request waiting and names it there.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// The methods a server may answer with an `InputRequiredResult` (the
/// conformance suite checks that no other request gets one).
pub const METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// A retry the server cannot accept: the text of a -32602 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    fn new(why: &str) -> Invalid {
        Invalid(why.to_owned())
    }
}

/// Signs and verifies request states with a key that lives as long as the process.
pub struct StateSigner {
    key: [u8; 32],
}

impl StateSigner {
    pub fn new(key: [u8; 32]) -> StateSigner {
        StateSigner { key }
    }

    /// A signer with a fresh random key: states it issued die with the process.
    pub fn random() -> StateSigner {
        StateSigner::new(rand::random())
    }

    fn hmac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// `base64(payload).base64(hmac)`.
    pub fn sign(&self, state: &Value) -> String {
        let payload = state.to_string();
        let mut mac = self.hmac();
        mac.update(payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    pub fn verify(&self, token: &str) -> Result<Value, Invalid> {
        let tampered = || Invalid::new("requestState integrity check failed");
        let (payload, sig) = token.split_once('.').ok_or_else(tampered)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| tampered())?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| tampered())?;
        let mut mac = self.hmac();
        mac.update(&payload);
        mac.verify_slice(&sig).map_err(|_| tampered())?;
        serde_json::from_slice(&payload).map_err(|_| tampered())
    }
}

/// What a client sent back in a retry.
pub struct Retry {
    pub responses: Map<String, Value>,
    /// The verified state, if the request carried one.
    pub state: Option<Value>,
}

impl Retry {
    /// Reads `inputResponses` and `requestState` from a request's params,
    /// verifying the state. A malformed `inputResponses` is an error, not an
    /// empty answer.
    pub fn from_params(params: &Value, signer: &StateSigner) -> Result<Retry, Invalid> {
        let responses = match params.get("inputResponses") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(Invalid::new("inputResponses must be an object")),
        };
        // Each answer is the result of an input request, and results are objects.
        if let Some((key, _)) = responses.iter().find(|(_, v)| !v.is_object()) {
            return Err(Invalid(format!(
                "inputResponses.{key} must be an object (the result of the input request)"
            )));
        }
        let state = match params.get("requestState") {
            None => None,
            Some(Value::String(s)) => Some(signer.verify(s)?),
            Some(_) => return Err(Invalid::new("requestState must be a string")),
        };
        Ok(Retry { responses, state })
    }
}

/// An `InputRequiredResult`.
pub fn input_required(requests: Map<String, Value>, state: Option<String>) -> Value {
    let mut result = json!({"resultType": "input_required", "inputRequests": requests});
    if let Some(state) = state {
        result["requestState"] = Value::String(state);
    }
    result
}

/// The client capability an input request needs, as a `ClientCapabilities`
/// object (what -32021's `data.requiredCapabilities` names), or `None` for a
/// method that is not an input request.
pub fn required_capability(method: &str, params: &Value) -> Option<Value> {
    match method {
        "sampling/createMessage" if params.get("tools").is_some() => {
            Some(json!({"sampling": {"tools": {}}}))
        }
        "sampling/createMessage" => Some(json!({"sampling": {}})),
        "elicitation/create" => match params.get("mode").and_then(Value::as_str) {
            Some("url") => Some(json!({"elicitation": {"url": {}}})),
            _ => Some(json!({"elicitation": {"form": {}}})),
        },
        "roots/list" => Some(json!({"roots": {}})),
        _ => None,
    }
}

/// Whether the declared client capabilities cover `required` (from
/// [`required_capability`]). An empty `elicitation` object means form mode
/// (the spec's rule for clients from before modes existed).
pub fn covers(declared: &Value, required: &Value) -> bool {
    let Some(required) = required.as_object() else {
        return true;
    };
    required.iter().all(|(name, sub)| {
        let Some(have) = declared.get(name).and_then(Value::as_object) else {
            return false;
        };
        let Some(sub) = sub.as_object() else {
            return true;
        };
        sub.keys().all(|k| {
            have.contains_key(k) || (name == "elicitation" && k == "form" && have.is_empty())
        })
    })
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
    fn malformed_retries_are_errors() {
        let s = StateSigner::new([1; 32]);
        assert!(Retry::from_params(&json!({"inputResponses": null}), &s).is_err());
        assert!(Retry::from_params(&json!({"requestState": 5}), &s).is_err());
        assert!(Retry::from_params(&json!({"inputResponses": {"a": 12345}}), &s).is_err());
        let r = Retry::from_params(&json!({"inputResponses": {"a": {}}}), &s).unwrap();
        assert!(r.responses.contains_key("a") && r.state.is_none());
    }

    #[test]
    fn capabilities_are_checked_per_mode() {
        let form = required_capability("elicitation/create", &json!({"message": "?"})).unwrap();
        let url = required_capability("elicitation/create", &json!({"mode": "url"})).unwrap();
        assert!(covers(&json!({"elicitation": {}}), &form));
        assert!(!covers(&json!({"elicitation": {}}), &url));
        assert!(covers(&json!({"elicitation": {"url": {}}}), &url));
        let sampling = required_capability("sampling/createMessage", &json!({})).unwrap();
        assert!(!covers(&json!({"roots": {}}), &sampling));
        assert!(covers(&json!({"sampling": {}}), &sampling));
        assert_eq!(required_capability("ping", &json!({})), None);
    }
}
