// The Secrets screen in headless Chromium against a real platform (`aerekos up`, which deploys
// secrets_manager): secrets made through the SDK are listed with their metadata, a secret's
// versions and labels are shown without any value, and a value is read (and so audited) only when
// an admin presses Reveal; admins create secrets and write values; viewers see metadata only.
// Screenshotted into docs/screenshots/secrets.png.
//
// Run: npm test (AEREKOS_BIN names the executable; default ../../target/debug/aerekos).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { bytesToBase64, createSecretsManagerClient, login, unwrap } from '@aerekos/sdk';

import { ADMIN_PASSWORD, BIN, VIEWER, eventually, screenshot, staleBundleFiles, startBrowser, startPlatform } from './support.mjs';

let platform;
let browser;
let page;
/** secrets_manager through the SDK, as the admin. */
let sm;
/** The value reads (GET …/value) the page sent, as URLs. */
const valueReads = [];

const NAME = 'apps/shop/db-password';
const SCHEDULED = 'legacy/ftp-password';
const FORM_NAME = 'apps/shop/api-token';
// Markers no page would show by chance.
const FIRST = `first-value-${randomBytes(6).toString('hex')}`;
const SECOND = `second-value-${randomBytes(6).toString('hex')}`;
const TYPED = `typed-value-${randomBytes(6).toString('hex')}`;
const text = (s) => ({ bytes: bytesToBase64(new TextEncoder().encode(s)) });

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
    const url = new URL(r.url());
    if (r.method() === 'GET' && url.pathname.startsWith('/api/secrets_manager/secrets/') && url.pathname.endsWith('/value')) valueReads.push(r.url());
  });

  const { client } = await login(platform.url, 'admin', ADMIN_PASSWORD);
  sm = createSecretsManagerClient({ baseUrl: platform.url, token: client.token() });
  // `up` deployed secrets_manager; the gateway answers 503 until its instance is healthy.
  await eventually('secrets_manager behind the gateway', 90_000, async () => {
    await unwrap(sm.GET('/api/secrets_manager/secrets'));
    return true;
  });
});

after(async () => {
  await browser?.close();
  await platform?.stop();
});

const byTestId = (id) => page.getByTestId(id);
/** The row of the versions table of version `n`. */
const versionRow = (n) => byTestId('secret-versions').getByRole('row').filter({ has: byTestId(`secret-labels-${n}`) });
/** Everything the page holds: its HTML (input values included) and the text it shows. */
const pageHolds = async (value) => (await page.content()).includes(value) || (await page.evaluate(() => document.body.innerText)).includes(value);

async function signIn(username, password) {
  await page.goto(`${platform.url}/`);
  await byTestId('login-username').fill(username);
  await byTestId('login-password').fill(password);
  await byTestId('login-submit').click();
  await byTestId('overview-screen').waitFor();
}

