import { afterEach, describe, expect, it } from 'vitest';
import { ConsoleClient, openFeed, type FeedStream } from '../../test/support/console-client.js';
import { Harness, waitFor, type TestServer } from '../../test/support/harness.js';
import type { CustomerView, SetupResult } from '../msp/customers.js';
import { company, writeExport } from './msp-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

type Err = { error: { code: string; message: string } };
type Device = { id: string; groupId: string; hostname: string };

/** Two customers, Acme and Beta, each with one enrolled device and an enrollment token; Acme set up (its admin user made by setup). */
async function twoCustomers() {
  const s = await h.startServer();
  const file = await writeExport(await h.tempDir(), [company('m1', 'acct-1', 1006, 'Contoso'), company('c1', 'm1', 1007, 'Acme'), company('c2', 'm1', 1007, 'Beta')]);
  expect((await s.api('POST', '/api/v1/msp/link', { source: 'file', file })).status).toBe(201);
  const { body: setup } = await s.api<SetupResult>('POST', '/api/v1/customers/setup', { customer: 'Acme' });
  const { body: list } = await s.api<{ customers: CustomerView[] }>('GET', '/api/v1/customers');
  const acme = list.customers.find((c) => c.name === 'Acme')!;
  const beta = list.customers.find((c) => c.name === 'Beta')!;
  const acmeDevice = await s.enrollAgent({ token: setup.token.secret, hostname: 'acme-pc' });
  const betaToken = await s.api<{ id: string; token: string }>('POST', '/api/v1/enrollment-tokens', { group: beta.groupId });
  const betaDevice = await s.enrollAgent({ token: betaToken.body.token, hostname: 'beta-pc' });
  if (!('password' in setup.user)) throw new Error('setup made no user');
  const user = new ConsoleClient(s);
  expect((await user.login(setup.user.username, setup.user.password)).status).toBe(200);
  return { s, acme, beta, acmeDevice, betaDevice, betaTokenId: betaToken.body.id, user };
}

async function connectAgent(s: TestServer, agent: { keyPem: string; certPem: string; deviceId: string; fingerprint: string }) {
  const c = await s.rawClient(agent);
  await c.open();
  c.hello(agent.deviceId, { fingerprint: agent.fingerprint });
  await c.waitMessage('welcome');
  return c;
}

