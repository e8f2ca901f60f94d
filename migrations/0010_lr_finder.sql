-- Learning-rate range tests: one short pass with the rate growing exponentially, kept with
-- the curve and the rate it suggests. A test asked for over HTTP is a row from the start
-- (`running`), so one that outlasts its request is still found. A test run for a job whose
-- spec said `"lr": "auto"` names that job and goes with it.
CREATE TABLE lr_finds (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    spec        TEXT NOT NULL,   -- JSON: the job spec tested, defaults filled in
    settings    TEXT NOT NULL,   -- JSON: min_lr, max_lr, steps, stop_factor, smoothing
    status      TEXT NOT NULL,   -- running, succeeded or failed
    curve       TEXT,            -- JSON once it succeeded: the points, why it stopped, the suggestions
    failure     TEXT,            -- why it failed
    seconds     REAL,
    job_id      TEXT REFERENCES jobs (id) ON DELETE CASCADE,
    owner       TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX lr_finds_owner ON lr_finds (owner, created_at);
CREATE INDEX lr_finds_job ON lr_finds (job_id);

-- A job submitted with `"lr": "auto"` runs the range test before its first epoch; its spec
-- then records the rate chosen, and `lr_find_id` the test that chose it.
ALTER TABLE jobs ADD COLUMN lr_auto INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lr_find_id TEXT;
