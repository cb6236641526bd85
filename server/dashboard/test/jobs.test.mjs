// The Jobs screen in headless Chromium against a real platform (`aerekos up`, whose local worker
// runs the jobs): an admin submits a job from the form, sees it succeed and its stdout tail; a
// running job's output is read live from its worker's API and an admin cancels it; an admin sets
// and removes a queue's limit; a viewer reads the same jobs with no submit, cancel or limit
// controls. Screenshotted into docs/screenshots/jobs.png.
//
// Run: npm test (AEREKOS_BIN names the executable; default ../../target/debug/aerekos).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { login, unwrap } from '@aerekos/sdk';

import { ADMIN_PASSWORD, BIN, VIEWER, eventually, screenshot, staleBundleFiles, startBrowser, startPlatform } from './support.mjs';

let platform;
let browser;
let page;
/** The conductor through the SDK, as the admin: to check what the page did. */
let conductor;
/** The requests the page sent to the worker's own API, as URLs. */
const workerReads = [];

// Markers no page would show by chance.
const LIVE = `live-${randomBytes(6).toString('hex')}`;
/** The job submitted from the form, and the long one cancelled. */
let helloId;
let sleeperId;

before(async () => {
  platform = await startPlatform();
  try {
    browser = await startBrowser();
  } catch (e) {
    await platform.stop();
    throw e;
  }
  // The executable embeds dist/ when it is compiled: one built before the last `npm run build`
  // serves an older dashboard, without this screen.
  const stale = await staleBundleFiles(platform.url);
  if (stale.length > 0) {
    await browser.close();
    await platform.stop();
    throw new Error(`${BIN} serves an older dashboard than dist/ (${stale.join(', ')} differ): rebuild it (cargo build -p aerekos)`);
  }
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.setDefaultTimeout(15_000);
  page.on('request', (r) => {
    if (r.url().startsWith(`${platform.workerUrl}/`)) workerReads.push(r.url());
  });
  ({ client: conductor } = await login(platform.url, 'admin', ADMIN_PASSWORD));
  // Jobs need a live worker: `up`'s own.
  await eventually('the local worker live', 60_000, async () => (await unwrap(conductor.GET('/api/workers'))).workers.some((w) => w.status === 'live'));
});

after(async () => {
  // A job left running would keep its process until the platform stops; cancel it first.
  if (sleeperId) await unwrap(conductor.POST('/api/jobs/{id}/cancel', { params: { path: { id: sleeperId } } })).catch(() => {});
  await browser?.close();
  await platform?.stop();
});

const byTestId = (id) => page.getByTestId(id);
const dialog = () => page.getByRole('alertdialog');
/** A StatusBadge's status (its text is upper-cased by CSS; its label is not). */
const badge = async (id) => (await byTestId(id).getAttribute('aria-label'))?.replace(/^status /, '');
const jobOf = (id) => unwrap(conductor.GET('/api/jobs/{id}', { params: { path: { id } } }));
const jobIdInAddress = () => /^\/jobs\/([0-9a-f-]{36})$/.exec(new URL(page.url()).pathname)?.[1];

async function signIn(username, password) {
  await page.goto(`${platform.url}/`);
  await byTestId('login-username').fill(username);
  await byTestId('login-password').fill(password);
  await byTestId('login-submit').click();
  await byTestId('overview-screen').waitFor();
}

