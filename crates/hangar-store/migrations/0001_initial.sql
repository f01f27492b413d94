-- Hangar store schema. This one file runs unchanged on SQLite and PostgreSQL:
-- TEXT primary keys generated in Rust, timestamps as BIGINT unix seconds, and
-- booleans as BIGINT 0/1 (sqlx's Any driver cannot decode a SQLite BOOLEAN
-- column as bool, since SQLite hands back an integer).

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    admin         BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

-- Only a SHA-256 hash of each token's secret is stored, never the secret.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked      BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT
);

CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

-- Runtime state of server instances. user_id is NULL for shared instances; it
-- has no foreign key so that the router can record state independently.
CREATE TABLE instances (
    id           TEXT PRIMARY KEY,
    server       TEXT NOT NULL,
    user_id      TEXT,
    state        TEXT NOT NULL,
    pid          BIGINT,
    address      TEXT,
    started_at   BIGINT,
    last_used_at BIGINT
);

-- Audit log of tool calls. id is generated in Rust so that it sorts in
-- insertion order (zero-padded sequence), which keeps the schema portable
-- (no AUTOINCREMENT / SERIAL). user_id has no foreign key: the history
-- outlives the user.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    user_id     TEXT,
    server      TEXT NOT NULL,
    tool        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    duration_ms BIGINT NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);