describe('secrets', { concurrency: false }, () => {
  test('the list shows secrets made through the SDK, with their metadata and scheduled deletions', async () => {
    await unwrap(sm.POST('/api/secrets_manager/secrets', { body: { name: NAME, description: 'the shop database', tags: { team: 'shop' }, value: text(FIRST) } }));
    await unwrap(sm.POST('/api/secrets_manager/secrets', { body: { name: SCHEDULED, description: 'the old FTP server', value: text('an old value') } }));
    await unwrap(sm.DELETE('/api/secrets_manager/secrets/{name}', { params: { path: { name: SCHEDULED }, query: { recovery_days: 7 } } }));

    await signIn('admin', ADMIN_PASSWORD);
    await byTestId('nav-secrets').click();
    await byTestId('secrets-screen').waitFor();
    await byTestId('secrets-table').waitFor({ timeout: 30_000 });
    const row = byTestId('secrets-table').getByRole('row').filter({ has: byTestId(`secret-row-${NAME}`) });
    await row.waitFor();
    assert.match(await row.innerText(), /the shop database/);
    assert.match(await row.innerText(), /v1/);
    assert.match(await row.innerText(), /—/, 'no deletion scheduled');
    await byTestId(`secret-deletion-${SCHEDULED}`).waitFor();
    assert.match(await byTestId(`secret-deletion-${SCHEDULED}`).innerText(), /scheduled/i);
    assert.equal(await pageHolds(FIRST), false);
    assert.equal(valueReads.length, 0, 'listing reads no value');
  });

  test('a secret shows its versions and labels and no value until Reveal; each reveal is one audited read', async () => {
    const row = byTestId('secrets-table').getByRole('row').filter({ has: byTestId(`secret-row-${NAME}`) });
    await row.click();
    await byTestId('secret-detail').waitFor();
    // The name is one path segment, its `/`s encoded, as in the API.
    assert.equal(new URL(page.url()).pathname, '/secrets/apps%2Fshop%2Fdb-password');
    await versionRow(1).waitFor();
    assert.equal((await byTestId('secret-labels-1').innerText()).trim(), 'AWSCURRENT');
    assert.equal((await byTestId('secret-current').innerText()).trim(), 'v1');
    assert.match(await byTestId('secret-detail').innerText(), /team=shop/);
    assert.match(await versionRow(1).innerText(), /user:admin/);
    // Polls of the metadata come and go; none of them reads the value.
    await page.waitForTimeout(5500);
    assert.equal(await pageHolds(FIRST), false, 'the value is not in the page before Reveal');
    assert.equal(valueReads.length, 0);

    await byTestId('secret-reveal-1').click();
    await byTestId('secret-value-1').waitFor();
    assert.equal((await byTestId('secret-value-1').innerText()).trim(), FIRST);
    assert.equal(await pageHolds(FIRST), true, 'the value is in the page after Reveal');
    assert.equal(valueReads.length, 1, 'one reveal, one read');
    assert.match(valueReads[0], /\/api\/secrets_manager\/secrets\/apps%2Fshop%2Fdb-password\/value\?version=1$/);

    // Hidden again: gone from the page, and a second reveal is a second read.
    await byTestId('secret-hide-1').click();
    await byTestId('secret-value-1').waitFor({ state: 'detached' });
    assert.equal(await pageHolds(FIRST), false, 'the value leaves the page when hidden');
    await byTestId('secret-reveal-1').click();
    await byTestId('secret-value-1').waitFor();
    assert.equal(valueReads.length, 2);
    await byTestId('secret-hide-1').click();

    const audit = await unwrap(sm.GET('/api/secrets_manager/audit', { params: { query: { secret: NAME } } }));
    const reads = audit.records.filter((r) => r.action === 'read_value');
    assert.equal(reads.length, 2, JSON.stringify(audit.records));
    assert.ok(reads.every((r) => r.actor === 'user:admin' && r.version === 1 && r.outcome === 'ok'));
  });

  test('an admin writes a new value from a secure field: AWSCURRENT moves, AWSPREVIOUS follows, the value stays hidden', async () => {
    const field = byTestId('secret-new-value');
    assert.equal(await field.getAttribute('type'), 'password', 'the value is typed into a secure field');
    await field.fill(SECOND);
    await byTestId('secret-write').click();
    await versionRow(2).waitFor();
    assert.equal((await byTestId('secret-labels-2').innerText()).trim(), 'AWSCURRENT');
    assert.equal((await byTestId('secret-labels-1').innerText()).trim(), 'AWSPREVIOUS');
    await eventually('the field cleared', 5_000, async () => (await field.inputValue()) === '');
    assert.equal(await pageHolds(SECOND), false, 'the written value is not left in the page');
    assert.equal(await pageHolds(FIRST), false);
    assert.equal(valueReads.length, 2, 'writing reads nothing');
    assert.equal((await unwrap(sm.GET('/api/secrets_manager/secrets/{name}/value', { params: { path: { name: NAME } } }))).value.bytes, text(SECOND).bytes);

    await byTestId('secret-reveal-2').click();
    await byTestId('secret-value-2').waitFor();
    assert.equal((await byTestId('secret-value-2').innerText()).trim(), SECOND);
    assert.equal(await pageHolds(FIRST), false, 'revealing one version shows no other');
    await screenshot(page, 'secrets');
  });

  test('an admin creates a secret with its first value from the form', async () => {
    await byTestId('secret-name').fill(FORM_NAME);
    await byTestId('secret-description').fill('made in the browser test');
    await byTestId('secret-value').fill(TYPED);
    assert.equal(await byTestId('secret-value').getAttribute('type'), 'password');
    await byTestId('secret-create').click();
    await eventually('the new secret open', 10_000, async () => new URL(page.url()).pathname === `/secrets/${encodeURIComponent(FORM_NAME)}`);
    await versionRow(1).waitFor();
    assert.equal((await byTestId('secret-labels-1').innerText()).trim(), 'AWSCURRENT');
    assert.equal(await byTestId('secret-value').inputValue(), '');
    assert.equal(await pageHolds(TYPED), false, 'the typed value is not left in the page');
    assert.equal(await pageHolds(SECOND), false, 'the other secret\'s revealed value went with its screen');
    const read = await unwrap(sm.GET('/api/secrets_manager/secrets/{name}/value', { params: { path: { name: FORM_NAME } } }));
    assert.equal(read.value.bytes, text(TYPED).bytes);
    // A name the service refuses says why.
    await byTestId('secret-name').fill('no spaces allowed');
    await byTestId('secret-create').click();
    await byTestId('secret-create-error').waitFor();
    assert.match(await byTestId('secret-create-error').innerText(), /segments of letters, digits/);
  });

  test('a viewer sees names, versions and labels, and no Reveal or write buttons', async () => {
    await byTestId('sign-out').click();
    await byTestId('login-screen').waitFor();
    await signIn(VIEWER.username, VIEWER.password);
    const before = valueReads.length;
    await page.goto(`${platform.url}/secrets/${encodeURIComponent(NAME)}`);
    await byTestId('secret-detail').waitFor();
    await versionRow(2).waitFor();
    assert.equal((await byTestId('secret-labels-2').innerText()).trim(), 'AWSCURRENT');
    await byTestId('secret-viewer-note').waitFor();
    await byTestId(`secret-row-${FORM_NAME}`).waitFor();
    assert.equal(await page.locator('[data-testid^="secret-reveal-"]').count(), 0, 'Reveal hidden from viewers');
    for (const id of ['secret-new-value', 'secret-write', 'secret-create', 'secret-name', 'secret-value', 'secret-restore']) {
      assert.equal(await byTestId(id).count(), 0, `${id} hidden from viewers`);
    }
    await page.goto(`${platform.url}/secrets/${encodeURIComponent(SCHEDULED)}`);
    await byTestId('secret-scheduled').waitFor();
    assert.equal(await byTestId('secret-restore').count(), 0);
    for (const value of [FIRST, SECOND, TYPED]) assert.equal(await pageHolds(value), false);
    assert.equal(valueReads.length, before, 'a viewer\'s screen reads no value');
  });
});
