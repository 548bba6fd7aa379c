import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../common/close-codes.js';
import { Harness, type TestServer } from '../../test/support/harness.js';
import type { AccountStatus } from '../msp/sync-service.js';
import type { PortalCompany } from '../msp/tree.js';
import type { SyncRun } from '../storage/msp-store.js';
import { company, groupPaths, writeExport } from './msp-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

type Err = { error: { code: string; message: string } };
type Instance = { instanceId: string; creator: { portal: string; accountExternalId: string; accountName: string } | null; deleted: { at: number } | null };

const mspTree = [company('m1', 'acct-1', 1006, 'Contoso'), company('c1', 'm1', 1007, 'Acme'), company('c2', 'm1', 1007, 'Beta')];
const BUSINESS_ACCOUNT = { id: 'biz-7', name: 'Woodgrove Business', type: 1005, status: 'Active', email: null };
const businessTree = [company('b1', 'biz-7', 1007, 'Tailspin'), company('b2', 'biz-7', 1007, 'Litware')];

/** Writes an export of the vendor's business portal (another account, another file). */
async function writeBusinessExport(dir: string, companies: readonly PortalCompany[]): Promise<string> {
  const file = path.join(dir, 'business.json');
  await fs.writeFile(file, JSON.stringify({ format: 'rollcall-msp-tree', version: 1, portal: 'business', account: BUSINESS_ACCOUNT, companies }));
  return file;
}

/** A server with the MSP account linked first (the creator) and the business account second. */
async function mixed() {
  const s = await h.startServer();
  const dir = await h.tempDir();
  const mspFile = await writeExport(dir, mspTree);
  const bizFile = await writeBusinessExport(dir, businessTree);
  const first = await s.api<{ run: SyncRun }>('POST', '/api/v1/msp/link', { source: 'file', file: mspFile, portal: 'msp' });
  expect(first.status).toBe(201);
  const second = await s.api<{ run: SyncRun; account: { portal: string } }>('POST', '/api/v1/msp/link', { source: 'file', file: bizFile, portal: 'business' });
  expect(second.status).toBe(201);
  expect(second.body.account.portal).toBe('business');
  const instanceId = (await s.api<Instance>('GET', '/api/v1/instance')).body.instanceId;
  return { s, dir, mspFile, bizFile, instanceId };
}

async function accounts(s: TestServer): Promise<AccountStatus[]> {
  return (await s.api<{ accounts: AccountStatus[] }>('GET', '/api/v1/msp/accounts')).body.accounts;
}

describe('mixed accounts', () => {
  it('records the first linked account as the creator and uses a second account from the other portal alongside', async () => {
    const { s, dir, instanceId } = await mixed();
    const instance = (await s.api<Instance>('GET', '/api/v1/instance')).body;
    expect(instance.creator).toMatchObject({ portal: 'msp', accountExternalId: 'acct-1', accountName: 'Northwind' });
    expect(instance.deleted).toBeNull();
    expect(instanceId).toBe((await s.api<{ instanceId: string }>('GET', '/api/v1/server')).body.instanceId);
    expect(await groupPaths(s)).toEqual([
      'All',
      'All/Lost & found',
      'All/Northwind',
      'All/Northwind/Contoso',
      'All/Northwind/Contoso/Acme',
      'All/Northwind/Contoso/Beta',
      'All/Woodgrove Business',
      'All/Woodgrove Business/Litware',
      'All/Woodgrove Business/Tailspin',
    ]);
    const both = await accounts(s);
    expect(both.map((a) => [a.account.portal, a.account.externalId, a.state])).toEqual([
      ['msp', 'acct-1', 'synchronized'],
      ['business', 'biz-7', 'synchronized'],
    ]);

    const unnamed = await s.api<Err>('POST', '/api/v1/msp/sync', {});
    expect({ status: unnamed.status, code: unnamed.body.error.code }).toEqual({ status: 409, code: 'MSP_ACCOUNT_AMBIGUOUS' });
    await writeBusinessExport(dir, [...businessTree, company('b3', 'biz-7', 1007, 'Fourth Coffee')]);
    const biz = await s.api<{ run: SyncRun }>('POST', '/api/v1/msp/sync', { account: 'biz-7' });
    expect(biz.body.run).toMatchObject({ outcome: 'succeeded', added: 1, accountId: both[1]!.account.id });
    const msp = await s.api<{ run: SyncRun }>('POST', '/api/v1/msp/sync', { account: 'Northwind' });
    expect(msp.body.run).toMatchObject({ outcome: 'succeeded', added: 0, accountId: both[0]!.account.id });
    expect(await groupPaths(s)).toContain('All/Woodgrove Business/Fourth Coffee');
    const customers = (await s.api<{ customers: { name: string; accountId: string }[] }>('GET', '/api/v1/customers')).body.customers;
    expect(customers.map((c) => c.name).sort()).toEqual(['Acme', 'Beta', 'Fourth Coffee', 'Litware', 'Tailspin']);
    expect((await s.api<Instance>('GET', '/api/v1/instance')).body.creator).toMatchObject({ portal: 'msp', accountExternalId: 'acct-1' });
  });
});

