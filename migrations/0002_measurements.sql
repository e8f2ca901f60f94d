-- The measurements that explain a run: per epoch the training metrics in eval mode and the
-- noise of the step losses; the loss of every step; per parameter tensor and epoch the
-- gradient and weight norms; and why a job stopped early.

ALTER TABLE epochs ADD COLUMN train_eval_loss REAL;  -- NULL for epochs recorded before 0002
ALTER TABLE epochs ADD COLUMN train_eval_acc REAL;
ALTER TABLE epochs ADD COLUMN step_loss_cv REAL;     -- std / mean of the epoch's step losses

ALTER TABLE jobs ADD COLUMN stopped_early_epoch INTEGER;  -- set in the epoch's own commit
ALTER TABLE jobs ADD COLUMN stop_reason TEXT;

-- One row per job and epoch: the epoch's step losses as `steps` little-endian f32 values,
-- written in the epoch's commit transaction.
CREATE TABLE steps (
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,
    first_step  INTEGER NOT NULL,              -- global, 1-based
    steps       INTEGER NOT NULL,
    losses      BLOB NOT NULL,
    PRIMARY KEY (job_id, epoch)
);
CREATE INDEX steps_range ON steps (job_id, first_step);

-- One row per job, parameter tensor and epoch. Norms are NULL when they were not finite.
CREATE TABLE layer_grads (
    job_id          TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,          -- the tensor's place in the model, 0-based
    epoch           INTEGER NOT NULL,
    tensor          TEXT NOT NULL,             -- hidden.3.weight, output.bias, ...
    layer           TEXT NOT NULL,             -- hidden.3, output
    layer_index     INTEGER NOT NULL,          -- 3; the depth for the output layer
    role            TEXT NOT NULL,             -- weight, bias, bn.weight, bn.bias
    grad_norm_mean  REAL,
    grad_norm_max   REAL,
    weight_norm     REAL,
    PRIMARY KEY (job_id, position, epoch)
);
