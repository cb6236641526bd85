// Jobs: the conductor's queue of commands and images run to their end on a worker. The list page
// shows the jobs, the newest first, filtered by state (kept in the address), and the queues with
// their limits; admins submit a job and set or remove a queue's limit. A job's page shows what was
// submitted, where it stands, and each attempt with the tails of its stdout and stderr (read live
// from the worker while it runs); admins cancel a queued or running job. Viewers only read.

import type { Worker } from '@aerekos/sdk';
import { useEffect, useRef, useState } from 'react';
import { Text, View, type StyleProp, type ViewStyle } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { CodeBlock } from '../components/Code';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorBanner, InfoBanner, WarnBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, between, bytes, dateTime, duration, shortId } from '../format';
import { useAction, type AsyncState } from '../hooks/useAsync';
import {
  JOBS_SHOWN,
  JOB_STATES,
  TAIL_BYTES,
  commandLine,
  isJobState,
  jobCommand,
  jobFinished,
  splitCommand,
  useJob,
  useJobActions,
  useJobAttempts,
  useJobQueues,
  useJobs,
  useLiveOutput,
  type AttemptOutcome,
  type Job,
  type JobAttempt,
  type JobQueue,
  type JobRequest,
  type JobState,
  type OutputStream,
} from '../hooks/useJobs';
import { useSession } from '../hooks/useSession';
import { useWorkers } from '../hooks/useWorkers';
import { useRouter } from '../router';
import type { Tone } from '../theme';
import { jobsStyles as s } from './jobs.styles';

export function jobTone(state: JobState): Tone {
  switch (state) {
    case 'succeeded':
      return 'ok';
    case 'failed':
      return 'danger';
    case 'cancelled':
      return 'muted';
    case 'running':
      return 'info';
    default:
      return 'gold';
  }
}

// The conductor sends a field it has no value for as null (the types say only "optional"):
// those fields are compared with `== null`.

function outcomeTone(a: JobAttempt): Tone {
  const outcome: AttemptOutcome = a.outcome;
  if (outcome === 'running') return 'info';
  if (outcome === 'cancelled') return 'muted';
  return outcome === 'exited' && a.exit_code === 0 ? 'ok' : 'danger';
}

/** What people call a job: its name, else what it runs. */
function jobTitle(job: Job): string {
  return job.name ?? jobCommand(job.request);
}

/** The retry policy in words. */
function retryText(request: JobRequest): string {
  const r = request.retry;
  if (!r || r.max_retries === 0) return 'never retried';
  const on = r.retry_on_exit_codes ? `exit codes ${r.retry_on_exit_codes.join(', ')}` : 'any failure';
  const backoff = `backoff ${duration(r.initial_backoff_ms ?? 1000)} doubling to ${duration(r.max_backoff_ms ?? 60000)}`;
  return `up to ${r.max_retries} ${r.max_retries === 1 ? 'retry' : 'retries'} on ${on}; ${backoff}`;
}

export function JobsScreen({ selected, state }: { selected?: string; state?: string }) {
  return selected ? <JobDetail key={selected} id={selected} state={state} /> : <JobList state={state} />;
}

// ---------------------------------------------------------------------------------------------
// The list page

