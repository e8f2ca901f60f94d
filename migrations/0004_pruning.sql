-- A sweep's pruning rule stopped this job early (its stop_reason says why); it counts as
-- finished, so resuming the sweep does not run it again.
ALTER TABLE jobs ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0;
