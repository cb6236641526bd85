// Users, sessions, passwords and the audit trail in headless Chromium against a real platform
// (`aerekos up`): an admin manages users on the Users screen (creating one, its role, disabling
// and enabling it, a new password, its sessions, deleting one) and reads what was done on the Audit
// screen; every user changes their own password; a viewer is told both screens are for admins.
// Screenshotted into docs/screenshots/.
//
// Run: npm test (AEREKOS_BIN names the executable; default ../../target/debug/aerekos).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ADMIN_PASSWORD, BIN, VIEWER, eventually, screenshot, staleBundleFiles, startBrowser, startPlatform } from './support.mjs';

let platform;
let browser;
let page;

before(async () => {
  platform = await startPlatform();
  try {
    browser = await startBrowser();
  } catch (e) {
    await platform.stop();
    throw e;
  }
  // The executable embeds dist/ when it is compiled: one built before the last `npm run build`
  // serves an older dashboard, without these screens.
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
  await browser?.close();
  await platform?.stop();
});

const CAROL = { username: 'carol', password: 'carol-first-password', second: 'carol-second-password', third: 'carol-third-password' };
// The theme's colours of a 2xx and a 4xx status (ok, warn), as the browser computes them.
const OK_COLOUR = 'rgb(143, 181, 115)';
const WARN_COLOUR = 'rgb(217, 164, 65)';

const byTestId = (id) => page.getByTestId(id);
const dialog = () => page.getByRole('alertdialog');
/** The row of the users table of `username`. */
const userRow = (username) => byTestId('users-table').getByRole('row').filter({ has: byTestId(`user-name-${username}`) });
/** The ids of the audit events shown, top to bottom (from their status badges' test ids). */
const shownEventIds = () =>
  page.locator('[data-testid^="audit-status-"]').evaluateAll((els) => els.map((el) => Number(el.getAttribute('data-testid').slice('audit-status-'.length))));
/** The text colour of a status badge (its label is its last child). */
const badgeColour = (id) => byTestId(id).evaluate((el) => getComputedStyle(el.lastElementChild).color);

