import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import type { AccountStatus } from '../msp/sync-service.js';
import type { SyncRun } from '../storage/msp-store.js';
import { ACCOUNT, company, groupPaths, treeDump, writeExport } from './msp-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

type Err = { error: { code: string; message: string } };
const base = [company('m1', 'acct-1', 1006, 'Contoso'), company('m2', 'acct-1', 1006, 'Fabrikam'), company('c1', 'm1', 1007, 'Acme'), company('c2', 'm1', 1007, 'Beta'), company('c3', 'm2', 1007, 'Gamma')];

async function linked() {
  const s = await h.startServer();
  const dir = await h.tempDir();
  const file = await writeExport(dir, base);
  const res = await s.api<{ run: SyncRun; account: { id: string; rootGroupId: string } }>('POST', '/api/v1/msp/link', { source: 'file', file });
  expect(res.status).toBe(201);
  return { s, dir, file, link: res.body };
}

async function sync(s: Awaited<ReturnType<typeof linked>>['s']): Promise<SyncRun> {
  return (await s.api<{ run: SyncRun }>('POST', '/api/v1/msp/sync', {})).body.run;
}

describe('MSP link and sync', () => {
  it('imports the structure under a root group for the account, with customers not set up', async () => {
    const { s, link } = await linked();
    expect(link.run).toMatchObject({ outcome: 'succeeded', fetched: 5, added: 5, renamed: 0 });
    expect(await groupPaths(s)).toEqual([
      'All',
      'All/Lost & found',
      'All/Northwind',
      'All/Northwind/Contoso',
      'All/Northwind/Contoso/Acme',
      'All/Northwind/Contoso/Beta',
      'All/Northwind/Fabrikam',
      'All/Northwind/Fabrikam/Gamma',
    ]);
    const customers = (await s.api<{ customers: { name: string; status: string }[] }>('GET', '/api/v1/customers')).body.customers;
    expect(customers.map((c) => [c.name, c.status])).toEqual([
      ['Acme', 'not_set_up'],
      ['Beta', 'not_set_up'],
      ['Gamma', 'not_set_up'],
    ]);
    const status = (await s.api<{ accounts: AccountStatus[] }>('GET', '/api/v1/msp/accounts')).body.accounts;
    expect(status).toHaveLength(1);
    expect(status[0]).toMatchObject({ state: 'synchronized', account: { name: 'Northwind', portal: 'msp', source: 'file', linked: true } });
    expect(status[0]!.nextSyncAt! - status[0]!.lastRun!.finishedAt).toBe(86_400_000);
    expect(JSON.stringify(status)).not.toContain('apiSecret');
    expect((await s.api<{ creator: { accountExternalId: string } }>('GET', '/api/v1/instance')).body.creator).toMatchObject({ accountExternalId: 'acct-1', portal: 'msp' });
  });

  it('writes nothing to the tree when a second sync finds no upstream change, but records the run', async () => {
    const { s } = await linked();
    const before = await treeDump(s);
    const run = await sync(s);
    expect(run).toMatchObject({ outcome: 'succeeded', added: 0, renamed: 0, moved: 0, unlinked: 0, relinked: 0, updated: 0, trigger: 'manual' });
    expect(await treeDump(s)).toBe(before);
    expect((await s.server.storage.msp.runs((await s.server.storage.msp.accounts())[0]!.id)).length).toBe(2);
  });

  it('follows renames, moves with devices, new, removed, returning and suspended customers', async () => {
    const { s, dir } = await linked();
    const acme = await s.enrollAgent({ group: 'Northwind/Contoso/Acme', hostname: 'acme-1' });
    const gammaGroup = (await s.server.storage.groups.resolve('Northwind/Fabrikam/Gamma')).id;
    await writeExport(dir, [
      company('m1', 'acct-1', 1006, 'Contoso'),
      company('m2', 'acct-1', 1006, 'Fabrikam'),
      company('c1', 'm2', 1007, 'Acme Ltd'),
      company('c2', 'm1', 1007, 'Beta', 'Suspended'),
      company('c4', 'm1', 1007, 'Delta'),
    ]);
    const run = await sync(s);
    expect(run).toMatchObject({ added: 1, renamed: 1, moved: 1, unlinked: 1, relinked: 0, updated: 1 });
    expect((await s.api<{ groupPath: string }>('GET', `/api/v1/devices/${acme.deviceId}`)).body.groupPath).toBe('All/Northwind/Fabrikam/Acme Ltd');
    const customers = (await s.api<{ customers: { name: string; status: string; upstreamStatus: string; groupId: string }[] }>('GET', '/api/v1/customers')).body.customers;
    expect(customers.find((c) => c.name === 'Gamma')).toMatchObject({ status: 'unlinked', groupId: gammaGroup });
    expect(customers.find((c) => c.name === 'Beta')).toMatchObject({ status: 'not_set_up', upstreamStatus: 'Suspended' });
    expect(customers.find((c) => c.name === 'Delta')).toMatchObject({ status: 'not_set_up' });
    await writeExport(dir, base);
    const back = await sync(s);
    expect(back).toMatchObject({ relinked: 1, unlinked: 1 });
    const again = (await s.api<{ customers: { name: string; status: string; groupId: string }[] }>('GET', '/api/v1/customers')).body.customers;
    expect(again.find((c) => c.name === 'Gamma')).toMatchObject({ status: 'not_set_up', groupId: gammaGroup });
    expect((await s.api<{ groupPath: string }>('GET', `/api/v1/devices/${acme.deviceId}`)).body.groupPath).toBe('All/Northwind/Contoso/Acme');
  });

  it('changes nothing and records the reason when the source is broken, keeping the previous tree', async () => {
    const { s, dir, file } = await linked();
    const before = await treeDump(s);
    const broken = async (content: string, code: string) => {
      await fs.writeFile(file, content);
      const run = await sync(s);
      expect(run).toMatchObject({ outcome: 'failed', errorCode: code });
      expect(run.reason!.length).toBeGreaterThan(10);
      expect(await treeDump(s)).toBe(before);
    };
    await broken('{ not json', 'SYNC_FILE_INVALID');
    await writeExport(dir, [company('c1', 'c1', 1007)]);
    expect(await sync(s)).toMatchObject({ outcome: 'failed', errorCode: 'SYNC_INVALID_TREE' });
    await writeExport(dir, [company('c1', 'acct-1'), company('c1', 'acct-1')]);
    expect(await sync(s)).toMatchObject({ outcome: 'failed', errorCode: 'SYNC_INVALID_TREE' });
    await writeExport(dir, [company('c1', 'ghost')]);
    expect(await sync(s)).toMatchObject({ outcome: 'failed', errorCode: 'SYNC_INVALID_TREE', reason: expect.stringContaining('ghost') });
    await writeExport(dir, [company('c1', 'acct-1', 1007, 'x'.repeat(10_000))]);
    expect(await sync(s)).toMatchObject({ outcome: 'failed' });
    await writeExport(dir, base.map((c) => (c.parentId === 'acct-1' ? { ...c, parentId: 'someone-else' } : c)), 'tree.json', { ...ACCOUNT, id: 'someone-else' });
    expect(await sync(s)).toMatchObject({ outcome: 'failed', errorCode: 'SYNC_ACCOUNT_MISMATCH' });
    expect(await treeDump(s)).toBe(before);
    const status = (await s.api<{ accounts: AccountStatus[] }>('GET', '/api/v1/msp/accounts')).body.accounts[0]!;
    expect(status.state).toBe('failed');
    expect(status.lastRun).toMatchObject({ outcome: 'failed', errorCode: 'SYNC_ACCOUNT_MISMATCH' });
    expect(status.lastSuccess).toMatchObject({ outcome: 'succeeded', added: 5 });
    expect(s.logs.some((l) => l.msg === 'MSP sync failed; the previous tree stays in force')).toBe(true);
  });
});

