// The dashboard in headless Chromium against a real platform (`aerekos up`): each screen is used
// as a person would, and screenshotted into docs/screenshots/.
//
// Run: npm test (AEREKOS_BIN names the executable; default ../../target/debug/aerekos).

import assert from 'node:assert/strict';
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ADMIN_PASSWORD, VIEWER, eventually, screenshot, startBrowser, startPlatform } from './support.mjs';

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
    // The charts fill as samples arrive (every 3 s); the overview is screenshotted at the end of
    // the admin's session, when they have most of their bars.
    await eventually('a few samples in the CPU chart', 15_000, async () => /\d%/.test(await byTestId('chart-cpu').innerText()));
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
    // (In-app navigation since sign-in: the samples of the whole session are in the charts.)
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
