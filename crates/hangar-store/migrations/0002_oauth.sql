-- The OAuth 2.1 authorization server's state. Secrets (client secrets,
-- authorization codes, refresh tokens, browser session ids) are stored only
-- as SHA-256 hashes of 256-bit random values.

-- Set for users who signed in through an upstream OpenID Connect provider
-- (and optionally for built-in users): used to match accounts by email.
ALTER TABLE users ADD COLUMN email TEXT;

-- Clients registered with Dynamic Client Registration (kind 'dcr') or by the
-- admin CLI (kind 'static'). Clients identified by a Client ID Metadata
-- Document URL are not stored: their document is fetched and cached.
CREATE TABLE oauth_clients (
    id                         TEXT PRIMARY KEY,
    kind                       TEXT NOT NULL,
    name                       TEXT,
    secret_hash                TEXT,
    redirect_uris              TEXT NOT NULL,  -- JSON array
    token_endpoint_auth_method TEXT NOT NULL,
    application_type           TEXT NOT NULL,
    metadata                   TEXT NOT NULL,  -- the registration as registered (JSON)
    created_at                 BIGINT NOT NULL
);

-- What a user approved for a client: one resource (MCP server) and scopes.
-- Every refresh token and access token belongs to one grant; revoking the
-- grant ends them all.
CREATE TABLE oauth_grants (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id    TEXT NOT NULL,
    client_name  TEXT,
    resource     TEXT NOT NULL,
    scope        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked      BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX oauth_grants_user_id ON oauth_grants (user_id);

-- Authorization codes: one use, a minute of life. grant_id is set once the
-- code has been exchanged, so that a replay can revoke what it produced.
CREATE TABLE oauth_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    resource       TEXT NOT NULL,
    scope          TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    expires_at     BIGINT NOT NULL,
    used           BIGINT NOT NULL DEFAULT 0,
    grant_id       TEXT
);

-- Refresh tokens, rotated on every use: a used one presented again means it
-- was stolen, and the whole grant is revoked.
CREATE TABLE oauth_refresh_tokens (
    id          TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used        BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX oauth_refresh_tokens_grant_id ON oauth_refresh_tokens (grant_id);

-- Signed-in browsers (the sign-in, consent and account pages).
CREATE TABLE browser_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Accounts at upstream OpenID Connect providers, linked to Hangar users.
CREATE TABLE external_identities (
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
