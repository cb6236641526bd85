// A worker's own API: the instances it runs and their output (openapi/worker.json). Its address is
// the worker's `api_url` in the conductor's registry; it takes the conductor's user tokens.

import { createApiClient, type ApiClient, type ClientOptions } from './core.js';
import type { components, paths } from './generated/worker.js';

export type { paths as WorkerPaths, components as WorkerComponents } from './generated/worker.js';

/** An instance as a worker runs it. */
export type WorkerInstance = components['schemas']['WorkerInstance'];
/** A worker's health: version, id once joined, runtime drivers. */
export type WorkerHealth = components['schemas']['WorkerHealth'];

/** The openapi-fetch client (`GET`, ... typed from the worker spec) plus token handling. */
export type WorkerClient = ApiClient<paths>;

/** A client for one worker's API; `baseUrl` is the worker's `api_url`, `token` a user's conductor token. */
export function createWorkerClient(options: ClientOptions): WorkerClient {
  return createApiClient<paths>(options);
}