function JobList({ state }: { state?: string }) {
  const { isAdmin } = useSession();
  const { navigate } = useRouter();
  const filter = isJobState(state) ? state : undefined;
  const [count, setCount] = useState(JOBS_SHOWN);
  useEffect(() => setCount(JOBS_SHOWN), [filter]);
  const jobs = useJobs(filter, count);
  const queues = useJobQueues();

  return (
    <Screen
      kicker="Batch work"
      title="Jobs"
      subtitle="Commands and images run once to their end on a worker with room, the highest priority first, and retried as their policy says. The conductor keeps each attempt's outcome and the last 16 KiB of its stdout and stderr."
      testID="jobs-screen"
    >
      <View style={s.columns}>
        {isAdmin ? (
          <SubmitCard
            onSubmitted={(job) => {
              void jobs.reload();
              void queues.reload();
              navigate({ name: 'jobs', job: job.id, ...(filter ? { state: filter } : {}) });
            }}
          />
        ) : null}
        <QueuesCard queues={queues} style={isAdmin ? s.queues : s.column} />
      </View>

      <Card
        title="Jobs"
        subtitle={jobs.data ? `${jobs.data.jobs.length}${jobs.data.more ? ' shown' : ' in all'}${filter ? `, ${filter}` : ''} · the newest first` : undefined}
        testID="jobs-card"
      >
        <View style={s.filters} role="group" aria-label="Jobs in state">
          {[undefined, ...JOB_STATES].map((st) => (
            <Button
              key={st ?? 'all'}
              label={st ?? 'all'}
              size="small"
              variant={st === filter ? 'primary' : 'ghost'}
              onPress={() => navigate({ name: 'jobs', ...(st ? { state: st } : {}) }, { replace: true })}
              testID={`jobs-filter-${st ?? 'all'}`}
              accessibilityLabel={st ? `Only ${st} jobs` : 'All jobs'}
            />
          ))}
        </View>
        {state && !filter ? <ErrorBanner error={new Error(`${state} is not a state of a job: it is one of ${JOB_STATES.join(', ')}.`)} /> : null}
        <ErrorBanner error={jobs.error} onRetry={() => void jobs.reload()} />
        {!jobs.data && !jobs.error ? <Spinner label="Loading jobs…" /> : null}
        {jobs.data ? (
          <Table
            testID="jobs-table"
            data={jobs.data.jobs}
            keyOf={(j) => j.id}
            onPress={(j) => navigate({ name: 'jobs', job: j.id, ...(filter ? { state: filter } : {}) })}
            empty={filter ? `No ${filter} job.` : isAdmin ? 'No job yet: submit one above.' : 'No job yet.'}
            columns={[
              { key: 'state', title: 'State', flex: 0.9, render: (j) => <StatusBadge status={j.state} tone={jobTone(j.state)} testID={`job-state-${j.id}`} /> },
              {
                key: 'name',
                title: 'Job',
                flex: 2.6,
                render: (j) => (
                  <View testID={`job-row-${j.id}`}>
                    <Text style={j.name ? s.name : s.command} numberOfLines={1}>
                      {jobTitle(j)}
                    </Text>
                    <Text style={s.subMono} numberOfLines={1}>
                      {j.name ? `${shortId(j.id)} · ${jobCommand(j.request)}` : shortId(j.id)}
                    </Text>
                  </View>
                ),
              },
              { key: 'priority', title: 'Priority', flex: 0.7, render: (j) => String(j.priority) },
              { key: 'queue', title: 'Queue', flex: 0.9, render: (j) => j.queue },
              {
                key: 'attempts',
                title: 'Attempts',
                flex: 0.8,
                render: (j) => `${j.attempts} of ${(j.request.retry?.max_retries ?? 0) + 1}`,
              },
              {
                key: 'exit',
                title: 'Exit code',
                flex: 0.8,
                render: (j) =>
                  j.exit_code == null ? (
                    '—'
                  ) : (
                    <Text style={j.exit_code === 0 ? s.cell : s.failedCode} testID={`job-exit-${j.id}`}>
                      {String(j.exit_code)}
                    </Text>
                  ),
              },
              {
                key: 'submitted',
                title: 'Submitted',
                flex: 1.2,
                render: (j) => (
                  <View>
                    <Text style={s.cell}>{ago(j.submitted_at)}</Text>
                    <Text style={s.sub}>{dateTime(j.submitted_at)}</Text>
                  </View>
                ),
              },
            ]}
          />
        ) : null}
        {jobs.data?.more ? (
          <View style={s.more}>
            <Button label="Show more" onPress={() => setCount((c) => c + JOBS_SHOWN)} busy={jobs.loading} testID="jobs-more" />
          </View>
        ) : null}
      </Card>
    </Screen>
  );
}

