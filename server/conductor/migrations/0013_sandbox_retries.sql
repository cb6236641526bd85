-- Retries for sandbox creation and execs (see server/conductor/src/domain/sandboxes.rs).

-- Placements made so far, when the current one was made, and a retry's backoff.
ALTER TABLE sandboxes ADD COLUMN create_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sandboxes ADD COLUMN placed_at INTEGER;
ALTER TABLE sandboxes ADD COLUMN not_before INTEGER;

-- The current attempt, when it was first handed to the worker, a retry's backoff, and the
-- attempts that ended (JSON list of ExecAttempt).
ALTER TABLE sandbox_execs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE sandbox_execs ADD COLUMN dispatched_at INTEGER;
ALTER TABLE sandbox_execs ADD COLUMN not_before INTEGER;
ALTER TABLE sandbox_execs ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]';
