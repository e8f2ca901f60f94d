-- Uploaded safetensors weights (for example a torchvision state_dict), usable as a job's
-- init.from_weights. The file lives at `path` under the data folder; `tensors` is the JSON list
-- of its tensors' names, dtypes and shapes, read once at upload so submissions check shapes
-- without opening the file.
CREATE TABLE weights (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    path       TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    tensors    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
