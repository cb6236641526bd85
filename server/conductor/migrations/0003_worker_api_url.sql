-- Where a worker's own API (instances, logs) answers, as the worker reports it.
ALTER TABLE workers ADD COLUMN api_url TEXT;
