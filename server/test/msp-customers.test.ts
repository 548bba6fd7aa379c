import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor, type TestServer } from '../../test/support/harness.js';
import type { CustomerView, SetupResult } from '../msp/customers.js';
import type { SyncRun } from '../storage/msp-store.js';
import { company, writeExport } from './msp-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

type Err = { error: { code: string; message: string } };
type Device = { id: string; groupPath: string; presence: string };

const base = [
  company('m1', 'acct-1', 1006, 'Contoso'),
  company('m2', 'acct-1', 1006, 'Fabrikam'),
  company('c1', 'm1', 1007, 'Acme'),
  company('c2', 'm1', 1007, 'Beta'),
  company('c3', 'm2', 1007, 'Gamma'),
  company('c4', 'm2', 1007, 'Delta'),
];

async function linked(companies = base) {
  const s = await h.startServer();
  const dir = await h.tempDir();
  const file = await writeExport(dir, companies);
  const res = await s.api<{ run: SyncRun }>('POST', '/api/v1/msp/link', { source: 'file', file });
  expect(res.status).toBe(201);
  expect(res.body.run.outcome).toBe('succeeded');
  return { s, dir, file };
}

async function customers(s: TestServer): Promise<CustomerView[]> {
  const res = await s.api<{ customers: CustomerView[] }>('GET', '/api/v1/customers');
  expect(res.status).toBe(200);
  return res.body.customers;
}

const byName = (list: readonly CustomerView[], name: string): CustomerView => {
  const c = list.find((x) => x.name === name);
  if (!c) throw new Error(`no customer ${name} in ${list.map((x) => x.name).join(', ')}`);
  return c;
};

async function sync(s: TestServer): Promise<SyncRun> {
  const res = await s.api<{ run: SyncRun }>('POST', '/api/v1/msp/sync', {});
  expect(res.status).toBe(200);
  return res.body.run;
}

