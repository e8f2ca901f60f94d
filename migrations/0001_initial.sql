-- Data sets: built-ins and uploads. The rows themselves live in datasets/<id>/ on disk.
CREATE TABLE datasets (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    source        TEXT NOT NULL,              -- builtin | upload | synthetic
    summary       TEXT NOT NULL,              -- JSON: features, classes with counts, splits
    created_at    TEXT NOT NULL
);

-- A job is a row before it is anything else; the scheduler claims rows, never HTTP handlers.
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    seq              INTEGER NOT NULL UNIQUE,  -- submission order, for a stable queue
    name             TEXT NOT NULL,
    dataset_id       TEXT NOT NULL REFERENCES datasets(id),
    spec             TEXT NOT NULL,            -- JSON, complete with defaults
    status           TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed','cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until_ms   INTEGER,
    lease_epoch      INTEGER NOT NULL DEFAULT 0, -- fencing token: bumped on every claim
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    epochs_total     INTEGER NOT NULL,
    epochs_done      INTEGER NOT NULL DEFAULT 0,
    preprocessing    TEXT,                     -- JSON, fixed when the job first starts
    failure          TEXT,
    best_epoch       INTEGER,
    best_val_acc     REAL,
    best_val_loss    REAL,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    updated_at       TEXT NOT NULL
);
CREATE INDEX jobs_queue ON jobs (status, priority DESC, seq);
CREATE INDEX jobs_dataset ON jobs (dataset_id);

-- One row per job and epoch; the UNIQUE constraint makes a duplicate epoch impossible.
CREATE TABLE epochs (
    job_id          TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    epoch           INTEGER NOT NULL,
    train_loss      REAL NOT NULL,
    train_acc       REAL NOT NULL,
    val_loss        REAL NOT NULL,
    val_acc         REAL NOT NULL,
    test_loss       REAL,
    test_acc        REAL,
    lr              REAL NOT NULL,
    steps           INTEGER NOT NULL,
    epoch_seconds   REAL NOT NULL,
    samples_per_sec REAL NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);

-- Checkpoint files, recorded only after they are fully written and fsynced.
CREATE TABLE checkpoints (
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,
    path        TEXT NOT NULL,                 -- relative to the data folder
    sha256      TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    val_acc     REAL NOT NULL,
    val_loss    REAL NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);
