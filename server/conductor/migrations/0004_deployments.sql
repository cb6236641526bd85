-- The catalog grows services an admin defines, and each service keeps the deployment the
-- conductor maintains for it.
-- A service an admin defined, as JSON (model::Service without its state); NULL for built-ins,
-- which are defined in code.
ALTER TABLE services ADD COLUMN definition TEXT;
-- What the service's deployment asks for (model::DeploymentSpec as JSON), once enabled or deployed.
ALTER TABLE services ADD COLUMN deployment TEXT;
-- How the gateway spreads requests over the instances.
ALTER TABLE services ADD COLUMN load_balancing TEXT NOT NULL DEFAULT 'round_robin';