/** A call to the conductor beside the page, with `token` if given: { status, body }. */
async function api(method, path, { token, body } = {}) {
  const res = await fetch(`${platform.url}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function login(username, password) {
  return api('POST', '/api/auth/login', { body: { username, password } });
}

/** The id (`jti`) of a token, which the conductor lists sessions by. */
function jti(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).jti;
}

/** The signed-in page's session as kept in sessionStorage. */
async function pageSession() {
  return page.evaluate(() => JSON.parse(sessionStorage.getItem('aerekos.session')));
}

/** Signs in on the login screen (forgetting any session of the page first). */
async function signIn(username, password) {
  await page.goto(`${platform.url}/login`);
  await page.evaluate(() => sessionStorage.removeItem('aerekos.session'));
  await page.goto(`${platform.url}/login`);
  await byTestId('login-username').fill(username);
  await byTestId('login-password').fill(password);
  await byTestId('login-submit').click();
  await byTestId('overview-screen').waitFor();
}

describe('users and audit', { concurrency: false }, () => {
  test('users: an admin sees every user with its role, state and sessions', async () => {
    await signIn('admin', ADMIN_PASSWORD);
    await byTestId('nav-users').click();
    await byTestId('users-screen').waitFor();
    assert.equal(new URL(page.url()).pathname, '/users');
    await byTestId('users-table').waitFor();
    await userRow('admin').waitFor();
    await userRow(VIEWER.username).waitFor();
    assert.match(await byTestId('user-role-admin').innerText(), /admin/i);
    assert.match(await byTestId('user-role-ann').innerText(), /viewer/i);
    assert.match(await byTestId('user-state-admin').innerText(), /enabled/i);
    assert.match(await byTestId('user-state-ann').innerText(), /enabled/i);
    assert.match(await userRow('admin').innerText(), /\byou\b/, 'the signed-in admin is marked');
    // This page's session at least.
    await eventually("the admin's sessions counted", 10_000, async () => Number((await byTestId('user-sessions-admin').innerText()).trim()) >= 1);
  });

  test('users: creating one shows the 12-byte minimum and the conductor\'s refusals, then lists it', async () => {
    await byTestId('nav-users').click();
    await byTestId('new-user').waitFor();
    assert.match(await byTestId('new-user-password-hint').innerText(), /At least 12 bytes/);

    // Too short: the hint says so as it is typed, and the conductor's own message (400 weak_password) is shown.
    await byTestId('new-user-name').fill(CAROL.username);
    await byTestId('new-user-password').fill('short');
    assert.match(await byTestId('new-user-password-hint').innerText(), /5 of at least 12 bytes/);
    await byTestId('new-user-create').click();
    await byTestId('new-user-error').waitFor();
    assert.match(await byTestId('new-user-error').innerText(), /a password must be 12–1024 bytes long/);
    assert.equal(await userRow(CAROL.username).count(), 0);

    // A username the conductor refuses (400 invalid_username).
    await byTestId('new-user-name').fill('Carol Smith');
    await byTestId('new-user-password').fill(CAROL.password);
    assert.match(await byTestId('new-user-password-hint').innerText(), /20 bytes: long enough/);
    await byTestId('new-user-create').click();
    await eventually('the username refused', 10_000, async () => /usernames are 1–64 characters/.test(await byTestId('new-user-error').innerText()));

    // Created: a viewer (the default role), enabled, listed; the form is empty again.
    await byTestId('new-user-name').fill(CAROL.username);
    assert.equal(await byTestId('new-user-role-viewer').getAttribute('aria-checked'), 'true');
    await byTestId('new-user-create').click();
    await byTestId('user-notice').waitFor();
    assert.match(await byTestId('user-notice').innerText(), /Created carol, a viewer/);
    assert.equal(await byTestId('new-user-error').count(), 0);
    await userRow(CAROL.username).waitFor();
    assert.match(await byTestId('user-role-carol').innerText(), /viewer/i);
    assert.match(await byTestId('user-state-carol').innerText(), /enabled/i);
    assert.equal(await byTestId('new-user-name').inputValue(), '');
    assert.equal(await byTestId('new-user-password').inputValue(), '');
    assert.equal((await login(CAROL.username, CAROL.password)).status, 200, 'carol signs in');

    // The same username again: 409 user_exists, with its message.
    await byTestId('new-user-name').fill(CAROL.username);
    await byTestId('new-user-password').fill('another-long-password');
    await byTestId('new-user-create').click();
    await byTestId('new-user-error').waitFor();
    assert.match(await byTestId('new-user-error').innerText(), /there is already a user "carol"/);
    await byTestId('new-user-name').fill('');
    await byTestId('new-user-password').fill('');
  });

  test('users: a role changed both ways; a session seen and revoked; the current one cannot be', async () => {
    await byTestId('nav-users').click();
    await userRow(CAROL.username).waitFor();
    // Making an admin takes nothing away: at once.
    await byTestId('user-promote-carol').click();
    await eventually('carol an admin', 10_000, async () => /admin/i.test(await byTestId('user-role-carol').innerText()));
    // Making a viewer signs out her sessions: asked first.
    await byTestId('user-demote-carol').click();
    await dialog().waitFor();
    assert.match(await dialog().innerText(), /Make carol a viewer\?/);
    await dialog().getByRole('button', { name: 'Make viewer', exact: true }).click();
    await dialog().waitFor({ state: 'detached' });
    await eventually('carol a viewer again', 10_000, async () => /viewer/i.test(await byTestId('user-role-carol').innerText()));

    // Carol signs in elsewhere (her one session: making her a viewer signed out the earlier one):
    // selecting her shows that session, which is revoked from here.
    const { body: session } = await login(CAROL.username, CAROL.password);
    const id = jti(session.token);
    // (Its name: the buttons in the row do their own thing.)
    await byTestId('user-name-carol').click();
    await byTestId('sessions-card').waitFor();
    assert.equal(new URL(page.url()).pathname, '/users/carol');
    await byTestId(`session-revoke-${id}`).waitFor();
    assert.match(await byTestId('sessions-table').innerText(), new RegExp(id));
    await eventually("carol's session counted", 10_000, async () => (await byTestId('user-sessions-carol').innerText()).trim() === '1');
    assert.equal((await api('GET', '/api/auth/me', { token: session.token })).status, 200);
    // The screen as it opens (without the refusals of the form above), for the picture.
    await page.reload();
    await byTestId(`session-revoke-${id}`).waitFor();
    await screenshot(page, 'users');
    await byTestId(`session-revoke-${id}`).click();
    await byTestId(`session-revoke-${id}`).waitFor({ state: 'detached' });
    await eventually('no session of carol listed', 10_000, async () => /carol is not signed in anywhere/.test(await byTestId('sessions-table').innerText()));
    const refused = await api('GET', '/api/auth/me', { token: session.token });
    assert.equal(refused.status, 401, 'the revoked token is refused');

    // The admin's own session is marked, with no revoke button (signing out ends it).
    await byTestId('user-name-admin').click();
    assert.equal(new URL(page.url()).pathname, '/users/admin');
    await byTestId('session-current').waitFor();
    const mine = jti((await pageSession()).token);
    assert.equal(await byTestId(`session-revoke-${mine}`).count(), 0);
  });

  test('users: disabled (asked first) then enabled; a new password set by the admin', async () => {
    await page.goto(`${platform.url}/users/carol`);
    await userRow(CAROL.username).waitFor();
    const { body: session } = await login(CAROL.username, CAROL.password);

    await byTestId('user-disable-carol').click();
    await dialog().waitFor();
    assert.match(await dialog().innerText(), /carol cannot sign in until an admin enables them again/);
    // Cancelling changes nothing.
    await dialog().getByRole('button', { name: 'Cancel', exact: true }).click();
    await dialog().waitFor({ state: 'detached' });
    assert.match(await byTestId('user-state-carol').innerText(), /enabled/i);

    await byTestId('user-disable-carol').click();
    await dialog().getByRole('button', { name: 'Disable', exact: true }).click();
    await dialog().waitFor({ state: 'detached' });
    await eventually('carol disabled', 10_000, async () => /disabled/i.test(await byTestId('user-state-carol').innerText()));
    await byTestId('sessions-disabled').waitFor();
    assert.equal((await api('GET', '/api/auth/me', { token: session.token })).status, 401, 'her session was revoked');
    const disabled = await login(CAROL.username, CAROL.password);
    assert.equal(disabled.status, 403);
    assert.equal(disabled.body.code, 'user_disabled');

    await byTestId('user-enable-carol').click();
    await eventually('carol enabled', 10_000, async () => /enabled/i.test(await byTestId('user-state-carol').innerText()));
    assert.equal((await login(CAROL.username, CAROL.password)).status, 200);

    // A new password: too short is refused in the dialog, which stays open; then set.
    await byTestId('user-reset-password-carol').click();
    await dialog().waitFor();
    assert.match(await dialog().innerText(), /Reset carol’s password/);
    await byTestId('user-new-password').fill('too-short');
    assert.match(await byTestId('user-new-password-hint').innerText(), /9 of at least 12 bytes/);
    await dialog().getByRole('button', { name: 'Set password', exact: true }).click();
    await byTestId('user-dialog-error').waitFor();
    assert.match(await byTestId('user-dialog-error').innerText(), /a password must be 12–1024 bytes long/);
    await byTestId('user-new-password').fill(CAROL.second);
    await dialog().getByRole('button', { name: 'Set password', exact: true }).click();
    await dialog().waitFor({ state: 'detached' });
    await byTestId('user-notice').waitFor();
    assert.match(await byTestId('user-notice').innerText(), /Set a new password for carol/);
    assert.equal((await login(CAROL.username, CAROL.password)).status, 401, 'the old password is refused');
    assert.equal((await login(CAROL.username, CAROL.second)).status, 200, 'the new one signs in');
  });

  test('users: the only enabled admin cannot be disabled or deleted: the conductor\'s refusal (409 last_admin) is shown', async () => {
    await byTestId('nav-users').click();
    await userRow('admin').waitFor();
    await byTestId('user-disable-admin').click();
    await dialog().waitFor();
    assert.match(await dialog().innerText(), /This is you/);
    await dialog().getByRole('button', { name: 'Disable', exact: true }).click();
    await byTestId('user-dialog-error').waitFor();
    assert.match(await byTestId('user-dialog-error').innerText(), /"admin" is the only enabled admin and cannot be disabled/);
    await dialog().getByRole('button', { name: 'Cancel', exact: true }).click();
    await dialog().waitFor({ state: 'detached' });

    await byTestId('user-delete-admin').click();
    await dialog().getByRole('button', { name: 'Delete', exact: true }).click();
    await byTestId('user-dialog-error').waitFor();
    assert.match(await byTestId('user-dialog-error').innerText(), /only enabled admin and cannot be deleted/);
    await dialog().getByRole('button', { name: 'Cancel', exact: true }).click();
    await dialog().waitFor({ state: 'detached' });

    assert.match(await byTestId('user-state-admin').innerText(), /enabled/i);
    assert.match(await byTestId('user-role-admin').innerText(), /admin/i);
    assert.equal(await byTestId('login-screen').count(), 0, 'still signed in');
  });

  test('users: deleting asks first, then the user is gone', async () => {
    await byTestId('nav-users').click();
    await byTestId('new-user-name').fill('dave');
    await byTestId('new-user-role-admin').click();
    assert.equal(await byTestId('new-user-role-admin').getAttribute('aria-checked'), 'true');
    await byTestId('new-user-password').fill('dave-is-here-for-a-moment');
    await byTestId('new-user-create').click();
    await userRow('dave').waitFor();
    assert.match(await byTestId('user-role-dave').innerText(), /admin/i);

    await byTestId('user-delete-dave').click();
    await dialog().waitFor();
    assert.match(await dialog().innerText(), /This cannot be undone/);
    await dialog().getByRole('button', { name: 'Cancel', exact: true }).click();
    await dialog().waitFor({ state: 'detached' });
    await userRow('dave').waitFor();

    await byTestId('user-delete-dave').click();
    await dialog().getByRole('button', { name: 'Delete', exact: true }).click();
    await dialog().waitFor({ state: 'detached' });
    await userRow('dave').waitFor({ state: 'detached' });
    assert.match(await byTestId('user-notice').innerText(), /Deleted dave/);
    assert.equal((await login('dave', 'dave-is-here-for-a-moment')).status, 401);
  });

  test('audit: the newest first, with the create_user event; statuses coloured; filters', async () => {
    const headers = { token: (await pageSession()).token };
    const { body: created } = await api('GET', '/api/audit?action=create_user', headers);
    const ok = created.events.find((e) => e.status === 200 && e.target === '/api/users');
    const exists = created.events.find((e) => e.status === 409);
    assert.ok(ok && exists, JSON.stringify(created));

    await byTestId('nav-audit').click();
    await byTestId('audit-screen').waitFor();
    assert.equal(new URL(page.url()).pathname, '/audit');
    await byTestId('audit-table').waitFor();
    await byTestId(`audit-status-${ok.id}`).waitFor();
    const ids = await shownEventIds();
    assert.ok(ids.length > 10, `${ids.length} events shown`);
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'the newest first');

    // The latest creation of a user (dave's): time, actor, action, path, status, client, request id.
    const row = byTestId('audit-table').getByRole('row').filter({ has: byTestId(`audit-status-${ok.id}`) });
    const text = await row.innerText();
    for (const part of ['user:admin', 'create_user', '/api/users', '200', ok.request_id]) assert.ok(text.includes(part), `${part} in ${text}`);
    assert.ok(ok.client_ip && text.includes(ok.client_ip), `the client address in ${text}`);
    assert.equal(await badgeColour(`audit-status-${ok.id}`), OK_COLOUR, '2xx in the ok colour');
    assert.equal(await badgeColour(`audit-status-${exists.id}`), WARN_COLOUR, '4xx in the warning colour');
    await screenshot(page, 'audit');

    // Filtered by action (the filter goes into the address).
    await byTestId('audit-action').fill('create_user');
    await byTestId('audit-apply').click();
    await eventually('only create_user events', 10_000, async () => {
      const shown = await shownEventIds();
      return shown.length === created.events.length && shown.includes(ok.id) && !/update_user|login/.test(await byTestId('audit-table').innerText());
    });
    assert.equal(new URL(page.url()).search, '?action=create_user');

    // Failed only: the refusals (400 weak_password, 400 invalid_username, 409 user_exists).
    await byTestId('audit-failed').click();
    await eventually('failed only ticked', 5_000, async () => (await byTestId('audit-failed').getAttribute('aria-checked')) === 'true');
    await eventually('only the refused creations', 10_000, async () => {
      const shown = await shownEventIds();
      return shown.length === created.events.filter((e) => e.status >= 400).length && shown.includes(exists.id) && !shown.includes(ok.id);
    });
    assert.equal(new URL(page.url()).searchParams.get('failed'), '1');
    const statuses = await page.locator('[data-testid^="audit-status-"]').allInnerTexts();
    assert.ok(statuses.every((s) => Number(s) >= 400), statuses.join(' '));

    // By actor: carol's logins, nothing the admin did.
    await byTestId('audit-clear').click();
    await eventually('the filter cleared', 5_000, async () => new URL(page.url()).search === '');
    await byTestId('audit-actor').fill('user:carol');
    await byTestId('audit-apply').click();
    await eventually("carol's events", 10_000, async () => {
      const t = await byTestId('audit-table').innerText();
      return /login/.test(t) && !/create_user|user:admin/.test(t);
    });
    assert.equal(new URL(page.url()).searchParams.get('actor'), 'user:carol');
    await byTestId('audit-clear').click();
  });

  test('audit: older events a page at a time (next_before)', async () => {
    // More update_user events than a page (50) holds: carol enabled again and again.
    const token = (await pageSession()).token;
    const { body: { users } } = await api('GET', '/api/users', { token });
    const carol = users.find((u) => u.username === CAROL.username);
    for (let i = 0; i < 55; i++) {
      assert.equal((await api('PATCH', `/api/users/${carol.id}`, { token, body: { disabled: false } })).status, 200);
    }
    const { body: all } = await api('GET', '/api/audit?action=update_user&limit=1000', { token });
    assert.ok(all.events.length > 50 && all.events.length <= 100, `${all.events.length} update_user events`);

    await page.goto(`${platform.url}/audit?action=update_user`);
    await byTestId('audit-table').waitFor();
    await eventually('the first page', 10_000, async () => (await shownEventIds()).length === 50);
    assert.equal(await byTestId('audit-end').count(), 0);
    await byTestId('audit-older').click();
    await eventually('the older page below it', 10_000, async () => (await shownEventIds()).length === all.events.length);
    assert.deepEqual(await shownEventIds(), all.events.map((e) => e.id), 'every event once, the newest first');
    await byTestId('audit-end').waitFor();
    assert.equal(await byTestId('audit-older').count(), 0, 'nothing older to load');
  });

  test('signing out revokes the session at the conductor', async () => {
    const { token } = await pageSession();
    assert.equal((await api('GET', '/api/auth/me', { token })).status, 200);
    await byTestId('sign-out').click();
    await byTestId('login-screen').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('aerekos.session')), null);
    assert.equal(await byTestId('signed-out-reason').count(), 0, 'nothing to explain');
    assert.equal((await api('GET', '/api/auth/me', { token })).status, 401, 'the token is revoked');
  });

  test('change password: every user changes their own; this tab keeps a new session, the others are signed out', async () => {
    // Carol (a viewer) is signed in here and somewhere else.
    await signIn(CAROL.username, CAROL.second);
    const { token: before } = await pageSession();
    const { body: elsewhere } = await login(CAROL.username, CAROL.second);

    await byTestId('change-password').click();
    await dialog().waitFor();
    assert.match(await dialog().innerText(), /Change your password/);
    // The wrong current password (403 wrong_password): said plainly, nothing changes.
    await byTestId('current-password').fill('not-my-password');
    await byTestId('new-password').fill(CAROL.third);
    assert.match(await byTestId('new-password-hint').innerText(), /20 bytes: long enough/);
    await dialog().getByRole('button', { name: 'Change password', exact: true }).click();
    await byTestId('change-password-error').waitFor();
    assert.match(await byTestId('change-password-error').innerText(), /not your current password/);
    assert.equal((await pageSession()).token, before);

    await byTestId('current-password').fill(CAROL.second);
    await dialog().getByRole('button', { name: 'Change password', exact: true }).click();
    await byTestId('change-password-done').waitFor();
    const after = (await pageSession()).token;
    assert.notEqual(after, before, 'the new session is kept');
    assert.equal((await api('GET', '/api/auth/me', { token: after })).status, 200);
    assert.equal((await api('GET', '/api/auth/me', { token: before })).status, 401, 'the old session is revoked');
    assert.equal((await api('GET', '/api/auth/me', { token: elsewhere.token })).status, 401, 'so is the one elsewhere');
    await dialog().getByRole('button', { name: 'Done', exact: true }).click();
    await dialog().waitFor({ state: 'detached' });

    // Still signed in, here and after a reload, as carol.
    await byTestId('nav-settings').click();
    await byTestId('me-card').waitFor();
    await byTestId('me-username').waitFor();
    assert.equal((await byTestId('me-username').innerText()).trim(), CAROL.username);
    await page.reload();
    await byTestId('settings-screen').waitFor();
    assert.equal(await byTestId('login-screen').count(), 0);
    assert.equal((await byTestId('signed-in-user').innerText()).trim(), CAROL.username);
    assert.equal((await login(CAROL.username, CAROL.third)).status, 200, 'the new password signs in');
  });

  test('a viewer is told that the Users and Audit screens are for admins', async () => {
    await signIn(VIEWER.username, VIEWER.password);
    await byTestId('nav-users').click();
    await byTestId('users-admins-only').waitFor();
    assert.match(await byTestId('users-admins-only').innerText(), /Only admins can see and manage users/);
    assert.equal(await byTestId('users-table').count(), 0);
    assert.equal(await byTestId('new-user').count(), 0);
    await byTestId('nav-audit').click();
    await byTestId('audit-admins-only').waitFor();
    assert.match(await byTestId('audit-admins-only').innerText(), /Only admins can read the audit trail/);
    assert.equal(await byTestId('audit-table').count(), 0);
    // The change of password is for everyone.
    await byTestId('change-password').waitFor();
  });
});