/** A whole number typed into a field, within bounds; `fallback` when left empty. */
function wholeNumber(text: string, what: string, min: number, max: number, fallback?: number): number | undefined {
  const t = text.trim();
  if (t === '') return fallback;
  if (!/^\d+$/.test(t) || Number(t) < min || Number(t) > max) throw new Error(`${what} must be a whole number from ${min} to ${max}.`);
  return Number(t);
}

const QUEUE_NAME = /^[a-z0-9_-]{1,64}$/;

/** Random hex: an idempotency key (crypto.randomUUID needs a secure context; this does not). */
function randomKey(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Admins: a command (split as a shell would, shown as its list of arguments), priority, timeout, retries, queue. */
function SubmitCard({ onSubmitted }: { onSubmitted(job: Job): void }) {
  const actions = useJobActions();
  const [name, setName] = useState('');
  const [command, setCommand] = useState('');
  const [priority, setPriority] = useState('50');
  const [timeout, setTimeout_] = useState('3600');
  const [retries, setRetries] = useState('0');
  const [queue, setQueue] = useState('default');
  // The same request submitted again (after an error: did it reach the conductor?) carries the
  // same idempotency key, so it is not queued twice.
  const pending = useRef<{ request: string; key: string } | undefined>(undefined);

  let argv: string[] | undefined;
  let argvError: string | undefined;
  try {
    argv = splitCommand(command);
  } catch (e) {
    argvError = (e as Error).message;
  }

  const submit = useAction(async () => {
    if (argvError) throw new Error(argvError);
    if (!argv || argv.length === 0) throw new Error('Type the command to run, e.g. echo hello.');
    const maxRetries = wholeNumber(retries, 'Retries', 0, 100, 0) ?? 0;
    const q = queue.trim() || 'default';
    if (!QUEUE_NAME.test(q)) throw new Error('A queue is named with 1–64 of a-z, 0-9, _ and -.');
    const request: JobRequest = {
      command: argv,
      ...(name.trim() ? { name: name.trim() } : {}),
      priority: wholeNumber(priority, 'Priority', 0, 100, 50),
      timeout_secs: wholeNumber(timeout, 'The timeout', 1, 604800, 3600),
      queue: q,
      ...(maxRetries > 0 ? { retry: { max_retries: maxRetries } } : {}),
    };
    const text = JSON.stringify(request);
    if (pending.current?.request !== text) pending.current = { request: text, key: randomKey() };
    const job = await actions.submit({ ...request, idempotency_key: pending.current.key });
    pending.current = undefined;
    setName('');
    setCommand('');
    onSubmitted(job);
  });

  return (
    <Card title="Submit a job" subtitle="Run with the process driver on a worker with room" style={s.submit} testID="job-submit-card">
      <View style={s.form}>
        <Field
          label="Command"
          value={command}
          onChangeText={setCommand}
          onSubmit={() => void submit.run()}
          placeholder={`e.g. sh -c 'echo hello; sleep 5'`}
          mono
          style={s.formWide}
          testID="job-command"
        />
        <Field label="Name" value={name} onChangeText={setName} placeholder="optional" style={s.formField} testID="job-name" />
      </View>
      <View style={s.argv} testID="job-argv" aria-label="The command's arguments">
        <Text style={s.argvLabel}>Arguments</Text>
        {argvError ? <Text style={s.failedCode}>{argvError}</Text> : null}
        {argv && argv.length === 0 ? <Text style={s.argvNone}>none yet</Text> : null}
        {argv?.map((a, i) => (
          <Text key={i} style={s.arg} testID={`job-arg-${i}`}>
            {a === '' ? '""' : a}
          </Text>
        ))}
      </View>
      <View style={s.form}>
        <Field label="Priority (0–100)" value={priority} onChangeText={setPriority} numeric style={s.formField} testID="job-priority" />
        <Field label="Timeout (s)" value={timeout} onChangeText={setTimeout_} numeric style={s.formField} testID="job-timeout" />
        <Field label="Retries" value={retries} onChangeText={setRetries} numeric style={s.formField} testID="job-retries" />
        <Field label="Queue" value={queue} onChangeText={setQueue} mono style={s.formField} testID="job-queue" />
        <Button label="Submit" variant="primary" onPress={() => void submit.run()} busy={submit.running} testID="job-submit" />
      </View>
      <ErrorBanner error={submit.error} testID="job-submit-error" />
    </Card>
  );
}

/** The queues: their limits and their jobs running and queued; admins set or remove a limit. */
function QueuesCard({ queues, style }: { queues: AsyncState<JobQueue[]>; style?: StyleProp<ViewStyle> }) {
  const { isAdmin } = useSession();
  const actions = useJobActions();
  const [name, setName] = useState('');
  const [limit, setLimit] = useState('');
  const set = useAction(async () => {
    const q = name.trim();
    if (!QUEUE_NAME.test(q)) throw new Error('A queue is named with 1–64 of a-z, 0-9, _ and -.');
    const n = wholeNumber(limit, 'The limit', 1, 10000);
    if (n === undefined) throw new Error('Type how many of its jobs may run at once (1–10000).');
    await actions.setQueueLimit(q, n);
    setName('');
    setLimit('');
    await queues.reload();
  });
  const remove = useAction(async (q: string) => {
    set.clear();
    await actions.removeQueueLimit(q);
    await queues.reload();
  });

  return (
    <Card title="Queues" subtitle="How many of a queue's jobs may run at once" style={style} testID="job-queues-card">
      {isAdmin ? (
        <View style={s.queueForm}>
          <Field label="Queue" value={name} onChangeText={setName} placeholder="e.g. nightly" mono style={s.formField} testID="queue-name" />
          <Field label="Limit" value={limit} onChangeText={setLimit} onSubmit={() => void set.run()} placeholder="1–10000" numeric style={s.formField} testID="queue-limit" />
          <Button label="Set limit" onPress={() => void set.run()} busy={set.running} testID="queue-set" />
        </View>
      ) : null}
      <ErrorBanner error={set.error ?? remove.error} testID="queue-error" />
      <ErrorBanner error={queues.error} onRetry={() => void queues.reload()} />
      {!queues.data && !queues.error ? <Spinner label="Loading queues…" /> : null}
      {queues.data ? (
        <Table
          testID="job-queues"
          data={queues.data}
          keyOf={(q) => q.name}
          empty="No queue yet: jobs run in `default`, with no limit unless one is set."
          columns={[
            {
              key: 'name',
              title: 'Queue',
              flex: 1.3,
              render: (q) => (
                <Text style={s.command} numberOfLines={1} testID={`queue-row-${q.name}`}>
                  {q.name}
                </Text>
              ),
            },
            {
              key: 'limit',
              title: 'Limit',
              flex: 0.8,
              render: (q) => (
                <Text style={q.concurrency_limit == null ? s.none : s.cell} testID={`queue-limit-${q.name}`}>
                  {q.concurrency_limit == null ? 'none' : String(q.concurrency_limit)}
                </Text>
              ),
            },
            { key: 'running', title: 'Running', flex: 0.7, render: (q) => String(q.running) },
            { key: 'queued', title: 'Queued', flex: 0.7, render: (q) => String(q.queued) },
            ...(isAdmin
              ? [
                  {
                    key: 'actions',
                    title: '',
                    flex: 1.6,
                    render: (q: JobQueue) => (
                      <View style={s.rowActions}>
                        <Button
                          label="Edit"
                          size="small"
                          variant="ghost"
                          onPress={() => {
                            setName(q.name);
                            setLimit(q.concurrency_limit == null ? '' : String(q.concurrency_limit));
                          }}
                          testID={`queue-edit-${q.name}`}
                          accessibilityLabel={`Edit the limit of ${q.name}`}
                        />
                        {q.concurrency_limit != null ? (
                          <Button
                            label="Remove limit"
                            size="small"
                            onPress={() => void remove.run(q.name)}
                            testID={`queue-remove-${q.name}`}
                            accessibilityLabel={`Remove the limit of ${q.name}`}
                          />
                        ) : null}
                      </View>
                    ),
                  },
                ]
              : []),
          ]}
        />
      ) : null}
    </Card>
  );
}

// ---------------------------------------------------------------------------------------------
// One job's page

function Fact({ label, value, mono, testID }: { label: string; value: string; mono?: boolean; testID?: string }) {
  return (
    <View style={s.fact}>
      <Text style={s.factLabel}>{label}</Text>
      <Text style={mono ? s.factMono : s.factValue} testID={testID} selectable>
        {value}
      </Text>
    </View>
  );
}

function JobDetail({ id, state }: { id: string; state?: string }) {
  const { isAdmin } = useSession();
  const { navigate } = useRouter();
  const job = useJob(id);
  const attempts = useJobAttempts(id);
  const workers = useWorkers();
  const actions = useJobActions();
  const [confirmCancel, setConfirmCancel] = useState(false);
  const cancel = useAction(async () => {
    await actions.cancel(id);
    setConfirmCancel(false);
    await Promise.all([job.reload(), attempts.reload()]);
  });

  const j = job.data;
  const r = j?.request;
  const workerOf = (workerId: string): Worker | undefined => workers.data?.find((w) => w.id === workerId);
  const workerName = (workerId: string): string => workerOf(workerId)?.name ?? shortId(workerId);
  const back = () => navigate({ name: 'jobs', ...(isJobState(state) ? { state } : {}) });
  // The newest attempt first: the one people look at.
  const newestFirst = [...(attempts.data ?? [])].reverse();

  return (
    <Screen
      kicker="Job"
      title={j ? jobTitle(j) : 'Job'}
      subtitle={`${id}${j ? ` · queue ${j.queue} · priority ${j.priority}` : ''}`}
      actions={j ? <StatusBadge status={j.state} tone={jobTone(j.state)} testID="job-state" /> : null}
      testID="job-detail-screen"
    >
      <View style={s.top}>
        <Button label="← All jobs" size="small" variant="ghost" onPress={back} testID="job-back" />
        {isAdmin && j && !jobFinished(j) ? (
          <Button label="Cancel job" size="small" variant="danger" onPress={() => setConfirmCancel(true)} testID="job-cancel" />
        ) : null}
      </View>
      <ErrorBanner error={job.error} onRetry={() => void job.reload()} />
      {!j && !job.error ? <Spinner label="Loading the job…" /> : null}
      {j && r ? (
        <>
          {j.state === 'queued' ? (
            <InfoBanner testID="job-reason">
              {`Queued${j.reason ? `: ${j.reason}` : ', waiting for its turn'}${j.not_before ? ` (retried from ${dateTime(j.not_before)})` : ''}.`}
            </InfoBanner>
          ) : null}
          {j.state === 'failed' ? (
            <WarnBanner title="It failed" testID="job-reason">
              {j.reason ?? (j.exit_code != null ? `Its last attempt exited with code ${j.exit_code}.` : 'No reason was given.')}
            </WarnBanner>
          ) : null}
          <View style={s.columns}>
            <Card title="Request" style={s.column} testID="job-request">
              <View style={s.facts}>
                {r.command?.length ? <Fact label="Command" value={commandLine(r.command)} mono testID="job-command-line" /> : null}
                {r.image ? <Fact label="Image" value={r.image} mono /> : null}
                <Fact label="Driver" value={r.driver ?? '—'} testID="job-driver" />
                <Fact label="Timeout" value={r.timeout_secs != null ? `${duration(r.timeout_secs * 1000)} per attempt` : '—'} testID="job-timeout-value" />
                <Fact label="Retries" value={retryText(r)} testID="job-retry" />
                {r.resources ? (
                  <Fact label="Reserves" value={`${r.resources.cpu_millicores} millicores · ${r.resources.memory_mb} MB memory · ${r.resources.disk_mb} MB disk`} />
                ) : null}
                {r.env && Object.keys(r.env).length > 0 ? <Fact label="Environment" value={Object.keys(r.env).sort().join(', ')} mono /> : null}
                {j.idempotency_key ? <Fact label="Idempotency key" value={j.idempotency_key} mono /> : null}
              </View>
            </Card>
            <Card title="Progress" style={s.column} testID="job-progress">
              <View style={s.facts}>
                <Fact label="Submitted" value={`${dateTime(j.submitted_at)} by ${j.submitted_by}`} />
                <Fact label="Started" value={j.started_at ? dateTime(j.started_at) : 'not yet'} />
                <Fact label="Finished" value={j.finished_at ? `${dateTime(j.finished_at)}, ${between(j.started_at ?? j.submitted_at, j.finished_at)} after it started` : 'not yet'} />
                <Fact label="Attempts" value={`${j.attempts} of at most ${(r.retry?.max_retries ?? 0) + 1}`} testID="job-attempts" />
                <Fact label="Exit code" value={j.exit_code != null ? String(j.exit_code) : '—'} testID="job-exit-code" />
              </View>
            </Card>
          </View>
        </>
      ) : null}

      <Card title="Attempts" subtitle="The newest first; the conductor keeps the last 16 KiB of each stream" testID="job-attempts-card">
        <ErrorBanner error={attempts.error} onRetry={() => void attempts.reload()} />
        {!attempts.data && !attempts.error ? <Spinner label="Loading attempts…" /> : null}
        {attempts.data ? (
          <Table
            testID="job-attempts-table"
            data={newestFirst}
            keyOf={(a) => String(a.number)}
            empty={j?.state === 'cancelled' ? 'It was cancelled before it started.' : 'Not started yet.'}
            columns={[
              { key: 'number', title: '#', flex: 0.4, render: (a) => String(a.number) },
              {
                key: 'worker',
                title: 'Worker',
                flex: 1.2,
                render: (a) => (
                  <View>
                    <Text style={s.cell} numberOfLines={1}>
                      {workerName(a.worker_id)}
                    </Text>
                    <Text style={s.subMono}>{`${a.driver} · ${shortId(a.instance_id)}`}</Text>
                  </View>
                ),
              },
              { key: 'outcome', title: 'Outcome', flex: 1, render: (a) => <StatusBadge status={a.outcome} tone={outcomeTone(a)} testID={`attempt-outcome-${a.number}`} /> },
              {
                key: 'exit',
                title: 'Exit code',
                flex: 0.7,
                render: (a) => (
                  <Text style={a.exit_code == null || a.exit_code === 0 ? s.cell : s.failedCode} testID={`attempt-exit-${a.number}`}>
                    {a.exit_code == null ? '—' : String(a.exit_code)}
                  </Text>
                ),
              },
              { key: 'signal', title: 'Signal', flex: 0.6, render: (a) => (a.signal == null ? '—' : String(a.signal)) },
              {
                key: 'reason',
                title: 'Reason',
                flex: 2,
                render: (a) => (
                  <Text style={s.reason} numberOfLines={2}>
                    {a.reason ?? '—'}
                  </Text>
                ),
              },
              {
                key: 'when',
                title: 'Started · ran',
                flex: 1.4,
                render: (a) => (
                  <View>
                    <Text style={s.cell}>{dateTime(a.started_at)}</Text>
                    <Text style={s.sub}>{a.ended_at ? `ended after ${between(a.started_at, a.ended_at)}` : `running for ${between(a.started_at)}`}</Text>
                  </View>
                ),
              },
            ]}
          />
        ) : null}
        {newestFirst.length > 0 ? (
          <View style={s.outputs}>
            {newestFirst.map((a) => (
              <AttemptOutput key={a.number} attempt={a} worker={workerOf(a.worker_id)} workerName={workerName(a.worker_id)} />
            ))}
          </View>
        ) : null}
      </Card>

      {isAdmin && j ? (
        <ConfirmDialog
          visible={confirmCancel}
          testID="job-cancel-dialog"
          title={`Cancel ${jobTitle(j)}?`}
          message="A queued job never starts; a running attempt is stopped at once (SIGTERM to its processes, SIGKILL 5 s later). It is not retried."
          confirmLabel="Cancel the job"
          danger
          busy={cancel.running}
          onCancel={() => {
            setConfirmCancel(false);
            cancel.clear();
          }}
          onConfirm={() => void cancel.run()}
        >
          <ErrorBanner error={cancel.error} testID="job-cancel-error" />
        </ConfirmDialog>
      ) : null}
    </Screen>
  );
}

/** An attempt's stdout and stderr: the conductor's tails once it ended, its worker's live output while it runs. */
function AttemptOutput({ attempt, worker, workerName }: { attempt: JobAttempt; worker: Worker | undefined; workerName: string }) {
  const running = attempt.outcome === 'running';
  return (
    <View style={s.attemptOutput} testID={`attempt-output-${attempt.number}`}>
      <Text style={s.outputTitle}>{`Attempt ${attempt.number} · ${running ? `live from ${workerName}` : 'output'}`}</Text>
      {running ? (
        <>
          <LiveStream attempt={attempt} worker={worker} stream="stdout" />
          <LiveStream attempt={attempt} worker={worker} stream="stderr" />
        </>
      ) : (
        <>
          <Stream label="stdout" text={attempt.stdout_tail ?? ''} total={attempt.stdout_bytes} testID={`attempt-stdout-${attempt.number}`} />
          <Stream label="stderr" text={attempt.stderr_tail ?? ''} total={attempt.stderr_bytes} testID={`attempt-stderr-${attempt.number}`} />
        </>
      )}
    </View>
  );
}

/** One stream's text, saying when it is only the end of it. */
function Stream({ label, text, total, testID }: { label: string; text: string; total: number | undefined; testID: string }) {
  const shown = new TextEncoder().encode(text).length;
  const detail =
    total == null ? '' : total > shown ? `the last ${bytes(Math.min(shown, TAIL_BYTES))} of ${bytes(total)}` : total === 0 ? 'empty' : bytes(total);
  return (
    <View style={s.stream}>
      <View style={s.streamHeader}>
        <Text style={s.streamLabel}>{label}</Text>
        <Text style={s.streamDetail}>{detail}</Text>
      </View>
      {text ? (
        <CodeBlock text={text} testID={testID} />
      ) : (
        <Text style={s.empty} testID={testID}>
          (nothing)
        </Text>
      )}
    </View>
  );
}

/** The end of one stream of a running attempt, read from its worker every 2 s. */
function LiveStream({ attempt, worker, stream }: { attempt: JobAttempt; worker: Worker | undefined; stream: OutputStream }) {
  const live = useLiveOutput(worker, attempt, stream);
  const testID = `attempt-live-${stream}-${attempt.number}`;
  if (live.error) {
    return (
      <View style={s.stream}>
        <Text style={s.streamLabel}>{stream}</Text>
        <ErrorBanner error={live.error} testID={`${testID}-error`} />
      </View>
    );
  }
  if (!live.data) {
    return (
      <View style={s.stream}>
        <Text style={s.streamLabel}>{stream}</Text>
        {worker ? <Spinner label="Reading the output…" /> : <Text style={s.empty}>Looking for its worker…</Text>}
      </View>
    );
  }
  return <Stream label={stream} text={live.data.text} total={live.data.total} testID={testID} />;
}
