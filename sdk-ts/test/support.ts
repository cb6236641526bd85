// Shared by the end-to-end tests: starting and stopping the real aerekos binary (conductor and
// services), and asserting on AerekosApiError.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { AerekosApiError } from '../src/index.js';

// This file runs from dist-test/test/, so the sdk-ts directory is two levels up.
const SDK_DIR = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = resolve(SDK_DIR, process.env.AEREKOS_BIN ?? '../target/debug/aerekos');
const STARTUP_TIMEOUT_MS = 30_000;

/** A running aerekos process with its own temporary data directory. */
export interface Server {
  name: string;
  proc: ChildProcess;
  /** The URL from the process's `... listening on <url>` line. */
  baseUrl: string;
  dataDir: string;
  stdout: () => string;
  stderr: () => string;
}

/**
 * Starts `aerekos <args>` with a fresh DATA_DIR and `env`, and waits until its stdout matches
 * `listening` (whose first group is the base URL). Fails with the process's output if it exits or
 * takes longer than 30 s.
 */
export async function startServer(opts: {
  name: string;
  args: string[];
  env: Record<string, string>;
  listening: RegExp;
  /** Called with the fresh data directory before the process starts: files to write there, and more env. */
  setup?: (dataDir: string) => Promise<Record<string, string>>;
  /** How long the listening line may take (default 30 s). */
  startupTimeoutMs?: number;
}): Promise<Server> {
  if (!existsSync(BIN)) {
    throw new Error(`aerekos binary not found at ${BIN}; build it or set AEREKOS_BIN`);
  }
  const dataDir = await mkdtemp(join(tmpdir(), `aerekos-sdk-ts-${opts.name}-`));
  const extraEnv = opts.setup ? await opts.setup(dataDir) : {};
  const proc = spawn(BIN, opts.args, {
    env: { ...process.env, ...opts.env, ...extraEnv, DATA_DIR: dataDir, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Keep draining both pipes for the whole run: a full pipe would block the process's logging.
  let stdout = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout = (stdout + chunk).slice(-64_000);
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-64_000);
  });

  const baseUrl = await new Promise<string>((resolveUrl, reject) => {
    const fail = (why: string) => {
      cleanup();
      reject(new Error(`${opts.name} did not start: ${why}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`));
    };
    const onData = () => {
      const m = opts.listening.exec(stdout);
      if (m) {
        cleanup();
        resolveUrl(m[1]!);
      }
    };
    const onExit = (code: number | null, signal: string | null) => fail(`exited (code ${code}, signal ${signal})`);
    const onError = (err: Error) => fail(err.message);
    const timeoutMs = opts.startupTimeoutMs ?? STARTUP_TIMEOUT_MS;
    const timer = setTimeout(() => fail(`no listening line within ${timeoutMs} ms`), timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      proc.stdout!.off('data', onData);
      proc.off('exit', onExit);
      proc.off('error', onError);
    };
    proc.stdout!.on('data', onData);
    proc.on('exit', onExit);
    proc.on('error', onError);
  }).catch(async (err: unknown) => {
    proc.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  });

  return { name: opts.name, proc, baseUrl, dataDir, stdout: () => stdout, stderr: () => stderr };
}