describe('synced groups', () => {
  it('are read-only while linked, while the admin\u2019s own groups stay editable', async () => {
    const { s } = await linked();
    const refused: [string, string, unknown][] = [
      ['POST', `/api/v1/groups/${encodeURIComponent('Northwind/Contoso/Acme')}/rename`, { name: 'Hacked' }],
      ['POST', `/api/v1/groups/${encodeURIComponent('Northwind/Contoso')}/move`, { parent: 'Northwind/Fabrikam' }],
      ['DELETE', `/api/v1/groups/${encodeURIComponent('Northwind/Contoso/Beta')}`, undefined],
      ['POST', '/api/v1/groups', { path: 'Northwind/Contoso/Acme/Office' }],
      ['POST', `/api/v1/groups/${encodeURIComponent('Northwind/Contoso/Acme')}/move`, { parent: 'All' }],
    ];
    for (const [method, path, body] of refused) {
      const res = await s.api<Err>(method as 'POST', path, body);
      expect({ path, status: res.status, code: res.body.error.code }).toEqual({ path, status: 409, code: 'GROUP_SYNCED' });
    }
    expect((await s.api<Err>('DELETE', `/api/v1/groups/${encodeURIComponent('Northwind')}`)).body.error.code).toBe('GROUP_ACCOUNT_ROOT');
    expect((await s.api('POST', '/api/v1/groups', { path: 'Lab/Bench' })).status).toBe(201);
    expect((await s.api<{ path: string }>('POST', `/api/v1/groups/${encodeURIComponent('Lab')}/rename`, { name: 'Lab 2' })).body.path).toBe('All/Lab 2');
    expect((await s.api<Err>('POST', `/api/v1/groups/${encodeURIComponent('Lab 2')}/move`, { parent: 'Lab 2/Bench' })).body.error.code).toBe('GROUP_MOVE_INTO_ITSELF');
    expect((await s.api('DELETE', `/api/v1/groups/${encodeURIComponent('Lab 2/Bench')}`)).status).toBe(204);
  });

  it('hold computers only at the customer level', async () => {
    const { s } = await linked();
    const device = await s.enrollAgent({ group: 'Lab' });
    for (const group of ['Northwind', 'Northwind/Contoso']) {
      const token = await s.api<Err>('POST', '/api/v1/enrollment-tokens', { group });
      expect(token.body.error.code).toBe('GROUP_CANNOT_HOLD_DEVICES');
      const move = await s.api<Err>('POST', `/api/v1/devices/${device.deviceId}/move`, { group });
      expect(move.body.error.code).toBe('GROUP_CANNOT_HOLD_DEVICES');
    }
    const moved = await s.api<{ groupPath: string }>('POST', `/api/v1/devices/${device.deviceId}/move`, { group: 'Northwind/Contoso/Acme' });
    expect(moved.body.groupPath).toBe('All/Northwind/Contoso/Acme');
  });

  it('place an agent whose customer was unlinked into Lost & found with the reason', async () => {
    const { s, dir } = await linked();
    const token = (await s.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { group: 'Northwind/Fabrikam/Gamma' })).body.token;
    await writeExport(dir, base.filter((c) => c.id !== 'c3'));
    await sync(s);
    const device = await s.enrollAgent({ token, hostname: 'gamma-1' });
    const view = (await s.api<{ groupPath: string; placementReason: string }>('GET', `/api/v1/devices/${device.deviceId}`)).body;
    expect(view.groupPath).toBe('All/Lost & found');
    expect(view.placementReason).toBe('customer "Gamma" is unlinked (it was removed from the MSP portal)');
    const move = await s.api<Err>('POST', `/api/v1/devices/${device.deviceId}/move`, { group: 'Northwind/Fabrikam/Gamma' });
    expect(move.body.error.code).toBe('GROUP_UNLINKED');
  });
});

