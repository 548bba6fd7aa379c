/**
 * The web console in headless Chromium (Debian's `chromium`, driven by
 * playwright-core) against a real server process and a real agent
 * process: log in, watch the agent appear in the live feed and go offline
 * when it stops, and check that a customer-scoped user sees nothing of
 * another customer. Screenshots land in test-artifacts/console/.
 */
import crypto from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { requestJson } from '../../common/https-json.js';
import { company, writeExport } from '../../server/test/msp-support.js';
import { Harness } from '../support/harness.js';
import { assertBuilt, eventually, freePort, Processes, REPO_ROOT, ROLLCALL, ROLLCALL_AGENT, type Proc } from './processes.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts', 'console');
const ADMIN_PASSWORD = 'e2e-admin-password-1';

const h = new Harness();
const procs = new Processes();
let dataDir = '';
let consolePort = 0;
let agentPort = 0;
let adminToken = '';
let ca = '';
let browser: Browser;
let base = '';
let agentState = '';
let agentProc: Proc | undefined;
let deviceId = '';
let scopedUser = { username: '', password: '' };

async function api<T>(method: 'GET' | 'POST', p: string, body?: unknown): Promise<T> {
  const res = await requestJson({ host: '127.0.0.1', port: consolePort, path: p, method, body, ca, headers: { authorization: `Bearer ${adminToken}` } });
  if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as T;
}

/** A browser page that trusts exactly our server's key (no blanket certificate bypass). */
async function newPage(): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  page.setDefaultTimeout(10_000);
  return page;
}

