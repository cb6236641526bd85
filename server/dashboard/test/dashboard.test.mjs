// The dashboard in headless Chromium against a real platform (`aerekos up`): each screen is used
// as a person would, and screenshotted into docs/screenshots/.
//
// Run: npm test (AEREKOS_BIN names the executable; default ../../target/debug/aerekos).

import assert from 'node:assert/strict';
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ADMIN_PASSWORD, BIN, VIEWER, eventually, screenshot, staleBundleFiles, startBrowser, startPlatform } from './support.mjs';

let platform;
let browser;
let page;

/** Whether the platform has storage_manager in its catalog (it is being built alongside). */
let storageAvailable = false;

before(async () => {
  platform = await startPlatform();
  try {
    browser = await startBrowser();
  } catch (e) {
    await platform.stop();
    throw e;
  }
  // The executable embeds dist/ when it is compiled: one built before the last `npm run build`
  // serves an older dashboard, and the tests of newer screens would fail for no reason of theirs.
  const stale = await staleBundleFiles(platform.url);
  if (stale.length > 0) {
    await browser.close();
    await platform.stop();
    throw new Error(`${BIN} serves an older dashboard than dist/ (${stale.join(', ')} differ): rebuild it (cargo build -p aerekos)`);
  }
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.setDefaultTimeout(15_000);
});

after(async () => {
  // Always: the browser closes and the platform gets its Ctrl-C, whatever failed.
  await browser?.close();
  await platform?.stop();
});

const byTestId = (id) => page.getByTestId(id);
/** The row of table `tableId` whose first cell names `name` exactly. */
const serviceRow = (tableId, name) => byTestId(tableId).getByRole('row').filter({ has: page.getByText(name, { exact: true }) });
const dialog = () => page.getByRole('alertdialog');

/** The signed-in page's bearer token, for a request made beside the page. */
async function authHeader() {
  const session = await page.evaluate(() => JSON.parse(sessionStorage.getItem('aerekos.session')));
  return { authorization: `Bearer ${session.token}` };
}

async function signIn(username, password) {
  await page.goto(`${platform.url}/`);
  await byTestId('login-username').fill(username);
  await byTestId('login-password').fill(password);
  await byTestId('login-submit').click();
  await byTestId('overview-screen').waitFor();
}