describe('deleting the instance', () => {
  it('is refused to an account that did not create the instance, naming the creator', async () => {
    const { s, mspFile, bizFile, instanceId } = await mixed();
    const agent = await s.enrollAgent({ group: 'Northwind/Contoso/Acme' });
    const refused = await s.api<Err>('POST', '/api/v1/instance/delete', { credentials: { source: 'file', file: bizFile, portal: 'business' }, confirm: instanceId });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('INSTANCE_NOT_CREATOR');
    expect(refused.body.error.message).toBe('only the account that created this instance may delete it: the MSP portal account acct-1 (Northwind)');
    // The creator's export, but claimed for the other portal, is refused as a contradiction.
    const otherPortal = await s.api<Err>('POST', '/api/v1/instance/delete', { credentials: { source: 'file', file: mspFile, portal: 'business' }, confirm: instanceId });
    expect({ status: otherPortal.status, code: otherPortal.body.error.code }).toEqual({ status: 409, code: 'SYNC_PORTAL_MISMATCH' });
    expect((await accounts(s)).every((a) => a.account.linked)).toBe(true);
    expect((await s.api<{ status: string }>('GET', `/api/v1/devices/${agent.deviceId}`)).body.status).not.toBe('revoked');
    expect((await s.api<Instance>('GET', '/api/v1/instance')).body.deleted).toBeNull();
  });

  it('is refused when the confirmation is not the instance id', async () => {
    const { s, mspFile, instanceId } = await mixed();
    const res = await s.api<Err>('POST', '/api/v1/instance/delete', { credentials: { source: 'file', file: mspFile, portal: 'msp' }, confirm: `${instanceId}x` });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('INSTANCE_CONFIRM_MISMATCH');
    expect(res.body.error.message).toContain(instanceId);
    expect((await accounts(s)).every((a) => a.account.linked)).toBe(true);
  });

  it('revokes devices and tokens and unlinks every account when the creator asks with the right confirmation', async () => {
    const { s, mspFile, instanceId } = await mixed();
    const connected = await s.enrollAgent({ group: 'Northwind/Contoso/Acme', hostname: 'acme-1' });
    const idle = await s.enrollAgent({ group: 'Woodgrove Business/Tailspin', hostname: 'tail-1' });
    const spare = (await s.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { group: 'Northwind/Contoso/Beta' })).body.token;
    const client = await s.rawClient(connected);
    await client.open();
    client.hello(connected.deviceId);
    await client.waitMessage('welcome');

    const res = await s.api<{ deleted: boolean; devicesRevoked: number }>('POST', '/api/v1/instance/delete', {
      credentials: { source: 'file', file: mspFile },
      confirm: instanceId,
    });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ deleted: true, devicesRevoked: 2 });
    expect((await client.waitClose()).code).toBe(CloseCode.REVOKED);
    for (const id of [connected.deviceId, idle.deviceId]) {
      expect((await s.api<{ status: string }>('GET', `/api/v1/devices/${id}`)).body.status).toBe('revoked');
    }
    const after = await accounts(s);
    expect(after.map((a) => [a.account.externalId, a.account.linked, a.state])).toEqual([
      ['acct-1', false, 'disconnected'],
      ['biz-7', false, 'disconnected'],
    ]);
    const tokens = (await s.api<{ tokens: { revokedAt: string | null }[] }>('GET', '/api/v1/enrollment-tokens')).body.tokens;
    expect(tokens.length).toBeGreaterThanOrEqual(3);
    expect(tokens.every((t) => t.revokedAt !== null)).toBe(true);
    await expect(s.enrollAgent({ token: spare, hostname: 'late-pc' })).rejects.toMatchObject({ code: 'ENROLL_TOKEN_REVOKED' });
    const again = await s.rawClient(connected);
    expect((await again.waitRefusal()).closeCodeHeader).toBe(String(CloseCode.REVOKED));
    expect((await s.api<Instance>('GET', '/api/v1/instance')).body.deleted).toMatchObject({ at: expect.any(Number) });
  });
});