async function login(page: Page, username: string, password: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByLabel('User name').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('navigation', { name: 'Views' }).waitFor();
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

function startAgent(): Proc {
  agentProc = procs.start('agent', ROLLCALL_AGENT, ['run', '--state-dir', agentState, '--backoff-base', '100ms', '--backoff-cap', '1s'], { ROLLCALL_AGENT_FINGERPRINT_SALT: 'console-e2e' });
  return agentProc;
}

async function agentConnected(): Promise<boolean> {
  const st = JSON.parse(await fs.readFile(path.join(agentState, 'status.json'), 'utf8').catch(() => '{}')) as { state?: string; pid?: number };
  return st.state === 'connected' && st.pid === agentProc?.child.pid;
}

beforeAll(async () => {
  assertBuilt();
  if (!existsSync(path.join(REPO_ROOT, 'dist', 'ui', 'app.js'))) throw new Error('the console is not built: run "npm run build"');
  await fs.mkdir(ARTIFACTS, { recursive: true });
  dataDir = await h.tempDir('rollcall-console-e2e-');
  agentPort = await freePort();
  consolePort = await freePort();
  const server = procs.start('server', ROLLCALL, ['server', '--data-dir', dataDir, '--agent-port', String(agentPort), '--console-port', String(consolePort), '--listen-host', '127.0.0.1', '--interval', '2'], {
    ROLLCALL_ADMIN_PASSWORD: ADMIN_PASSWORD,
  });
  adminToken = await eventually(() => /admin API token \(shown once, store it now\): (rca_\S+)/.exec(server.output)?.[1], 'the server banner', 30_000, 100);
  expect(server.output).toContain('console login: admin with the password from ROLLCALL_ADMIN_PASSWORD');
  ca = await fs.readFile(path.join(dataDir, 'pki', 'ca.crt'), 'utf8');
  base = `https://127.0.0.1:${consolePort}`;
  // Two customers from an MSP export; Acme is set up (its token enrolls our agent), Beta gets the scoped user.
  const file = await writeExport(dataDir, [company('m1', 'acct-1', 1006, 'Contoso'), company('c1', 'm1', 1007, 'Acme'), company('c2', 'm1', 1007, 'Beta')]);
  await api('POST', '/api/v1/msp/link', { source: 'file', file });
  const acme = await api<{ token: { secret: string; agentCommand: string } }>('POST', '/api/v1/customers/setup', { customer: 'Acme' });
  const beta = await api<{ user: { username: string; password: string } }>('POST', '/api/v1/customers/setup', { customer: 'Beta' });
  scopedUser = beta.user;
  agentState = path.join(await h.tempDir('rollcall-console-agent-'), 'state');
  const pin = /--ca-pin (sha256:[0-9a-f]{64})/.exec(acme.token.agentCommand)![1]!;
  const enrolled = await procs.run(ROLLCALL_AGENT, ['enroll', '--server', `127.0.0.1:${agentPort}`, '--ca-pin', pin, '--token', acme.token.secret, '--state-dir', agentState, '--json'], {
    ROLLCALL_AGENT_FINGERPRINT_SALT: 'console-e2e',
  });
  expect(enrolled.code, enrolled.stderr).toBe(0);
  deviceId = (JSON.parse(enrolled.stdout) as { deviceId: string }).deviceId;
  const serverKey = crypto.createPublicKey(await fs.readFile(path.join(dataDir, 'pki', 'server.crt'), 'utf8')).export({ type: 'spki', format: 'der' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', `--ignore-certificate-errors-spki-list=${crypto.createHash('sha256').update(serverKey).digest('base64')}`],
  });
});

beforeEach(() => {
  onTestFailed(() => {
    process.stderr.write(`\nprocess output at failure:\n${procs.report()}\n`);
  });
});

afterAll(async () => {
  await browser?.close();
  await procs.killAll();
  await h.cleanup();
});

describe('the web console in Chromium', { timeout: 120_000 }, () => {
  it('refuses a wrong password, then logs the admin in', async () => {
    const page = await newPage();
    await page.goto(`${base}/`);
    await page.getByLabel('User name').fill('admin');
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await expect(page.getByRole('alert').textContent()).resolves.toContain('wrong user name or password');
    await login(page, 'admin', ADMIN_PASSWORD);
    await shot(page, '01-logged-in');
    await page.getByRole('link', { name: 'Account' }).click();
    await page.getByRole('row', { name: /beta-admin/ }).waitFor(); // the customer admin made by setup
    await shot(page, '08-users');
    await page.context().close();
  });

  it('shows the agent in the live feed within 2 s of connecting, and offline once it stops', async () => {
    const page = await newPage();
    await login(page, 'admin', ADMIN_PASSWORD);
    await page.getByRole('link', { name: 'Live feed' }).click();
    await page.locator('.feed-state.open').waitFor();
    startAgent();
    await eventually(() => agentConnected().then((ok) => ok || undefined), 'the agent to report connected', 20_000, 25);
    await page.locator(`tr[data-kind="connect"][data-device="${deviceId}"]`).waitFor({ timeout: 2000 });
    await page.locator(`tr[data-kind="checkin"][data-device="${deviceId}"]`).first().waitFor({ timeout: 6000 });
    await shot(page, '02-live-feed');

    await page.getByRole('link', { name: 'Devices' }).click();
    const status = page.locator(`tr[data-device="${deviceId}"] [data-status]`);
    await expect.poll(() => status.getAttribute('data-status'), { timeout: 5000 }).toBe('online');
    await shot(page, '03-devices-online');
    agentProc!.signal('SIGTERM');
    expect((await agentProc!.waitExit(15_000)).code).toBe(0);
    await expect.poll(() => status.getAttribute('data-status'), { timeout: 5000 }).toBe('offline');
    await shot(page, '04-devices-offline');

    await page.getByRole('link', { name: 'Groups' }).click();
    await page.getByRole('img', { name: 'customer set up' }).first().waitFor();
    await shot(page, '05-groups');
    await page.getByRole('link', { name: 'Health' }).click();
    await page.getByRole('heading', { name: 'Health' }).waitFor();
    await shot(page, '06-health');
    await page.context().close();
  });

  it("keeps a customer-scoped user away from another customer's devices, in the views, the feed and guessed URLs", async () => {
    const scoped = await newPage();
    await login(scoped, scopedUser.username, scopedUser.password);
    await expect.poll(() => scoped.locator('table.devices caption').textContent(), { timeout: 5000 }).toMatch(/of 0 devices/);
    await expect(scoped.getByRole('link', { name: 'MSP sync' }).count()).resolves.toBe(0);
    await scoped.getByRole('link', { name: 'Live feed' }).click();
    await scoped.locator('.feed-state.open').waitFor();
    const admin = await newPage();
    await login(admin, 'admin', ADMIN_PASSWORD);
    await admin.getByRole('link', { name: 'Live feed' }).click();
    await admin.locator('.feed-state.open').waitFor();
    startAgent();
    // The admin sees the connect; by then the scoped page got the same batch tick and must show nothing.
    await admin.locator(`tr[data-kind="connect"][data-device="${deviceId}"]`).waitFor({ timeout: 10_000 });
    await admin.locator(`tr[data-kind="checkin"][data-device="${deviceId}"]`).first().waitFor({ timeout: 6000 });
    expect(await scoped.locator('tbody tr').count()).toBe(0);
    expect(await scoped.locator(`[data-device="${deviceId}"]`).count()).toBe(0);
    // Guessing: the device's id, its group, the admin routes.
    const guesses = await scoped.evaluate(async (id) => {
      const get = async (url: string) => (await fetch(url)).status;
      const health = (await (await fetch('/api/v1/health')).json()) as { customers: { name: string }[] };
      return {
        device: await get(`/api/v1/devices/${id}`),
        revoke: (await fetch(`/api/v1/devices/${id}/revoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status,
        all: await get('/api/v1/devices?group=All'),
        accounts: await get('/api/v1/msp/accounts'),
        healthCustomers: health.customers.map((c) => c.name),
      };
    }, deviceId);
    // The revoke without the CSRF token is refused before scope is even looked at.
    expect(guesses).toEqual({ device: 404, revoke: 403, all: 404, accounts: 403, healthCustomers: ['Beta'] });
    await scoped.getByRole('link', { name: 'Devices' }).click();
    await expect.poll(() => scoped.locator('table.devices caption').textContent(), { timeout: 5000 }).toMatch(/of 0 devices/);
    await shot(scoped, '07-scoped-user');
    agentProc!.signal('SIGTERM');
    await agentProc!.waitExit(15_000);
    await scoped.context().close();
    await admin.context().close();
  });
});