describe('dashboard', { concurrency: false }, () => {
  test('the conductor serves the dashboard at / and its routes, the API as before', async () => {
    const root = await fetch(`${platform.url}/`);
    assert.equal(root.status, 200);
    assert.match(root.headers.get('content-type') ?? '', /text\/html/);
    const html = await root.text();
    assert.match(html, /<div id="root">/);
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html);
    assert.ok(script, html);
    const js = await fetch(`${platform.url}${script[1]}`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    // A client route is the app too; /api and the API's own paths are untouched.
    const deep = await fetch(`${platform.url}/workers/some-id`);
    assert.equal(deep.status, 200);
    assert.match(await deep.text(), /<div id="root">/);
    const missing = await fetch(`${platform.url}/api/no-such-thing`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).code, 'not_found');
    assert.equal((await fetch(`${platform.url}/health`)).status, 200);
    assert.match(await (await fetch(`${platform.url}/docs`)).text(), /swagger/i);
    const services = await fetch(`${platform.url}/api/services`);
    assert.equal(services.status, 401);
  });

  test('a wrong password shows a clear error', async () => {
    await page.goto(`${platform.url}/`);
    await byTestId('login-screen').waitFor();
    assert.equal(new URL(page.url()).pathname, '/login');
    await byTestId('login-username').fill('admin');
    await byTestId('login-password').fill('not-the-password');
    await byTestId('login-submit').click();
    await byTestId('login-error').waitFor();
    assert.match(await byTestId('login-error').innerText(), /Wrong username or password/);
    await screenshot(page, 'login');
  });

  test('signing in shows the overview with live workers, services and resource charts', async () => {
    await byTestId('login-password').fill(ADMIN_PASSWORD);
    await byTestId('login-submit').click();
    await byTestId('overview-screen').waitFor();
    assert.equal(new URL(page.url()).pathname, '/');
    const token = await page.evaluate(() => sessionStorage.getItem('aerekos.session'));
    assert.ok(token && JSON.parse(token).token, 'the token is kept in sessionStorage');
    await eventually('one live worker on the overview', 20_000, async () => /1 live/.test(await byTestId('stat-workers').innerText()));
    await byTestId('stat-cpu').waitFor();
    // key_manager, deployed by `up`, turns healthy.
    await eventually('key_manager healthy on the overview', 60_000, async () => /healthy/i.test(await serviceRow('overview-services', 'key_manager').innerText()));
    assert.match(await byTestId('stat-services').innerText(), /[1-9]\d* healthy/);
    // The charts are metrics_manager's history (it scrapes every 10 s, once it is up); the overview
    // is screenshotted at the end of the admin's session, when they have more of their bars.
    await eventually('a point in the CPU chart', 60_000, async () => /\d%/.test(await byTestId('chart-cpu').innerText()));
  });

  test('workers: the local worker is listed, and its detail shows resources, drivers, instances', async () => {
    await byTestId('nav-workers').click();
    await byTestId('workers-table').waitFor();
    const row = byTestId('workers-table').getByRole('row').filter({ hasText: 'local' });
    await row.waitFor();
    assert.match(await row.innerText(), /live/i);
    assert.match(await row.innerText(), /process/);
    await screenshot(page, 'workers');
    await row.click();
    await byTestId('worker-detail-screen').waitFor();
    assert.match(await byTestId('worker-status').innerText(), /live/i);
    assert.match(await byTestId('worker-drivers').innerText(), /process/);
    // A driver the worker cannot offer is named with why (here the microvm driver: no static
    // guest agent beside the test build).
    assert.match(await byTestId('worker-drivers-unavailable').innerText(), /microvm: not offered \(.+\)/);
    await eventually('key_manager among the worker\'s instances', 20_000, async () => /key_manager/.test(await byTestId('worker-instances').innerText()));
    await screenshot(page, 'worker-detail');
  });

  test('services: enable a service and watch it turn healthy; disable; deploy with replicas; read its logs', async () => {
    await byTestId('nav-services').click();
    await byTestId('services-table').waitFor();
    await serviceRow('services-table', 'key_manager').waitFor();
    storageAvailable = (await serviceRow('services-table', 'storage_manager').count()) > 0;
    // The service to turn off and on: storage_manager where it exists (nothing depends on it),
    // else key_manager.
    const target = storageAvailable ? 'storage_manager' : 'key_manager';

    if (storageAvailable) {
      // key_manager cannot be disabled while storage_manager needs it: the refusal is shown.
      await serviceRow('services-table', 'key_manager').click();
      await eventually('key_manager healthy', 60_000, async () => (await byTestId('service-healthy').innerText()).trim() === '1 / 1');
      await byTestId('service-disable').click();
      await dialog().getByRole('button', { name: 'Disable' }).click();
      await byTestId('service-action-error').waitFor();
      assert.match(await byTestId('service-action-error').innerText(), /storage_manager/);
      assert.match(await byTestId('service-enabled').innerText(), /enabled/i);
    }

    await serviceRow('services-table', target).click();
    await byTestId('service-detail').waitFor();
    assert.equal(new URL(page.url()).pathname, `/services/${target}`);
    await eventually(`${target} healthy`, 90_000, async () => (await byTestId('service-healthy').innerText()).trim() === '1 / 1');

    await byTestId('service-disable').click();
    await dialog().getByRole('button', { name: 'Disable' }).click();
    await eventually(`${target} disabled`, 20_000, async () => /disabled/i.test(await byTestId('service-enabled').innerText()));
    await eventually('no instance left', 30_000, async () => /Disabled: nothing runs/.test(await byTestId('service-instances').innerText()));
    await eventually('the catalog to say disabled', 10_000, async () => /disabled/i.test(await byTestId(`service-state-${target}`).innerText()));

    await byTestId('service-enable').click();
    await eventually(`${target} enabled`, 20_000, async () => /enabled/i.test(await byTestId('service-enabled').innerText()));
    await eventually(`${target} healthy again`, 90_000, async () => (await byTestId('service-healthy').innerText()).trim() === '1 / 1');
    await eventually('the instance shows healthy', 10_000, async () => /healthy/i.test(await byTestId('service-instances').innerText()));

    // Deploy with replicas. The platform's services are stateful (one replica at most): asking
    // for two is refused with a message; 0 stops the instance (the service stays enabled), 1
    // brings it back.
    await byTestId('service-replicas').fill('2');
    await byTestId('service-deploy').click();
    await byTestId('service-action-error').waitFor();
    assert.ok((await byTestId('service-action-error').innerText()).trim().length > 0);
    await byTestId('service-replicas').fill('0');
    await byTestId('service-deploy').click();
    await eventually('zero replicas', 30_000, async () => (await byTestId('service-healthy').innerText()).trim() === '0 / 0');
    await eventually('its instance gone', 30_000, async () => /No instance yet/.test(await byTestId('service-instances').innerText()));
    await byTestId('service-replicas').fill('1');
    await byTestId('service-deploy').click();
    await eventually('one healthy replica again', 90_000, async () => (await byTestId('service-healthy').innerText()).trim() === '1 / 1');
    await eventually('the state healthy in the catalog', 10_000, async () => /healthy/i.test(await byTestId(`service-state-${target}`).innerText()));

    // The instance's recent output, read from the worker's own API.
    await byTestId('service-instances').getByRole('button', { name: 'Logs' }).first().click();
    await eventually('the instance output', 20_000, async () => (await byTestId('instance-logs-text').innerText()).trim().length > 0);
    await screenshot(page, 'services');
  });

  test('volumes: key_manager and storage_manager on the local worker with a size; with one worker there is nowhere to move', async () => {
    await byTestId('nav-volumes').click();
    await byTestId('volumes-screen').waitFor();
    assert.equal(new URL(page.url()).pathname, '/volumes');
    await byTestId('volumes-table').waitFor();
    const names = storageAvailable ? ['key_manager', 'storage_manager'] : ['key_manager'];
    for (const name of names) {
      const row = serviceRow('volumes-table', name);
      await row.waitFor();
      // The worker reports the size with its heartbeats.
      await eventually(`${name}'s size`, 30_000, async () => /^\d+(\.\d)? (B|KiB|MiB|GiB)$/.test((await byTestId(`volume-size-${name}`).innerText()).trim()));
      const holder = await byTestId(`volume-worker-${name}`).innerText();
      assert.match(holder, /local/);
      assert.match(holder, /live/i);
      assert.match(await row.innerText(), /never/, 'no backup yet');
      assert.ok(await byTestId(`volume-move-${name}`).isEnabled());
      assert.ok(await byTestId(`volume-backup-${name}`).isEnabled());
      assert.equal(await byTestId(`volume-holder-lost-${name}`).count(), 0, 'its holder is live');
    }
    assert.match(await byTestId('moves-table').innerText(), /No service has been moved yet/);

    // The move dialog explains the move; with `aerekos up`'s one worker there is no target.
    await byTestId('volume-move-key_manager').click();
    await dialog().waitFor();
    assert.match(await dialog().innerText(), /copied straight to the chosen worker/);
    await byTestId('move-no-target').waitFor();
    assert.match(await byTestId('move-no-target').innerText(), /no other live worker to move to/);
    assert.equal(await byTestId('move-targets').count(), 0);
    assert.equal(await dialog().getByRole('button', { name: 'Move', exact: true }).getAttribute('aria-disabled'), 'true');
    await dialog().getByRole('button', { name: 'Cancel' }).click();
    await dialog().waitFor({ state: 'detached' });
  });

  test('volumes: an admin backs key_manager up now and follows it to done; with one worker there is nowhere to restore it onto', async () => {
    await byTestId('nav-volumes').click();
    await byTestId('volumes-table').waitFor();
    // Refused (4xx, stubbed once: a scheduled backup under way): the conductor's message.
    await page.route(
      (u) => u.pathname === '/api/volumes/key_manager/backups',
      (route) => route.fulfill({ status: 409, json: { code: 'backup_running', message: 'a backup of key_manager is under way (stubbed)', request_id: 'stub-request' } }),
      { times: 1 },
    );
    await byTestId('volume-backup-key_manager').click();
    // Backing up shows the volume's backups.
    await byTestId('backups-card').waitFor();
    assert.equal(new URL(page.url()).pathname, '/volumes/key_manager');
    await byTestId('backup-error').waitFor();
    assert.match(await byTestId('backup-error').innerText(), /a backup of key_manager is under way \(stubbed\)/);
    assert.match(await byTestId('backups-table').innerText(), /No backup of key_manager yet/);

    // The real one: followed, one poll a second, to done.
    await byTestId('volume-backup-key_manager').click();
    await byTestId('backup-error').waitFor({ state: 'detached' });
    await eventually('the backup done', 60_000, async () => (await byTestId('backup-done').count()) > 0);
    const done = await byTestId('backup-done').innerText();
    assert.match(done, /Backed up key_manager: [1-9]\d* files/);
    // With `aerekos up`'s one worker the backup is kept on the worker holding the volume.
    assert.match(done, /kept on local/);
    assert.match(done, /no other live worker/);
    const [latest] = await (await page.request.get(`${platform.url}/api/backups?volume=key_manager`, { headers: await authHeader() })).json();
    assert.equal(latest.state, 'done');
    assert.match(await byTestId(`backup-state-${latest.id}`).innerText(), /done/i);
    assert.ok(Number((await byTestId(`backup-files-${latest.id}`).innerText()).trim()) > 0, 'files in the backup');
    assert.match(await byTestId(`backup-store-${latest.id}`).innerText(), /local/);
    assert.equal(await byTestId(`backup-error-${latest.id}`).count(), 0);
    await eventually('the volume\'s last backup', 10_000, async () => /s ago|min ago/.test(await byTestId('volume-last-backup-key_manager').innerText()));
    assert.equal(await byTestId('volume-backup-key_manager').innerText(), 'Back up now');

    // Restore… explains what happens; the only live worker holds the current copy: no target.
    await byTestId(`backup-restore-${latest.id}`).click();
    await dialog().waitFor();
    const text = await dialog().innerText();
    assert.match(text, /started on the chosen worker with the data of this backup/);
    assert.match(text, /its current copy, if its worker is still there, is kept unused/);
    assert.match(await byTestId('restore-backup').innerText(), new RegExp(`Backup ${latest.id.slice(0, 8)}`));
    await byTestId('restore-no-target').waitFor();
    assert.match(await byTestId('restore-no-target').innerText(), /no other live worker to restore onto/);
    assert.equal(await byTestId('restore-targets').count(), 0);
    assert.equal(await dialog().getByRole('button', { name: 'Restore', exact: true }).getAttribute('aria-disabled'), 'true');
    await dialog().getByRole('button', { name: 'Cancel' }).click();
    await dialog().waitFor({ state: 'detached' });
    await screenshot(page, 'volumes');
  });

  test('volumes: a move followed step by step to done, a failed one, a refused one (move answers stubbed in the browser)', async () => {
    // One worker cannot move anything, so the conductor's answers for a second worker and its
    // moves are stubbed in the browser; the volumes and the rest of the API are the real ones.
    const local = (await (await page.request.get(`${platform.url}/api/volumes`, { headers: await authHeader() })).json()).find((v) => v.name === 'key_manager');
    const now = new Date().toISOString();
    const w2 = { id: '00000000-0000-4000-8000-0000000000b2', name: 'second-worker', hostname: 'second', ip_address: '127.0.0.2', status: 'live' };
    const move = (id, state, bytes_copied, error) => ({
      id, service: 'key_manager', volume: 'key_manager', source_worker_id: local.worker_id, target_worker_id: w2.id,
      state, bytes_copied, ...(error ? { error } : {}), created_at: now, updated_at: now,
    });
    const okId = '00000000-0000-4000-8000-00000000000a';
    const failId = '00000000-0000-4000-8000-00000000000f';
    const steps = {
      [okId]: [move(okId, 'copying', 4096), move(okId, 'copying', 65536), move(okId, 'starting', 98741), move(okId, 'cleaning', 98741), move(okId, 'done', 98741)],
      [failId]: [move(failId, 'copying', 1024), move(failId, 'failed', 1024, 'the checksum of the copy did not match')],
    };
    const moveAnswers = [
      { status: 409, json: { code: 'conflict', message: 'stubbed refusal: second-worker has no room for key_manager', request_id: 'stub-request' } },
      { status: 200, json: move(okId, 'stopping', 0) },
      { status: 200, json: move(failId, 'stopping', 0) },
    ];
    await page.route((u) => u.pathname === '/api/workers', async (route) => {
      const real = await (await route.fetch()).json();
      const template = real.workers[0];
      real.workers.push({ ...template, ...w2, resources: { ...template.resources } });
      await route.fulfill({ json: real });
    });
    await page.route((u) => u.pathname === '/api/services/key_manager/move', async (route) => {
      const answer = moveAnswers.shift();
      await route.fulfill({ status: answer.status, json: answer.json });
    });
    await page.route((u) => u.pathname.startsWith('/api/moves/'), async (route) => {
      const id = new URL(route.request().url()).pathname.split('/').pop();
      const list = steps[id];
      await route.fulfill({ json: list.length > 1 ? list.shift() : list[0] });
    });
    try {
      await page.reload();
      await byTestId('volumes-table').waitFor();
      const pickSecond = async () => {
        await byTestId('volume-move-key_manager').click();
        await dialog().waitFor();
        await byTestId('move-target-second-worker').click();
        assert.equal(await byTestId('move-target-second-worker').getAttribute('aria-checked'), 'true');
        assert.equal(await byTestId('move-target-local').count(), 0, 'the holder is no target');
        await dialog().getByRole('button', { name: 'Move', exact: true }).click();
      };

      // Refused (4xx): the conductor's message in the dialog, which stays open.
      await pickSecond();
      await byTestId('move-error').waitFor();
      assert.match(await byTestId('move-error').innerText(), /stubbed refusal: second-worker has no room/);
      await dialog().getByRole('button', { name: 'Move', exact: true }).click();

      // Accepted: the dialog closes and the move is followed, one poll a second, to the end.
      await dialog().waitFor({ state: 'detached' });
      await byTestId('move-progress').waitFor();
      assert.match(await byTestId('move-progress').innerText(), /local → second-worker/);
      assert.match(await byTestId('volume-move-key_manager').innerText(), /Moving/);
      assert.equal(await byTestId('volume-move-key_manager').getAttribute('aria-disabled'), 'true');
      await eventually('the copying step', 10_000, async () => /Copying its data/.test(await byTestId('move-step').innerText()));
      await eventually('64 KiB copied', 10_000, async () => /64\.0 KiB/.test(await byTestId('move-bytes').innerText()));
      await eventually('the move done', 15_000, async () => (await byTestId('move-done').count()) > 0);
      assert.match(await byTestId('move-done').innerText(), /key_manager now runs on second-worker/);
      assert.match(await byTestId('move-state').innerText(), /done/i);
      await byTestId('move-dismiss').click();
      await byTestId('move-progress').waitFor({ state: 'detached' });

      // Failed: the error, and that the service stays where it was.
      await pickSecond();
      await byTestId('move-progress').waitFor();
      await eventually('the move failed', 15_000, async () => (await byTestId('move-failed').count()) > 0);
      assert.match(await byTestId('move-progress').innerText(), /Moving key_manager failed/i);
      const failed = await byTestId('move-failed').innerText();
      assert.match(failed, /the checksum of the copy did not match/);
      assert.match(failed, /stays on its old worker, local/);
      await byTestId('move-dismiss').click();
    } finally {
      await page.unrouteAll({ behavior: 'wait' });
    }
  });

  test('volumes: a restore from a backup followed to done, a refused one; the moves list names the backup (restore answers stubbed in the browser)', async () => {
    // As for moves, a second worker is stubbed into the workers list; the restore and its steps
    // are stubbed too; the backup is the real one made above.
    const headers = await authHeader();
    const local = (await (await page.request.get(`${platform.url}/api/volumes`, { headers })).json()).find((v) => v.name === 'key_manager');
    const [backup] = await (await page.request.get(`${platform.url}/api/backups?volume=key_manager`, { headers })).json();
    assert.equal(backup?.state, 'done', 'the backup made above');
    const short = backup.id.slice(0, 8);
    const now = new Date().toISOString();
    const w2 = { id: '00000000-0000-4000-8000-0000000000b2', name: 'second-worker', hostname: 'second', ip_address: '127.0.0.2', status: 'live' };
    const restoreId = '00000000-0000-4000-8000-0000000000e5';
    const restore = (state, bytes_copied) => ({
      id: restoreId, service: 'key_manager', volume: 'key_manager', source_worker_id: local.worker_id, target_worker_id: w2.id,
      state, bytes_copied, backup_id: backup.id, created_at: now, updated_at: now,
    });
    const steps = [restore('copying', 4096), restore('copying', 8192), restore('starting', backup.bytes), restore('done', backup.bytes)];
    let begun = false;
    const answers = [
      { status: 409, json: { code: 'restore_over_current_copy', message: "worker second-worker holds key_manager's current data; restore onto another worker (the current copy is kept) (stubbed)", request_id: 'stub-request' } },
      { status: 200, json: restore('stopping', 0) },
    ];
    await page.route((u) => u.pathname === '/api/workers', async (route) => {
      const real = await (await route.fetch()).json();
      const template = real.workers[0];
      real.workers.push({ ...template, ...w2, resources: { ...template.resources } });
      await route.fulfill({ json: real });
    });
    await page.route((u) => u.pathname === '/api/services/key_manager/restore', async (route) => {
      assert.deepEqual(route.request().postDataJSON(), { backup_id: backup.id, worker_id: w2.id });
      const answer = answers.shift();
      begun = answer.status === 200;
      await route.fulfill({ status: answer.status, json: answer.json });
    });
    await page.route((u) => u.pathname === `/api/moves/${restoreId}`, (route) => route.fulfill({ json: steps.length > 1 ? steps.shift() : steps[0] }));
    await page.route((u) => u.pathname === '/api/moves', (route) => route.fulfill({ json: begun ? [steps[0]] : [] }));
    try {
      await page.goto(`${platform.url}/volumes/key_manager`);
      await byTestId('backups-table').waitFor();
      await byTestId(`backup-restore-${backup.id}`).click();
      await dialog().waitFor();
      await byTestId('restore-target-second-worker').click();
      assert.equal(await byTestId('restore-target-second-worker').getAttribute('aria-checked'), 'true');
      assert.equal(await byTestId('restore-target-local').count(), 0, 'the worker with the current copy is no target');

      // Refused (409 restore_over_current_copy): the conductor's message in the dialog, which stays open.
      await dialog().getByRole('button', { name: 'Restore', exact: true }).click();
      await byTestId('restore-error').waitFor();
      assert.match(await byTestId('restore-error').innerText(), /holds key_manager's current data; restore onto another worker/);

      // Accepted: followed like a move, in the same progress view, without a clean-up step.
      await dialog().getByRole('button', { name: 'Restore', exact: true }).click();
      await dialog().waitFor({ state: 'detached' });
      await byTestId('move-progress').waitFor();
      const progress = await byTestId('move-progress').innerText();
      assert.match(progress, /Restoring key_manager/i);
      assert.match(progress, new RegExp(`backup ${short} \\(kept on local\\) → second-worker`));
      assert.doesNotMatch(progress, /clean up/i);
      assert.equal(await byTestId(`backup-restore-${backup.id}`).getAttribute('aria-disabled'), 'true', 'no second restore while one runs');
      assert.equal(await byTestId('volume-move-key_manager').innerText(), 'Restoring…');
      await eventually('the copying step', 10_000, async () => /Copying the backup’s data/.test(await byTestId('move-step').innerText()));
      await eventually('the restore done', 15_000, async () => (await byTestId('move-done').count()) > 0);
      const done = await byTestId('move-done').innerText();
      assert.match(done, new RegExp(`key_manager now runs on second-worker with the data of backup ${short}`));
      assert.match(done, /its old copy on local, if that worker is still there, is kept unused/);
      assert.match(await byTestId('move-state').innerText(), /done/i);
      // The moves list says where the data came from.
      await eventually('the restore in the moves list', 10_000, async () => (await byTestId(`move-restore-${restoreId}`).count()) > 0);
      assert.equal((await byTestId(`move-restore-${restoreId}`).innerText()).trim(), `restore from backup ${short}`);
      await byTestId('move-dismiss').click();
      await byTestId('move-progress').waitFor({ state: 'detached' });
    } finally {
      await page.unrouteAll({ behavior: 'wait' });
    }
  });

  test('volumes: a volume whose worker is lost says to restore it from a backup, onto any live worker (answers stubbed in the browser)', async () => {
    // key_manager's volume as if held by a worker that is lost (gone-worker); local stays live.
    const gone = { id: '00000000-0000-4000-8000-0000000000c3', name: 'gone-worker', hostname: 'gone', ip_address: '127.0.0.3', status: 'lost' };
    await page.route((u) => u.pathname === '/api/workers', async (route) => {
      const real = await (await route.fetch()).json();
      const template = real.workers[0];
      real.workers.push({ ...template, ...gone, resources: { ...template.resources } });
      await route.fulfill({ json: real });
    });
    await page.route((u) => u.pathname === '/api/volumes', async (route) => {
      const real = await (await route.fetch()).json();
      await route.fulfill({ json: real.map((v) => (v.name === 'key_manager' ? { ...v, worker_id: gone.id, worker_name: gone.name, worker_status: 'lost' } : v)) });
    });
    try {
      await page.goto(`${platform.url}/volumes/key_manager`);
      await byTestId('volume-holder-lost-key_manager').waitFor();
      assert.equal((await byTestId('volume-holder-lost-key_manager').innerText()).trim(), 'holder lost — restore from a backup');
      assert.match(await byTestId('volume-worker-key_manager').innerText(), /gone-worker/);
      const banner = await byTestId('volume-holder-lost').innerText();
      assert.match(banner, /The worker holding key_manager, gone-worker, is lost/);
      assert.match(banner, /If it is gone for good, restore key_manager from one of these backups onto a live worker/);
      // Nothing to back up or move from.
      assert.equal(await byTestId('volume-backup-key_manager').getAttribute('aria-disabled'), 'true');
      assert.equal(await byTestId('volume-move-key_manager').getAttribute('aria-disabled'), 'true');
      // Any live worker will do, local included; the lost one is no target.
      await byTestId('backups-table').getByRole('button', { name: /^Restore key_manager/ }).first().click();
      await dialog().waitFor();
      await byTestId('restore-target-local').waitFor();
      assert.equal(await byTestId('restore-target-gone-worker').count(), 0);
      assert.equal(await byTestId('restore-no-target').count(), 0);
      await dialog().getByRole('button', { name: 'Cancel' }).click();
      await dialog().waitFor({ state: 'detached' });
    } finally {
      await page.unrouteAll({ behavior: 'wait' });
    }
  });

  test('services: a stateful service waiting for its volume\'s worker says so (deployment answer stubbed in the browser)', async () => {
    const lostSince = new Date(Date.now() - 5 * 60_000).toISOString();
    const message = 'key_manager waits for worker gone-worker, which holds its volume key_manager (stubbed message)';
    await page.route((u) => u.pathname === '/api/services/key_manager/deployments', async (route) => {
      const real = await (await route.fetch()).json();
      await route.fulfill({
        json: { ...real, waiting_for_volume: { volume: 'key_manager', worker_id: '00000000-0000-4000-8000-0000000000c3', worker_name: 'gone-worker', lost_since: lostSince, message } },
      });
    });
    try {
      await page.goto(`${platform.url}/services/key_manager`);
      await byTestId('service-waiting-for-volume').waitFor();
      const banner = await byTestId('service-waiting-for-volume').innerText();
      assert.match(banner, new RegExp(message.replace(/[()]/g, '\\$&')));
      assert.match(banner, /Waiting for worker gone-worker \(lost 5 min ago\), which holds its volume key_manager/);
    } finally {
      await page.unrouteAll({ behavior: 'wait' });
    }
    // The real deployment waits for nothing: the banner goes with the next poll.
    await byTestId('service-waiting-for-volume').waitFor({ state: 'detached' });
  });

  test('keys: create a key, encrypt and decrypt a test string, rotate it', async () => {
    await byTestId('nav-keys').click();
    await byTestId('keys-screen').waitFor();
    await byTestId('keys-table').waitFor({ timeout: 30_000 });
    await byTestId('key-name').fill('dashboard-test');
    await byTestId('key-description').fill('made by the browser test');
    await byTestId('key-create').click();
    await byTestId('key-state-dashboard-test').waitFor();
    assert.match(await byTestId('key-state-dashboard-test').innerText(), /enabled/i);

    await byTestId('try-pick-dashboard-test').click();
    await byTestId('try-plaintext').fill('a secret for the test');
    await byTestId('try-encrypt').click();
    await byTestId('try-ciphertext').waitFor();
    assert.match(await byTestId('try-ciphertext').innerText(), /^aerekos:v1:/);
    await byTestId('try-decrypt').click();
    await byTestId('try-decrypted').waitFor();
    assert.equal((await byTestId('try-decrypted').innerText()).trim(), 'a secret for the test');

    await byTestId('key-rotate-dashboard-test').click();
    const row = byTestId('keys-table').getByRole('row').filter({ hasText: 'dashboard-test' });
    await eventually('version 2 after rotating', 10_000, async () => /v2/.test(await row.innerText()));
    await screenshot(page, 'keys');
  });

  test('storage: create a bucket, upload a file with progress, download it', async (t) => {
    if (!storageAvailable) {
      // Pending: storage_manager is being built; the screen is written against its API shape.
      t.skip('storage_manager is not in the catalog of this build (pending the service)');
      return;
    }
    await byTestId('nav-services').click();
    await serviceRow('services-table', 'storage_manager').click();
    await eventually('storage_manager healthy', 90_000, async () => (await byTestId('service-healthy').innerText()).trim() === '1 / 1');

    await byTestId('nav-storage').click();
    await byTestId('storage-screen').waitFor();
    await byTestId('bucket-name').fill('dashboard-test');
    await byTestId('bucket-create').click();
    await byTestId('object-browser').waitFor();
    assert.equal(new URL(page.url()).pathname, '/storage/dashboard-test');

    const dir = await mkdtemp(join(tmpdir(), 'aerekos-upload-'));
    try {
      const content = `hello from the dashboard test\n${'x'.repeat(300_000)}\n`;
      const file = join(dir, 'report.txt');
      await writeFile(file, content);
      // A folder is a key prefix: open a new one, upload into it.
      await byTestId('folder-name').fill('docs');
      await byTestId('folder-open').click();
      await eventually('the docs/ folder open', 5_000, async () => new URL(page.url()).searchParams.get('prefix') === 'docs/');
      const chooser = page.waitForEvent('filechooser');
      await byTestId('object-upload').click();
      await (await chooser).setFiles(file);
      await byTestId('upload-progress').waitFor();
      await eventually('the upload to finish', 30_000, async () => /uploaded/.test(await byTestId('upload-progress').innerText()));
      await byTestId('object-download-docs/report.txt').waitFor();
      await screenshot(page, 'storage');

      // Back at the bucket's top level the upload shows as a folder.
      await byTestId('breadcrumbs').getByText('dashboard-test', { exact: true }).click();
      const folderRow = byTestId('objects-table').getByRole('row').filter({ hasText: 'docs/' });
      await folderRow.waitFor();
      assert.match(await folderRow.innerText(), /folder/);
      await folderRow.click();
      await byTestId('object-download-docs/report.txt').waitFor();

      const download = page.waitForEvent('download');
      await byTestId('object-download-docs/report.txt').click();
      const saved = join(dir, 'downloaded.txt');
      await (await download).saveAs(saved);
      assert.equal((await download).suggestedFilename(), 'report.txt');

      // Delete the object (asked first), then the empty bucket.
      await byTestId('object-delete-docs/report.txt').click();
      await dialog().getByRole('button', { name: 'Delete' }).click();
      await byTestId('object-download-docs/report.txt').waitFor({ state: 'detached' });
      await byTestId('bucket-delete-dashboard-test').click();
      await dialog().getByRole('button', { name: 'Delete bucket' }).click();
      await byTestId('bucket-delete-dashboard-test').waitFor({ state: 'detached' });
      assert.equal(new URL(page.url()).pathname, '/storage');
      assert.equal(await readFile(saved, 'utf8'), content);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('settings: the token and the join command; regenerating asks first and changes the token', async () => {
    await byTestId('nav-settings').click();
    await byTestId('registration-token').waitFor();
    const before = (await byTestId('registration-token').innerText()).trim();
    assert.ok(before.length >= 16, before);
    assert.equal((await byTestId('join-command').innerText()).trim(), `CONDUCTOR_URL=${platform.url} CONDUCTOR_TOKEN=${before} aerekos worker`);
    assert.equal((await byTestId('me-username').innerText()).trim(), 'admin');
    // Copy puts the exact command on the clipboard.
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: platform.url });
    await page.getByRole('button', { name: 'Copy command' }).click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `CONDUCTOR_URL=${platform.url} CONDUCTOR_TOKEN=${before} aerekos worker`);

    await byTestId('token-regenerate').click();
    await dialog().waitFor();
    // Cancelling changes nothing.
    await dialog().getByRole('button', { name: 'Cancel' }).click();
    await dialog().waitFor({ state: 'detached' });
    assert.equal((await byTestId('registration-token').innerText()).trim(), before);

    await byTestId('token-regenerate').click();
    await dialog().getByRole('button', { name: 'Regenerate' }).click();
    await eventually('a new token', 10_000, async () => {
      const now = (await byTestId('registration-token').innerText()).trim();
      return now !== before && now.length >= 16;
    });
    const after = (await byTestId('registration-token').innerText()).trim();
    assert.match(await byTestId('join-command').innerText(), new RegExp(`CONDUCTOR_TOKEN=${after} aerekos worker`));
    await screenshot(page, 'settings');

    await byTestId('nav-overview').click();
    await byTestId('overview-screen').waitFor();
    await eventually('both services healthy again', 60_000, async () => !/[1-9]\d* unhealthy/.test(await byTestId('stat-services').innerText()));
    // (The charts hold the platform's history so far, as metrics_manager scraped it.)
    await page.waitForTimeout(6000);
    await screenshot(page, 'overview');
  });

  test('an expired (or otherwise refused) token sends the user back to the login', async () => {
    await page.evaluate(() => {
      const s = JSON.parse(sessionStorage.getItem('aerekos.session'));
      s.token = `${s.token.slice(0, -4)}AAAA`;
      sessionStorage.setItem('aerekos.session', JSON.stringify(s));
    });
    await page.goto(`${platform.url}/workers`);
    await byTestId('login-screen').waitFor();
    assert.match(await byTestId('signed-out-reason').innerText(), /session has expired/i);
    assert.equal(new URL(page.url()).pathname, '/login');
  });

  test('logging out forgets the token', async () => {
    await signIn('admin', ADMIN_PASSWORD);
    await byTestId('sign-out').click();
    await byTestId('login-screen').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('aerekos.session')), null);
  });

  test('a viewer sees no buttons they cannot use', async () => {
    await signIn(VIEWER.username, VIEWER.password);
    await page.goto(`${platform.url}/services/key_manager`);
    await byTestId('service-detail').waitFor();
    await byTestId('service-healthy').waitFor();
    for (const id of ['service-enable', 'service-disable', 'service-deploy', 'service-replicas']) {
      assert.equal(await byTestId(id).count(), 0, `${id} hidden from viewers`);
    }
    await byTestId('nav-volumes').click();
    await serviceRow('volumes-table', 'key_manager').waitFor();
    assert.match(await byTestId('volume-worker-key_manager').innerText(), /local/);
    assert.equal(await byTestId('volume-move-key_manager').count(), 0, 'Move… hidden from viewers');
    assert.equal(await byTestId('volume-backup-key_manager').count(), 0, 'Back up now hidden from viewers');
    await byTestId('moves-table').waitFor();
    // Viewers see a volume's backups, with nothing to restore them with.
    await serviceRow('volumes-table', 'key_manager').click();
    await byTestId('backups-table').waitFor();
    assert.equal(new URL(page.url()).pathname, '/volumes/key_manager');
    await eventually('the admin\'s backup in the list', 10_000, async () => /done/i.test(await byTestId('backups-table').innerText()));
    assert.equal(await page.locator('[data-testid^="backup-restore-"]').count(), 0, 'Restore… hidden from viewers');
    await byTestId('nav-keys').click();
    await byTestId('keys-table').waitFor({ timeout: 30_000 });
    assert.equal(await byTestId('key-create').count(), 0);
    assert.equal(await byTestId('key-rotate-dashboard-test').count(), 0);
    assert.equal(await byTestId('try-key').count(), 0);
    await byTestId('nav-settings').click();
    await byTestId('me-card').waitFor();
    assert.equal(await byTestId('token-regenerate').count(), 0);
    assert.equal(await byTestId('registration-token').count(), 0);
    if (storageAvailable) {
      await byTestId('nav-storage').click();
      await byTestId('buckets-table').waitFor();
      assert.equal(await byTestId('bucket-create').count(), 0);
    }
  });
});
