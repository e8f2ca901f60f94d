-- The model registry: named models with immutable, numbered versions and movable aliases.
--
-- A version owns a copy of its weights (`path`, a safetensors file of the network's tensors
-- under the data folder), so deleting the job or the upload it came from never changes it.
-- Version numbers are never reused: `next_version` only grows.
CREATE TABLE model_names (
    name         TEXT PRIMARY KEY,
    owner        TEXT,
    next_version INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL
);

CREATE TABLE model_versions (
    name             TEXT NOT NULL REFERENCES model_names (name),
    version          INTEGER NOT NULL,
    source           TEXT NOT NULL,  -- 'job' or 'import'
    job_id           TEXT,           -- for 'job': the job and the epoch of its checkpoint
    checkpoint_epoch INTEGER,
    weights_id       TEXT,           -- for 'import': the upload the weights were copied from
    model_spec       TEXT NOT NULL,  -- JSON: the job spec's `model`
    preprocessing    TEXT NOT NULL,  -- JSON: how a raw row or image becomes the network's input
    description      TEXT NOT NULL DEFAULT '',
    serving          TEXT NOT NULL DEFAULT '{}',  -- JSON: how its requests are batched
    path             TEXT NOT NULL,
    bytes            INTEGER NOT NULL,
    sha256           TEXT NOT NULL,
    parameters       INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE model_aliases (
    name       TEXT NOT NULL,
    alias      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
);
