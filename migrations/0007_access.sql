-- Tokens, ownership, pinning.
--
-- A token is `tsk_<id>_<secret>`; only the SHA-256 of the secret is kept. Resources belong to
-- the token's `owner` (its own id unless several tokens were made to share one). A resource
-- with no owner was made while the service had no tokens: once tokens exist, only `admin`
-- tokens see it.
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    scopes        TEXT NOT NULL,              -- comma-separated: admin, train, predict, read
    secret_sha256 TEXT NOT NULL,
    quotas        TEXT NOT NULL DEFAULT '{}', -- JSON: this token's overrides of the service's quotas
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);

ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;  -- kept by the age retention
ALTER TABLE sweeps ADD COLUMN owner TEXT;
ALTER TABLE datasets ADD COLUMN owner TEXT;
ALTER TABLE datasets ADD COLUMN public INTEGER NOT NULL DEFAULT 0;  -- visible to every token
ALTER TABLE weights ADD COLUMN owner TEXT;
UPDATE datasets SET public = 1 WHERE source = 'builtin';
CREATE INDEX jobs_owner ON jobs (owner, status);