async function countRows(s: TestServer, table: 'users' | 'enrollment_tokens'): Promise<number> {
  return (await s.server.storage.db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`))!.n;
}

describe('the Managed customers view', () => {
  it('lists each customer with its name, group path, status and device counts by presence', async () => {
    const { s, dir } = await linked();
    const online = await s.enrollAgent({ group: 'Northwind/Contoso/Acme', hostname: 'acme-1' });
    const never = await s.enrollAgent({ group: 'Northwind/Contoso/Acme', hostname: 'acme-2' });
    const client = await s.rawClient(online);
    await client.open();
    client.hello(online.deviceId);
    await client.waitMessage('welcome');
    await waitFor(async () => (await s.api<Device>('GET', `/api/v1/devices/${online.deviceId}`)).body.presence === 'online', 'the connected agent to be online');
    expect((await s.api<Device>('GET', `/api/v1/devices/${never.deviceId}`)).body.presence).toBe('never_connected');
    expect((await s.api('POST', '/api/v1/customers/skip', { customer: 'Beta' })).status).toBe(200);
    await writeExport(dir, base.filter((c) => c.id !== 'c3'));
    expect(await sync(s)).toMatchObject({ outcome: 'succeeded', unlinked: 1 });

    const list = await customers(s);
    expect(list.map((c) => [c.name, c.groupPath, c.status])).toEqual([
      ['Acme', 'All/Northwind/Contoso/Acme', 'not_set_up'],
      ['Beta', 'All/Northwind/Contoso/Beta', 'normal'],
      ['Delta', 'All/Northwind/Fabrikam/Delta', 'not_set_up'],
      ['Gamma', 'All/Northwind/Fabrikam/Gamma', 'unlinked'],
    ]);
    expect(byName(list, 'Acme').devices).toEqual({ online: 1, late: 0, offline: 0, never_connected: 1, total: 2 });
    for (const name of ['Beta', 'Delta', 'Gamma']) {
      expect(byName(list, name).devices).toEqual({ online: 0, late: 0, offline: 0, never_connected: 0, total: 0 });
    }
    const acmeGroup = (await s.server.storage.groups.resolve('Northwind/Contoso/Acme')).id;
    expect(byName(list, 'Acme')).toMatchObject({ groupId: acmeGroup, externalId: 'c1', upstreamStatus: 'Active', setup: null });
    expect(byName(list, 'Beta').setup).toBe('skipped');
  });
});

describe('setting a customer up', () => {
  it('makes an enrollment token bound to the customer group and a customer admin whose password is shown once', async () => {
    const { s } = await linked();
    const acmeGroup = (await s.server.storage.groups.resolve('Northwind/Contoso/Acme')).id;
    const res = await s.api<SetupResult>('POST', '/api/v1/customers/setup', { customer: 'Acme' });
    expect(res.status).toBe(200);
    const { token, user, customer } = res.body;
    expect(customer).toMatchObject({ name: 'Acme', groupId: acmeGroup, status: 'normal', setup: 'done' });
    expect(token.agentCommand).toContain(`--token ${token.secret}`);
    expect(token.agentCommand).toContain(`--ca-pin ${s.server.pki.caPin}`);
    expect(token.agentCommand).toContain(`:${s.server.agentPort}`);
    expect(Date.parse(token.expiresAt)).toBeGreaterThan(Date.now() + 29 * 86_400_000);
    expect(user).toMatchObject({ username: 'acme-admin' });
    if (!('password' in user)) throw new Error('the first setup must show the password');
    const password = user.password;
    expect(password.length).toBeGreaterThanOrEqual(20);

    const row = await s.server.storage.db.get<{ password_hash: string; role: string; home_group_id: string }>(
      'SELECT password_hash, role, home_group_id FROM users WHERE username = ?',
      [user.username],
    );
    expect(row).toMatchObject({ role: 'customer_admin', home_group_id: acmeGroup });
    expect(row!.password_hash).toMatch(/^scrypt\$/);
    expect(row!.password_hash).not.toContain(password);
    expect(JSON.stringify(await s.server.storage.db.all('SELECT * FROM users'))).not.toContain(password);
    expect(s.logs.some((l) => l.msg === 'customer set up')).toBe(true);
    for (const line of s.logs) {
      expect(JSON.stringify(line)).not.toContain(password);
      expect(JSON.stringify(line)).not.toContain(token.secret);
    }
    expect(await s.server.storage.users.authenticate(user.username, password)).toMatchObject({ role: 'customer_admin', homeGroupId: acmeGroup });
    expect(await s.server.storage.users.authenticate(user.username, `${password}x`)).toBeUndefined();

    const tokenView = (await s.api<{ tokens: { id: string; groupId: string }[] }>('GET', '/api/v1/enrollment-tokens')).body.tokens.find((t) => t.id === token.id);
    expect(tokenView?.groupId).toBe(acmeGroup);
    const agent = await s.enrollAgent({ token: token.secret, hostname: 'acme-pc' });
    expect((await s.api<Device>('GET', `/api/v1/devices/${agent.deviceId}`)).body.groupPath).toBe('All/Northwind/Contoso/Acme');
    expect(byName(await customers(s), 'Acme')).toMatchObject({ status: 'normal', devices: { never_connected: 1, total: 1 } });
  });

  it('makes a new token but no second user when a customer is set up again', async () => {
    const { s } = await linked();
    const first = (await s.api<SetupResult>('POST', '/api/v1/customers/setup', { customer: 'Acme' })).body;
    const users = await countRows(s, 'users');
    const again = await s.api<SetupResult>('POST', '/api/v1/customers/setup', { customer: 'Acme' });
    expect(again.status).toBe(200);
    expect(again.body.user).toEqual({ username: first.user.username, existed: true });
    expect(again.body.token.id).not.toBe(first.token.id);
    expect(again.body.token.secret).not.toBe(first.token.secret);
    expect(await countRows(s, 'users')).toBe(users);
    const other = (await s.api<SetupResult>('POST', '/api/v1/customers/setup', { customer: 'Beta' })).body;
    expect(other.user).toMatchObject({ username: 'beta-admin', password: expect.any(String) });
    expect(await countRows(s, 'users')).toBe(users + 1);
  });

  it('refuses to set up a customer removed upstream, or any customer of an unlinked account', async () => {
    const { s, dir } = await linked();
    await writeExport(dir, base.filter((c) => c.id !== 'c3'));
    await sync(s);
    const users = await countRows(s, 'users');
    const tokens = await countRows(s, 'enrollment_tokens');
    const gamma = await s.api<Err>('POST', '/api/v1/customers/setup', { customer: 'Gamma' });
    expect(gamma.status).toBe(409);
    expect(gamma.body.error).toMatchObject({ code: 'GROUP_UNLINKED', message: expect.stringContaining('Gamma') });
    expect((await s.api<Err>('POST', '/api/v1/customers/skip', { customer: 'Gamma' })).body.error.code).toBe('GROUP_UNLINKED');
    expect((await s.api('POST', '/api/v1/msp/unlink', {})).status).toBe(200);
    const acme = await s.api<Err>('POST', '/api/v1/customers/setup', { customer: 'Acme' });
    expect({ status: acme.status, code: acme.body.error.code }).toEqual({ status: 409, code: 'GROUP_UNLINKED' });
    expect(await countRows(s, 'users')).toBe(users);
    expect(await countRows(s, 'enrollment_tokens')).toBe(tokens);
    expect(byName(await customers(s), 'Gamma').status).toBe('unlinked');
  });

  it('finds a customer by name, group path, group id or portal id, and refuses an ambiguous name', async () => {
    const { s } = await linked([...base, company('c5', 'm2', 1007, 'Acme')]);
    const paths = new Map((await customers(s)).map((c) => [c.externalId, c]));
    const cases: [string, string][] = [
      ['Beta', 'c2'],
      ['Northwind/Fabrikam/Gamma', 'c3'],
      ['All/Northwind/Contoso/Acme', 'c1'],
      [paths.get('c4')!.groupId, 'c4'],
      ['c5', 'c5'],
    ];
    for (const [ref, externalId] of cases) {
      const res = await s.api<{ customers: CustomerView[] }>('POST', '/api/v1/customers/skip', { customer: ref });
      expect({ ref, status: res.status, found: res.body.customers.map((c) => c.externalId) }).toEqual({ ref, status: 200, found: [externalId] });
    }
    const ambiguous = await s.api<Err>('POST', '/api/v1/customers/setup', { customer: 'Acme' });
    expect(ambiguous.status).toBe(409);
    expect(ambiguous.body.error.code).toBe('CUSTOMER_AMBIGUOUS');
    expect(ambiguous.body.error.message).toContain('All/Northwind/Contoso/Acme');
    expect(ambiguous.body.error.message).toContain('All/Northwind/Fabrikam/Acme');
    const missing = await s.api<Err>('POST', '/api/v1/customers/setup', { customer: 'Nobody' });
    expect({ status: missing.status, code: missing.body.error.code }).toEqual({ status: 404, code: 'CUSTOMER_NOT_FOUND' });
    const viaPath = await s.api<SetupResult>('POST', '/api/v1/customers/setup', { customer: 'Northwind/Fabrikam/Acme' });
    expect(viaPath.body.customer).toMatchObject({ externalId: 'c5', status: 'normal' });
    const sameName = await s.api<SetupResult>('POST', '/api/v1/customers/setup', { customer: 'c1' });
    expect([viaPath.body.user.username, sameName.body.user.username]).toEqual(['acme-admin', 'acme-admin-2']);
    expect(sameName.body.customer.groupPath).toBe('All/Northwind/Contoso/Acme');
  });

  it('refuses a name that two accounts share, even when each account has it once', async () => {
    const { s } = await linked([company('c1', 'acct-1', 1007, 'Shared Ltd')]);
    const dir = await h.tempDir();
    const other = await writeExport(dir, [company('b1', 'acct-2', 1007, 'Shared Ltd')], 'other.json', { id: 'acct-2', name: 'Woodgrove', type: 1005 }, 'business');
    expect((await s.api('POST', '/api/v1/msp/link', { source: 'file', file: other, portal: 'business' })).status).toBe(201);
    const res = await s.api<Err>('POST', '/api/v1/customers/skip', { customer: 'Shared Ltd' });
    expect({ status: res.status, code: res.body.error.code }).toEqual({ status: 409, code: 'CUSTOMER_AMBIGUOUS' });
    expect((await s.api<{ customers: CustomerView[] }>('POST', '/api/v1/customers/skip', { customer: 'Woodgrove/Shared Ltd' })).body.customers[0]!.externalId).toBe('b1');
  });
});

describe('skipping setup', () => {
  it('sets one customer normal, or exactly the linked customers not set up yet with allNew', async () => {
    const { s, dir } = await linked([...base, company('c5', 'm2', 1007, 'Epsilon')]);
    await s.api('POST', '/api/v1/customers/setup', { customer: 'Acme' });
    await writeExport(dir, [...base.filter((c) => c.id !== 'c3'), company('c5', 'm2', 1007, 'Epsilon')]);
    await sync(s);
    const one = await s.api<{ customers: CustomerView[] }>('POST', '/api/v1/customers/skip', { customer: 'Beta' });
    expect(one.body.customers.map((c) => [c.name, c.status, c.setup])).toEqual([['Beta', 'normal', 'skipped']]);
    expect(byName(await customers(s), 'Delta').status).toBe('not_set_up');

    const all = await s.api<{ customers: CustomerView[] }>('POST', '/api/v1/customers/skip', { allNew: true });
    expect(all.status).toBe(200);
    expect(all.body.customers.map((c) => c.name).sort()).toEqual(['Delta', 'Epsilon']);
    expect((await customers(s)).map((c) => [c.name, c.status, c.setup])).toEqual([
      ['Acme', 'normal', 'done'],
      ['Beta', 'normal', 'skipped'],
      ['Delta', 'normal', 'skipped'],
      ['Epsilon', 'normal', 'skipped'],
      ['Gamma', 'unlinked', null],
    ]);
    expect((await s.api<{ customers: CustomerView[] }>('POST', '/api/v1/customers/skip', { allNew: true })).body.customers).toEqual([]);
    expect((await s.api<Err>('POST', '/api/v1/customers/skip', { allNew: false })).status).toBe(400);
  });
});
