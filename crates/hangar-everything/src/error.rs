//! JSON-RPC errors a handler can return.

use mcp_transport::codes;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn invalid_params(message: &str) -> RpcError {
        RpcError::new(codes::INVALID_PARAMS, format!("Invalid params: {message}"))
    }

    pub fn method_not_found(method: &str) -> RpcError {
        RpcError::new(
            codes::METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )
    }

    pub fn missing_capability(capability: &str) -> RpcError {
        RpcError {
            code: codes::MISSING_CLIENT_CAPABILITY,
            message: format!("This request needs the client capability \"{capability}\""),
            data: Some(json!({ "requiredCapabilities": { capability: {} } })),
        }
    }

    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }
}