/** Stops the process with SIGTERM (SIGKILL after 10 s) and removes its data directory. */
export async function stopServer(s: Server): Promise<void> {
  if (s.proc.exitCode === null && s.proc.signalCode === null) {
    const exited = new Promise<void>((done) => s.proc.once('exit', () => done()));
    s.proc.kill('SIGTERM');
    const timer = setTimeout(() => s.proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  await rm(s.dataDir, { recursive: true, force: true });
}

/** A conductor whose `admin` user has `adminPassword`. */
export interface Conductor extends Server {
  adminPassword: string;
}

/**
 * `aerekos conductor` on 127.0.0.1 and a free port. With `tls`, it serves HTTPS
 * (`CONDUCTOR_TLS=on`; on loopback the default is plain HTTP) with a certificate from the cluster
 * CA it makes in `<dataDir>/tls/ca.pem`, and `baseUrl` is `https://...`.
 */
export async function startConductor(opts: { tls?: boolean } = {}): Promise<Conductor> {
  const adminPassword = `sdk-test-${randomUUID()}`;
  const server = await startServer({
    name: 'conductor',
    args: ['conductor'],
    env: {
      CONDUCTOR_HOST: '127.0.0.1',
      CONDUCTOR_PORT: '0',
      AEREKOS_ADMIN_PASSWORD: adminPassword,
      CONDUCTOR_TLS: opts.tls ? 'on' : 'off',
    },
    listening: opts.tls ? /aerekos conductor listening on (https:\/\/\S+)/ : /aerekos conductor listening on (http:\/\/\S+)/,
  });
  return { ...server, adminPassword };
}

/** key_manager, trusting the tokens of the conductor at `conductorUrl`. */
export async function startKeyManager(conductorUrl: string): Promise<Server> {
  return startServer({
    name: 'key_manager',
    args: ['service', 'key-manager'],
    env: { CONDUCTOR_URL: conductorUrl, KEY_MANAGER_HOST: '127.0.0.1', KEY_MANAGER_PORT: '0' },
    listening: /key_manager listening on (http:\/\/\S+)/,
  });
}

/** A worker agent joining the conductor at `conductorUrl` with its registration token (processes only). */
export async function startWorker(conductorUrl: string, registrationToken: string): Promise<Server> {
  return startServer({
    name: 'worker',
    args: ['worker'],
    env: {
      CONDUCTOR_URL: conductorUrl,
      CONDUCTOR_TOKEN: registrationToken,
      WORKER_NAME: 'sdk-ts-worker',
      WORKER_IP: '127.0.0.1',
      WORKER_API_HOST: '127.0.0.1',
      WORKER_API_PORT: '0',
      WORKER_DOCKER: 'off',
    },
    listening: /aerekos worker API listening on (http:\/\/\S+)/,
  });
}

/** A whole platform (`aerekos up`): an admin, and a viewer user. */
export interface Platform extends Server {
  adminPassword: string;
  viewer: { username: string; password: string };
}

/**
 * `aerekos up` in a fresh data directory, as a user runs it: the conductor on 127.0.0.1 and a free
 * port (plain HTTP, no S3 edge), a local worker (processes only) running the built-in services
 * (key_manager, storage_manager, secrets_manager, logs_manager, reached through the conductor's gateway at
 * `baseUrl/api/<service>/…`), the `admin` user with `adminPassword` and a `viewer`-role user.
 * Resolves once the platform printed its summary; the services may still be starting (see
 * `waitForService`). `stopServer` stops it (SIGTERM stops its instances too).
 */
export async function startPlatform(): Promise<Platform> {
  const adminPassword = `sdk-test-${randomUUID()}`;
  const viewer = { username: 'sdk-viewer', password: `sdk-viewer-${randomUUID()}` };
  const server = await startServer({
    name: 'up',
    args: ['up'],
    env: {
      CONDUCTOR_HOST: '127.0.0.1',
      CONDUCTOR_PORT: '0',
      CONDUCTOR_TLS: 'off',
      CONDUCTOR_S3_PORT: 'off',
      WORKER_API_HOST: '127.0.0.1',
      WORKER_API_PORT: '0',
      AEREKOS_ADMIN_PASSWORD: adminPassword,
      // Instance ports away from the Rust tests' (20000–29549) and the dashboard tests' (29600–29699).
      AEREKOS_INSTANCE_PORTS: process.env.AEREKOS_INSTANCE_PORTS ?? '29700-29799',
      HEARTBEAT_INTERVAL: '1',
    },
    setup: async (dataDir) => {
      const usersFile = join(dataDir, 'users.json');
      await writeFile(usersFile, JSON.stringify([{ username: viewer.username, role: 'viewer', password: viewer.password }]));
      return { AEREKOS_USERS_FILE: usersFile };
    },
    // The summary's last line: by then the conductor listens and the services are deployed.
    listening: /aerekos conductor listening on (http:\/\/\S+)[\s\S]*Ctrl-C stops/,
    startupTimeoutMs: 60_000,
  });
  return { ...server, adminPassword, viewer };
}

/**
 * Waits until `probe` (a call through the gateway to a service) stops failing with 502/503/404
 * (the gateway's answers while the service has no healthy instance yet), for up to `ms`.
 */
export async function waitForService<T>(what: string, probe: () => Promise<T>, ms = 90_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      const starting = err instanceof AerekosApiError && [0, 404, 502, 503].includes(err.status);
      if (!starting || Date.now() > deadline) {
        throw new Error(`${what} did not come up within ${ms} ms: ${String(err)}`, { cause: err });
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Asserts that `promise` rejects with an AerekosApiError and returns it for further checks. */
export async function apiError(promise: Promise<unknown>): Promise<AerekosApiError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof AerekosApiError, `expected AerekosApiError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}