describe('jobs', { concurrency: false }, () => {
  test('an admin submits a job from the form; it succeeds and its stdout tail is shown', async () => {
    await signIn('admin', ADMIN_PASSWORD);
    await byTestId('nav-jobs').click();
    await byTestId('jobs-screen').waitFor();
    await byTestId('jobs-table').waitFor();

    // A command that does not split is refused before anything is sent.
    await byTestId('job-command').fill("echo 'unfinished");
    await byTestId('job-submit').click();
    await byTestId('job-submit-error').waitFor();
    assert.match(await byTestId('job-submit-error').innerText(), /unfinished single quote/);
    assert.equal((await unwrap(conductor.GET('/api/jobs'))).jobs.length, 0);

    await byTestId('job-command').fill('echo hello-from-dashboard');
    // The command is shown as the list of arguments it is sent as.
    assert.deepEqual(await byTestId('job-argv').locator('[data-testid^="job-arg-"]').allInnerTexts(), ['echo', 'hello-from-dashboard']);
    await byTestId('job-submit').click();

    helloId = await eventually('the new job open', 10_000, async () => jobIdInAddress());
    await byTestId('job-detail-screen').waitFor();
    await eventually('the job to succeed on the page', 60_000, async () => (await badge('job-state')) === 'succeeded');
    await byTestId('attempt-stdout-1').waitFor();
    assert.equal((await byTestId('attempt-stdout-1').innerText()).trim(), 'hello-from-dashboard');
    assert.equal((await byTestId('attempt-stderr-1').innerText()).trim(), '(nothing)');
    assert.equal(await badge('attempt-outcome-1'), 'exited');
    assert.equal((await byTestId('attempt-exit-1').innerText()).trim(), '0');
    assert.equal((await byTestId('job-exit-code').innerText()).trim(), '0');
    assert.equal((await byTestId('job-command-line').innerText()).trim(), 'echo hello-from-dashboard');
    assert.equal((await byTestId('job-driver').innerText()).trim(), 'process');
    assert.equal((await byTestId('job-retry').innerText()).trim(), 'never retried');
    assert.equal((await byTestId('job-timeout-value').innerText()).trim(), '1 h per attempt');
    assert.equal(await byTestId('job-cancel').count(), 0, 'a finished job cannot be cancelled');

    // What the form sent, as the conductor has it.
    const job = await jobOf(helloId);
    assert.equal(job.state, 'succeeded');
    assert.deepEqual(job.request.command, ['echo', 'hello-from-dashboard']);
    assert.equal(job.priority, 50);
    assert.equal(job.queue, 'default');
    assert.equal(job.request.timeout_secs, 3600);
    assert.equal(job.submitted_by, 'admin');
    assert.match(job.idempotency_key ?? '', /^[0-9a-f]{32}$/, 'the form sends an idempotency key');
    const attempts = await unwrap(conductor.GET('/api/jobs/{id}/attempts', { params: { path: { id: helloId } } }));
    assert.equal(attempts.length, 1);
    assert.equal(attempts[0].stdout_tail, 'hello-from-dashboard\n');
    // An ended attempt's output is the conductor's tails: its worker is asked no more.
    const reads = workerReads.length;
    await page.waitForTimeout(2500);
    assert.equal(workerReads.length, reads, 'no live reads once the attempt ended');
    await screenshot(page, 'jobs');

    // The list: the job, its state; the state filter is kept in the address.
    await byTestId('job-back').click();
    await byTestId('jobs-table').waitFor();
    await byTestId(`job-row-${helloId}`).waitFor();
    assert.equal(await badge(`job-state-${helloId}`), 'succeeded');
    await byTestId('jobs-filter-failed').click();
    await eventually('the failed filter in the address', 5_000, async () => new URL(page.url()).search === '?state=failed');
    await byTestId('jobs-table').getByText('No failed job.').waitFor();
    assert.equal(await byTestId(`job-row-${helloId}`).count(), 0);
    await byTestId('jobs-filter-succeeded').click();
    await byTestId(`job-row-${helloId}`).waitFor();
    await byTestId('jobs-filter-all').click();
    await eventually('no filter in the address', 5_000, async () => new URL(page.url()).search === '');
  });

  test("a running attempt's output is read live from its worker; an admin cancels the job", async () => {
    await byTestId('job-command').fill(`sh -c 'echo ${LIVE}; sleep 120'`);
    assert.deepEqual(await byTestId('job-argv').locator('[data-testid^="job-arg-"]').allInnerTexts(), ['sh', '-c', `echo ${LIVE}; sleep 120`]);
    await byTestId('job-name').fill('sleeper');
    await byTestId('job-priority').fill('70');
    await byTestId('job-retries').fill('2');
    await byTestId('job-queue').fill('batch');
    await byTestId('job-submit').click();

    sleeperId = await eventually('the new job open', 10_000, async () => jobIdInAddress());
    await eventually('the job running on the page', 60_000, async () => (await badge('job-state')) === 'running');
    await byTestId('attempt-live-stdout-1').waitFor({ timeout: 30_000 });
    await eventually('the live stdout', 15_000, async () => (await byTestId('attempt-live-stdout-1').innerText()).includes(LIVE));
    const { last_attempt: running } = await jobOf(sleeperId);
    assert.ok(
      workerReads.some((u) => u.startsWith(`${platform.workerUrl}/api/worker/instances/${running.instance_id}/output?`) && u.includes('stream=stdout')),
      `read from the worker's API: ${workerReads.join(', ')}`,
    );
    assert.match(await byTestId('job-retry').innerText(), /^up to 2 retries on any failure/);

    await byTestId('job-cancel').click();
    await dialog().getByRole('button', { name: 'Cancel the job' }).click();
    await dialog().waitFor({ state: 'detached' });
    await eventually('the job cancelled on the page', 30_000, async () => (await badge('job-state')) === 'cancelled');
    await eventually('its attempt cancelled', 30_000, async () => (await badge('attempt-outcome-1')) === 'cancelled');
    assert.equal(await byTestId('job-cancel').count(), 0);
    const job = await jobOf(sleeperId);
    assert.equal(job.state, 'cancelled');
    assert.equal(job.attempts, 1, 'a cancelled job is not retried');
    assert.equal(job.priority, 70);
    assert.equal(job.queue, 'batch');
    assert.equal(job.name, 'sleeper');
    assert.deepEqual(job.request.command, ['sh', '-c', `echo ${LIVE}; sleep 120`]);
  });

  test("an admin sets and removes a queue's limit", async () => {
    await byTestId('job-back').click();
    await byTestId('job-queues').waitFor();
    await byTestId('queue-name').fill('batch');
    await byTestId('queue-limit').fill('2');
    await byTestId('queue-set').click();
    await byTestId('queue-limit-batch').waitFor();
    assert.equal((await byTestId('queue-limit-batch').innerText()).trim(), '2');
    let queues = await unwrap(conductor.GET('/api/job-queues'));
    assert.equal(queues.find((q) => q.name === 'batch')?.concurrency_limit, 2);

    // A limit out of bounds is refused before it is sent.
    await byTestId('queue-name').fill('batch');
    await byTestId('queue-limit').fill('0');
    await byTestId('queue-set').click();
    await byTestId('queue-error').waitFor();
    assert.match(await byTestId('queue-error').innerText(), /1 to 10000/);

    await byTestId('queue-remove-batch').click();
    // No job waits or runs in it any more: without its setting it is not listed.
    await byTestId('queue-row-batch').waitFor({ state: 'detached' });
    queues = await unwrap(conductor.GET('/api/job-queues'));
    assert.equal(queues.find((q) => q.name === 'batch'), undefined);
  });

  test('a viewer reads jobs and their output, with no submit, cancel or limit controls', async () => {
    // A job still running, to show the viewer has no Cancel on it.
    const running = await unwrap(conductor.POST('/api/jobs', { body: { command: ['sleep', '120'], name: 'viewer-sees-me' } }));
    sleeperId = running.id;
    await byTestId('sign-out').click();
    await byTestId('login-screen').waitFor();
    await signIn(VIEWER.username, VIEWER.password);
    await byTestId('nav-jobs').click();
    await byTestId(`job-row-${helloId}`).waitFor();
    await byTestId('job-queues').waitFor();
    for (const id of ['job-submit-card', 'job-command', 'job-submit', 'queue-name', 'queue-set']) {
      assert.equal(await byTestId(id).count(), 0, `${id} hidden from viewers`);
    }
    await byTestId(`job-row-${helloId}`).click();
    await byTestId('attempt-stdout-1').waitFor();
    assert.equal((await byTestId('attempt-stdout-1').innerText()).trim(), 'hello-from-dashboard');

    await page.goto(`${platform.url}/jobs/${running.id}`);
    await eventually('the job running on the page', 60_000, async () => (await badge('job-state')) === 'running');
    assert.equal(await byTestId('job-cancel').count(), 0, 'no Cancel for viewers');
    await unwrap(conductor.POST('/api/jobs/{id}/cancel', { params: { path: { id: running.id } } }));
    await eventually('the job cancelled on the page', 30_000, async () => (await badge('job-state')) === 'cancelled');
  });
});
