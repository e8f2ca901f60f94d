-- A sweep is a base spec plus axes; each trial is an ordinary job linked back to it.
CREATE TABLE sweeps (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    spec           TEXT NOT NULL,            -- JSON: base, axes, search, repeats, metric, goal
    max_concurrent INTEGER NOT NULL,
    created_at     TEXT NOT NULL
);

-- One row per trial (a point in the search space and a repeat); job_id is its current job,
-- replaced when a resume re-runs a failed or cancelled trial.
CREATE TABLE trials (
    sweep_id    TEXT NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
    trial_index INTEGER NOT NULL,
    params      TEXT NOT NULL,               -- JSON object: dotted path -> value
    repeat      INTEGER NOT NULL,
    job_id      TEXT NOT NULL REFERENCES jobs(id),
    PRIMARY KEY (sweep_id, trial_index)
);

ALTER TABLE jobs ADD COLUMN sweep_id TEXT REFERENCES sweeps(id);
CREATE INDEX jobs_sweep ON jobs (sweep_id, status);
