//! Hangar's authorization: the router is both the OAuth 2.1 authorization
//! server and the protected resource for every MCP server it serves.
//!
//! - [`resource`]: the resource-server check (API tokens and access tokens,
//!   audience and scope), the seam the router calls on every request.
//! - [`keys`], [`tokens`]: signing keys (rotatable) and the access tokens.
//! - [`clients`]: who may ask for tokens (pre-registered, DCR, CIMD).
//! - [`server`]: the endpoints (metadata, authorize, token, register,
//!   revoke, JWKS) and the sign-in, consent and account pages.
//! - [`netguard`], [`cimd`]: fetching client documents without SSRF.
//! - [`upstream`]: sign-in through an upstream OpenID Connect provider.
//! - [`passwords`]: argon2id, a bounded number of hashes at once.

pub mod cimd;
pub mod clients;
pub mod keys;
pub mod netguard;
pub mod pages;
pub mod passwords;
pub mod ratelimit;
pub mod resource;
pub mod server;
pub mod tokens;
pub mod upstream;
pub mod web;

pub use resource::{Authenticator, BearerCheck, Principal};
pub use server::{AuthServer, AuthSettings, Resource};