describe('unlinking an account', () => {
  it('unlinks every customer, keeps groups and computers, and lets empty unlinked groups be deleted', async () => {
    const { s } = await linked();
    const acme = await s.enrollAgent({ group: 'Northwind/Contoso/Acme' });
    const res = await s.api<{ account: { linked: boolean } }>('POST', '/api/v1/msp/unlink', {});
    expect(res.body.account.linked).toBe(false);
    const customers = (await s.api<{ customers: { status: string }[] }>('GET', '/api/v1/customers')).body.customers;
    expect(customers.every((c) => c.status === 'unlinked')).toBe(true);
    expect((await s.api<{ groupPath: string }>('GET', `/api/v1/devices/${acme.deviceId}`)).body.groupPath).toBe('All/Northwind/Contoso/Acme');
    expect((await s.api<{ accounts: AccountStatus[] }>('GET', '/api/v1/msp/accounts')).body.accounts[0]!.state).toBe('disconnected');
    expect((await s.api<Err>('DELETE', `/api/v1/groups/${encodeURIComponent('Northwind/Contoso/Acme')}`)).body.error.code).toBe('GROUP_NOT_EMPTY');
    expect((await s.api('DELETE', `/api/v1/groups/${encodeURIComponent('Northwind/Contoso/Beta')}`)).status).toBe(204);
    expect((await s.api<Err>('DELETE', `/api/v1/groups/${encodeURIComponent('Northwind')}`)).body.error.code).toBe('GROUP_ACCOUNT_ROOT');
    expect((await s.api<Err>('POST', '/api/v1/msp/sync', {})).body.error.code).toBe('MSP_ACCOUNT_UNLINKED');
  });
});

describe('the portal of a linked account', () => {
  it('comes from the export file unless asked for, and a contradiction is refused', async () => {
    const s = await h.startServer();
    const dir = await h.tempDir();
    const file = await writeExport(dir, base);
    const text = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
    await fs.writeFile(file, JSON.stringify({ ...text, portal: 'business' }));
    const refused = await s.api<Err>('POST', '/api/v1/msp/link', { source: 'file', file, portal: 'msp' });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('SYNC_PORTAL_MISMATCH');
    const ok = await s.api<{ account: { portal: string } }>('POST', '/api/v1/msp/link', { source: 'file', file });
    expect(ok.body.account.portal).toBe('business');
    expect((await s.api<{ creator: { portal: string } }>('GET', '/api/v1/instance')).body.creator.portal).toBe('business');
  });
});
