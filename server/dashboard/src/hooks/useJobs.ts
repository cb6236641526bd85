// The conductor's job queue: jobs (newest first, by state), one job and its attempts with the
// tails of their output, the queues and their limits, and what admins do (submit, cancel, set or
// remove a queue's limit). A running attempt's output is read live from its worker's own API (the
// conductor has its tails only once it ended).

import { unwrap, type ConductorClient, type ConductorComponents, type Worker, type WorkerComponents } from '@aerekos/sdk';

import { useClients } from './useSession';
import { useAsync } from './useAsync';
import { workerApi } from './useWorkers';

export type Job = ConductorComponents['schemas']['Job'];
export type JobState = ConductorComponents['schemas']['JobState'];
export type JobRequest = ConductorComponents['schemas']['JobRequest'];
export type JobAttempt = ConductorComponents['schemas']['JobAttempt'];
export type AttemptOutcome = ConductorComponents['schemas']['AttemptOutcome'];
export type JobQueue = ConductorComponents['schemas']['JobQueue'];
/** Part of one output stream of a running attempt, from its worker. */
export type InstanceOutput = WorkerComponents['schemas']['InstanceOutput'];
export type OutputStream = 'stdout' | 'stderr';

/** Every state, in the order a job goes through them. */
export const JOB_STATES: JobState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export function isJobState(s: string | undefined): s is JobState {
  return s !== undefined && (JOB_STATES as string[]).includes(s);
}

/** Succeeded, failed or cancelled: nothing changes it any more. */
export function jobFinished(job: Job): boolean {
  return job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled';
}

/** What the conductor keeps of each stream of an ended attempt, and what is read live of a running one. */
export const TAIL_BYTES = 16 * 1024;

/** The list's first length and each "Show more" (pages of at most PAGE, followed in one load). */
export const JOBS_SHOWN = 100;
const PAGE = 500;

export interface JobListing {
  jobs: Job[];
  /** Older jobs exist beyond those shown. */
  more: boolean;
}

async function listJobs(conductor: ConductorClient, state: JobState | undefined, count: number): Promise<JobListing> {
  const jobs: Job[] = [];
  let cursor: string | undefined;
  do {
    const page = await unwrap(
      conductor.GET('/api/jobs', {
        params: { query: { limit: Math.min(PAGE, count - jobs.length), ...(state ? { state } : {}), ...(cursor ? { cursor } : {}) } },
      }),
    );
    jobs.push(...page.jobs);
    cursor = page.next_cursor;
  } while (cursor && jobs.length < count);
  return { jobs, more: Boolean(cursor) };
}

/** The newest `count` jobs (in `state`, or all), newest first. */
export function useJobs(state: JobState | undefined, count = JOBS_SHOWN, intervalMs = 3000) {
  const { conductor } = useClients();
  return useAsync<JobListing>(() => listJobs(conductor, state, count), [conductor, state, count], intervalMs);
}

/** One job, with its last attempt. */
export function useJob(id: string, intervalMs = 2000) {
  const { conductor } = useClients();
  return useAsync<Job>(() => unwrap(conductor.GET('/api/jobs/{id}', { params: { path: { id } } })), [conductor, id], intervalMs);
}

/** Every attempt at a job, the first first, with the tails of their output once they ended. */
export function useJobAttempts(id: string, intervalMs = 2000) {
  const { conductor } = useClients();
  return useAsync<JobAttempt[]>(() => unwrap(conductor.GET('/api/jobs/{id}/attempts', { params: { path: { id } } })), [conductor, id], intervalMs);
}

/** The queues: those with settings and those jobs wait or run in. */
export function useJobQueues(intervalMs = 5000) {
  const { conductor } = useClients();
  return useAsync<JobQueue[]>(() => unwrap(conductor.GET('/api/job-queues')), [conductor], intervalMs);
}

export function useJobActions() {
  const { conductor } = useClients();
  return {
    /** Queues a job; the answer is the job (an earlier one when its idempotency key was used before). */
    submit: (request: JobRequest) => unwrap(conductor.POST('/api/jobs', { body: request })),
    /** Cancels a queued or running job (409 `job_finished` once it finished). */
    cancel: (id: string) => unwrap(conductor.POST('/api/jobs/{id}/cancel', { params: { path: { id } } })),
    setQueueLimit: (name: string, limit: number) =>
      unwrap(conductor.PUT('/api/job-queues/{name}', { params: { path: { name } }, body: { concurrency_limit: limit } })),
    /** Removes a queue's settings: its jobs run with no limit (404 `queue_not_found` when it has none). */
    removeQueueLimit: (name: string) => unwrap(conductor.DELETE('/api/job-queues/{name}', { params: { path: { name } } })),
  };
}

/**
 * The end (the last TAIL_BYTES) of one stream of a running attempt, read live from the worker that
 * runs it; nothing is read for an attempt that ended (the conductor has its tails).
 */
export function useLiveOutput(worker: Worker | undefined, attempt: JobAttempt, stream: OutputStream, intervalMs = 2000) {
  const clients = useClients();
  const running = attempt.outcome === 'running';
  return useAsync<InstanceOutput | undefined>(
    async () => {
      if (!running || !worker) return undefined;
      const api = workerApi(clients, worker);
      return unwrap(
        api.GET('/api/worker/instances/{id}/output', { params: { path: { id: attempt.instance_id }, query: { stream, max_bytes: TAIL_BYTES } } }),
      );
    },
    [clients, worker?.api_url, attempt.instance_id, running, stream],
    intervalMs,
  );
}

/**
 * A command line as a list of arguments: split at blanks, with '…' and "…" quoting (a backslash
 * escapes the next character, except inside '…'), as a shell would split it (no variables, no
 * globbing). Throws on an unfinished quote.
 */
export function splitCommand(line: string): string[] {
  const args: string[] = [];
  let current = '';
  let started = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else current += c;
    } else if (c === '\\' && i + 1 < line.length && (quote === undefined || /["\\$`]/.test(line[i + 1]!))) {
      current += line[++i];
      started = true;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else current += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      started = true;
    } else if (/\s/.test(c)) {
      if (started) args.push(current);
      current = '';
      started = false;
    } else {
      current += c;
      started = true;
    }
  }
  if (quote) throw new Error(`The command has an unfinished ${quote === "'" ? 'single' : 'double'} quote.`);
  if (started) args.push(current);
  return args;
}

/** A list of arguments as one line that splitCommand splits back into the same list. */
export function commandLine(args: string[]): string {
  return args.map((a) => (a !== '' && /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** What a job runs, in one line: its command, or its image (and command). */
export function jobCommand(request: JobRequest): string {
  const command = request.command?.length ? commandLine(request.command) : undefined;
  if (request.image) return command ? `${request.image} ${command}` : request.image;
  return command ?? '—';
}
