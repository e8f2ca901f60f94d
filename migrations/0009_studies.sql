-- A study answers training questions on a data set with ordinary sweeps. Its plan (the parts,
-- each a sweep spec) is fixed when it is created; a part whose sweep does not exist yet (a
-- transfer study's main part waits for its source model) is created once its prerequisite is
-- done.
CREATE TABLE studies (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    dataset      TEXT NOT NULL,
    budget       TEXT NOT NULL,
    request      TEXT NOT NULL,   -- JSON: the request as accepted, defaults filled in
    plan         TEXT NOT NULL,   -- JSON: the parts, in report order
    owner        TEXT,
    cancelled    INTEGER NOT NULL DEFAULT 0,
    failure      TEXT,            -- why a part could not be created
    created_at   TEXT NOT NULL
);
CREATE INDEX studies_owner ON studies (owner, created_at);

-- Which sweep each created part is. A part's row is written in the transaction that creates
-- its sweep, and the primary key makes that happen once, whichever node tries. The row stays
-- when the sweep is deleted on its own, so a deleted part is never silently re-created.
CREATE TABLE study_parts (
    study_id   TEXT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    part       TEXT NOT NULL,
    sweep_id   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (study_id, part)
);