describe('customer-scoped users', () => {
  it('see only their customer subtree in devices, groups, customers and tokens', async () => {
    const { s, acme, acmeDevice, user } = await twoCustomers();
    const devices = await user.call<{ devices: Device[]; total: number }>('GET', '/api/v1/devices');
    expect(devices.body.devices.map((d) => d.id)).toEqual([acmeDevice.deviceId]);
    expect(devices.body.total).toBe(1);
    const groups = await user.call<{ groups: { id: string }[] }>('GET', '/api/v1/groups');
    expect(groups.body.groups.map((g) => g.id)).toEqual([acme.groupId]);
    const customers = await user.call<{ customers: CustomerView[] }>('GET', '/api/v1/customers');
    expect(customers.body.customers.map((c) => c.name)).toEqual(['Acme']);
    const tokens = await user.call<{ tokens: { groupId: string }[] }>('GET', '/api/v1/enrollment-tokens');
    expect(tokens.body.tokens.length).toBeGreaterThan(0);
    expect(tokens.body.tokens.every((t) => t.groupId === acme.groupId)).toBe(true);
    // The admin sees both customers' devices.
    expect((await s.api<{ devices: Device[] }>('GET', '/api/v1/devices')).body.devices).toHaveLength(2);
  });

  it("get 404, as for unknown ids, for another customer's devices, groups and tokens, whatever the route", async () => {
    const { s, acme, beta, acmeDevice, betaDevice, betaTokenId, user } = await twoCustomers();
    const cases: [('GET' | 'POST'), string, unknown, string][] = [
      ['GET', `/api/v1/devices/${betaDevice.deviceId}`, undefined, 'DEVICE_NOT_FOUND'],
      ['POST', `/api/v1/devices/${betaDevice.deviceId}/revoke`, {}, 'DEVICE_NOT_FOUND'],
      ['POST', `/api/v1/devices/${betaDevice.deviceId}/move`, { group: acme.groupId }, 'DEVICE_NOT_FOUND'],
      ['POST', `/api/v1/devices/${acmeDevice.deviceId}/move`, { group: beta.groupId }, 'GROUP_NOT_FOUND'],
      ['POST', `/api/v1/devices/${acmeDevice.deviceId}/move`, { group: beta.groupPath }, 'GROUP_NOT_FOUND'],
      ['GET', `/api/v1/devices?group=${encodeURIComponent(beta.groupId)}`, undefined, 'GROUP_NOT_FOUND'],
      ['GET', `/api/v1/devices?group=All`, undefined, 'GROUP_NOT_FOUND'],
      ['GET', `/api/v1/feed?customer=${encodeURIComponent(beta.groupId)}`, undefined, 'GROUP_NOT_FOUND'],
      ['POST', '/api/v1/enrollment-tokens', { group: beta.groupId }, 'GROUP_NOT_FOUND'],
      ['POST', `/api/v1/enrollment-tokens/${betaTokenId}/revoke`, {}, 'TOKEN_NOT_FOUND'],
      ['POST', '/api/v1/api-tokens', { name: 'x', group: beta.groupId }, 'GROUP_NOT_FOUND'],
    ];
    for (const [method, path, body, code] of cases) {
      const res = await user.call<Err>(method, path, body);
      expect({ path, status: res.status, code: res.body.error.code }).toEqual({ path, status: 404, code });
    }
    // Nothing changed for Beta.
    const betaNow = await s.api<{ revokedAt: string | null; groupId: string }>('GET', `/api/v1/devices/${betaDevice.deviceId}`);
    expect(betaNow.body).toMatchObject({ revokedAt: null, groupId: beta.groupId });
    // Within its own subtree the user can act.
    expect((await user.call('POST', `/api/v1/devices/${acmeDevice.deviceId}/revoke`, {})).status).toBe(200);
    expect((await user.call('POST', '/api/v1/enrollment-tokens', { group: acme.groupId })).status).toBe(201);
  });

  it('are refused (403) on every admin-only route listed in the OpenAPI document', async () => {
    const { s, user } = await twoCustomers();
    const doc = (await user.call<{ paths: Record<string, Record<string, { 'x-rollcall-access': string }>> }>('GET', '/api/openapi.json')).body;
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (op['x-rollcall-access'] !== 'admin') continue;
        const url = path.replace(/\{[^}]+\}/g, 'x');
        const res = await user.call<Err>(method.toUpperCase() as 'GET' | 'POST' | 'DELETE', url, method === 'get' || method === 'delete' ? undefined : {});
        expect({ url, method, status: res.status, code: res.body.error.code }).toEqual({ url, method, status: 403, code: 'FORBIDDEN' });
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(12);
    expect(s.logs.filter((l) => l.reason === 'FORBIDDEN').length).toBe(checked);
  });

  it("see only their own customer's row in the health report, and no alerts", async () => {
    const { s, user } = await twoCustomers();
    const mine = await user.call<{ customers: { name: string }[]; alerts: unknown[]; ports: { observed: { customersReaching: number } }[] }>('GET', '/api/v1/health');
    expect(mine.status).toBe(200);
    expect(mine.body.customers.map((c) => c.name)).toEqual(['Acme']);
    expect(mine.body.alerts).toEqual([]);
    expect(mine.body.ports.every((p) => p.observed.customersReaching === 0)).toBe(true);
    const all = await s.api<{ customers: { name: string }[] }>('GET', '/api/v1/health');
    expect(all.body.customers.map((c) => c.name).sort()).toEqual(['Acme', 'Beta']);
  });

  it('make API tokens scoped like themselves, and those tokens see no more', async () => {
    const { s, acme, acmeDevice, betaDevice, user } = await twoCustomers();
    const made = await user.call<{ token: string; scope: string; groupId: string }>('POST', '/api/v1/api-tokens', { name: 'acme automation' });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ scope: 'group', groupId: acme.groupId });
    const t = made.body.token;
    const devices = await s.api<{ devices: Device[] }>('GET', '/api/v1/devices', undefined, t);
    expect(devices.body.devices.map((d) => d.id)).toEqual([acmeDevice.deviceId]);
    expect((await s.api<Err>('GET', `/api/v1/devices/${betaDevice.deviceId}`, undefined, t)).status).toBe(404);
    expect((await s.api<Err>('GET', '/api/v1/msp/accounts', undefined, t)).body.error.code).toBe('FORBIDDEN');
    // The admin's tokens are not listed to the scoped user, and cannot be revoked by it.
    const listed = await user.call<{ tokens: { id: string }[] }>('GET', '/api/v1/api-tokens');
    expect(listed.body.tokens).toHaveLength(1);
    const adminTokens = await s.api<{ tokens: { id: string; scope: string }[] }>('GET', '/api/v1/api-tokens');
    const adminOne = adminTokens.body.tokens.find((x) => x.scope === 'admin')!;
    expect((await user.call<Err>('POST', `/api/v1/api-tokens/${adminOne.id}/revoke`, {})).body.error.code).toBe('API_TOKEN_NOT_FOUND');
    expect((await user.call('POST', `/api/v1/api-tokens/${listed.body.tokens[0]!.id}/revoke`, {})).status).toBe(200);
    expect((await s.api('GET', '/api/v1/devices', undefined, t)).status).toBe(401);
  });

  it('see check-ins, connects, disconnects and rejects of their devices in the feed', async () => {
    const { s, acmeDevice, user } = await twoCustomers();
    const feed = await openFeed(s, { cookie: user.cookie! });
    h.defer(() => feed.close());
    const kinds = () => new Set(feed.batches.flatMap((b) => b.items.filter((i) => i.deviceId === acmeDevice.deviceId).map((i) => i.kind)));
    const c = await connectAgent(s, acmeDevice);
    c.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 1 });
    await waitFor(() => kinds().has('connect') && kinds().has('checkin'), 'connect and check-in', 5000);
    expect((await user.call('POST', `/api/v1/devices/${acmeDevice.deviceId}/revoke`, {})).status).toBe(200);
    await waitFor(() => kinds().has('disconnect'), 'the disconnect of the revoked channel', 5000);
    const again = await s.rawClient(acmeDevice);
    await again.waitRefusal();
    await waitFor(() => kinds().has('reject'), 'the reject of the revoked device', 5000);
    const reject = feed.batches.flatMap((b) => b.items).find((i) => i.kind === 'reject')!;
    expect(reject).toMatchObject({ deviceId: acmeDevice.deviceId, detail: 'DEVICE_REVOKED' });
  });

  it("get only their own devices' events in the live feed, while an admin gets both", async () => {
    const { s, acmeDevice, betaDevice, user } = await twoCustomers();
    const feeds: FeedStream[] = [];
    const scoped = await openFeed(s, { cookie: user.cookie! });
    const admin = await openFeed(s, { bearer: s.adminToken });
    feeds.push(scoped, admin);
    h.defer(() => feeds.forEach((f) => f.close()));
    expect([scoped.status, admin.status]).toEqual([200, 200]);
    await connectAgent(s, acmeDevice);
    await connectAgent(s, betaDevice);
    const ids = (f: FeedStream) => new Set(f.batches.flatMap((b) => b.items.map((i) => i.deviceId)));
    await waitFor(() => ids(admin).has(acmeDevice.deviceId) && ids(admin).has(betaDevice.deviceId), 'both devices in the admin feed', 5000);
    await waitFor(() => ids(scoped).has(acmeDevice.deviceId), 'the Acme device in the scoped feed', 5000);
    expect(ids(scoped).has(betaDevice.deviceId)).toBe(false);
    expect(scoped.batches.every((b) => b.more === 0)).toBe(true);
  });
});
