import { afterEach, describe, expect, it } from 'vitest';
import { IDENTIFY_PATH } from '../../common/enroll-api.js';
import { requestJson } from '../../common/https-json.js';
import { Harness } from '../../test/support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());

type Err = { error: { code: string; message: string } };

describe('console API', () => {
  it('refuses requests without a valid bearer token, logs them, and never echoes the token', async () => {
    const s = await h.startServer();
    for (const token of [null, 'rca_wrong', '']) {
      const res = await s.api<Err>('GET', '/api/v1/devices', undefined, token);
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('UNAUTHORIZED');
    }
    expect(s.logs.filter((l) => l.msg === 'API request refused')).toHaveLength(3);
    expect(JSON.stringify(s.logs)).not.toContain('rca_wrong');
    expect(JSON.stringify(s.logs)).not.toContain(s.adminToken);
  });

  it('answers the identification probe on both listeners with instance, role and the client address', async () => {
    const s = await h.startServer();
    const ca = s.server.pki.ca.certPem;
    const consoleId = await requestJson({ host: '127.0.0.1', port: s.server.consolePort, path: IDENTIFY_PATH, ca });
    const agentId = await requestJson({ host: '127.0.0.1', port: s.server.agentPort, path: IDENTIFY_PATH, ca });
    expect(consoleId.body).toMatchObject({ service: 'rollcall', role: 'console', instanceId: s.server.storage.instanceId, clientAddress: '127.0.0.1' });
    expect(agentId.body).toMatchObject({ service: 'rollcall', role: 'agent', instanceId: s.server.storage.instanceId, clientAddress: '127.0.0.1' });
  });

  it('creates groups and tokens, and prints a ready agent command with the agent port and CA pin', async () => {
    const s = await h.startServer();
    const g = await s.api<{ path: string }>('POST', '/api/v1/groups', { path: 'MSP/Acme' });
    expect(g).toMatchObject({ status: 201, body: { path: 'All/MSP/Acme' } });
    const t = await s.api<{ token: string; agentCommand: string; maxUses: number; expiresAt: string }>('POST', '/api/v1/enrollment-tokens', { group: 'MSP/Acme', maxUses: 5, ttlSec: 3600 });
    expect(t.status).toBe(201);
    expect(t.body.token).toMatch(/^rce_[A-Za-z0-9_-]{43}$/);
    expect(t.body.agentCommand).toContain(`:${s.server.agentPort} --ca-pin ${s.server.pki.caPin} --token ${t.body.token}`);
    expect(Date.parse(t.body.expiresAt) - Date.now()).toBeGreaterThan(3500_000);
    const list = await s.api<{ tokens: { id: string; uses: number; groupPath: string }[] }>('GET', '/api/v1/enrollment-tokens');
    expect(JSON.stringify(list.body)).not.toContain(t.body.token);
    expect(list.body.tokens[0]).toMatchObject({ uses: 0, groupPath: 'All/MSP/Acme' });
    const revoked = await s.api<{ revokedAt: string | null }>('POST', `/api/v1/enrollment-tokens/${list.body.tokens[0]!.id}/revoke`, {});
    expect(revoked.body.revokedAt).not.toBeNull();
  });

  it('answers bad bodies, unknown groups, devices and routes with clear codes', async () => {
    const s = await h.startServer();
    const cases: [string, string, unknown, number, string][] = [
      ['POST', '/api/v1/enrollment-tokens', { group: 'Nope' }, 404, 'GROUP_NOT_FOUND'],
      ['POST', '/api/v1/enrollment-tokens', { group: 'All', maxUses: 0 }, 400, 'BAD_REQUEST'],
      ['POST', '/api/v1/enrollment-tokens', { group: 'All', bogus: 1 }, 400, 'BAD_REQUEST'],
      ['POST', '/api/v1/groups', { path: '' }, 400, 'BAD_REQUEST'],
      ['POST', '/api/v1/groups', { path: 'All' }, 400, 'GROUP_NAME_INVALID'],
      ['GET', '/api/v1/devices/dev_nothing', undefined, 404, 'DEVICE_NOT_FOUND'],
      ['POST', '/api/v1/devices/dev_nothing/revoke', {}, 404, 'DEVICE_NOT_FOUND'],
      ['DELETE', '/api/v1/groups/grp_lost_found', undefined, 409, 'GROUP_BUILTIN'],
      ['GET', '/api/v1/nothing', undefined, 404, 'NOT_FOUND'],
      ['POST', '/api/v1/enrollment-tokens/tok_none/revoke', {}, 404, 'TOKEN_NOT_FOUND'],
    ];
    for (const [method, path, body, status, code] of cases) {
      const res = await s.api<Err>(method as 'GET', path, body);
      expect({ path, status: res.status, code: res.body.error.code }).toEqual({ path, status, code });
      expect(res.body.error.message.length).toBeGreaterThan(5);
    }
  });

  it('lists devices with status and group path, filters by group subtree, and moves a device', async () => {
    const s = await h.startServer();
    const a = await s.enrollAgent({ group: 'Customers/Acme', hostname: 'acme-pc' });
    const b = await s.enrollAgent({ group: 'Customers/Beta', hostname: 'beta-pc' });
    const all = await s.api<{ devices: { id: string; status: string; groupPath: string; hostname: string }[] }>('GET', '/api/v1/devices');
    expect(all.body.devices.map((d) => [d.hostname, d.status, d.groupPath])).toEqual([
      ['acme-pc', 'never_connected', 'All/Customers/Acme'],
      ['beta-pc', 'never_connected', 'All/Customers/Beta'],
    ]);
    const customers = await s.api<{ devices: unknown[] }>('GET', `/api/v1/devices?group=${encodeURIComponent('Customers')}`);
    expect(customers.body.devices).toHaveLength(2);
    const acme = await s.api<{ devices: { id: string }[] }>('GET', '/api/v1/devices?group=Customers/Acme');
    expect(acme.body.devices.map((d) => d.id)).toEqual([a.deviceId]);
    const moved = await s.api<{ groupPath: string }>('POST', `/api/v1/devices/${b.deviceId}/move`, { group: 'Customers/Acme' });
    expect(moved.body.groupPath).toBe('All/Customers/Acme');
    const groups = await s.api<{ groups: { path: string; devices: number }[] }>('GET', '/api/v1/groups');
    expect(groups.body.groups.find((g) => g.path === 'All/Customers/Acme')?.devices).toBe(2);
    expect(groups.body.groups.find((g) => g.path === 'All/Lost & found')?.devices).toBe(0);
  });
});
