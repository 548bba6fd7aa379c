import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { buildPortalTree, FAKE_USER, startFakePortal } from '../../test/support/fake-portal.js';
import { Harness, type TestServer } from '../../test/support/harness.js';
import { CLI_EXIT, rollcallMain } from '../cli.js';
import { when } from '../cli-common.js';
import type { AccountStatus } from '../msp/sync-service.js';
import { company, writeExport } from './msp-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

const base = [company('m1', 'acct-1', 1006, 'Contoso'), company('c1', 'm1', 1007, 'Acme'), company('c2', 'm1', 1007, 'Beta'), company('c3', 'm1', 1007, 'Gamma', 'Suspended')];

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await rollcallMain(argv, env, { out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`) });
  return { code, out, err };
}

async function cliServer(): Promise<{ s: TestServer; d: string[]; dir: string }> {
  const s = await h.startServer();
  await s.server.writeLocalCliCredentials();
  return { s, d: ['--data-dir', s.dataDir], dir: await h.tempDir() };
}

async function linkedCli() {
  const { s, d, dir } = await cliServer();
  const file = await writeExport(dir, base);
  const linked = await run(['msp', 'link', '--file', file, ...d]);
  expect(linked.code).toBe(0);
  return { s, d, dir, file, linked };
}

const occurrences = (text: string, part: string): number => text.split(part).length - 1;

describe('rollcall msp', () => {
  it('links from a file, shows the status in words and as JSON, syncs and unlinks', async () => {
    const { d, dir, file, linked } = await linkedCli();
    expect(linked.out).toMatch(/^linked "Northwind" \(msp_[0-9a-f]+\); first sync: 4 companies; added 4, renamed 0, moved 0, unlinked 0, relinked 0, updated 0; \d+ ms/);

    const json = await run(['msp', 'status', '--json', ...d]);
    expect(json.code).toBe(0);
    const [st] = (JSON.parse(json.out) as { accounts: AccountStatus[] }).accounts;
    expect(st).toMatchObject({ state: 'synchronized', account: { name: 'Northwind', source: 'file', filePath: file }, lastRun: { outcome: 'succeeded', added: 4 } });
    expect(st!.nextSyncAt).toBe(st!.lastRun!.finishedAt + 86_400_000);
    expect(json.out).not.toContain('apiSecret');

    const human = await run(['msp', 'status', ...d]);
    expect(human.out).toContain(`Northwind (${st!.account.id}, msp portal, from file): synchronized\n`);
    expect(human.out).toMatch(/ {2}last sync: {4}4 companies; added 4, renamed 0/);
    expect(human.out).toContain(`  next sync:    ${when(st!.nextSyncAt)}`);

    await writeExport(dir, [...base, company('c4', 'm1', 1007, 'Delta')]);
    const synced = await run(['msp', 'sync', ...d]);
    expect(synced.code).toBe(0);
    expect(synced.out).toMatch(/^sync 5 companies; added 1, renamed 0, moved 0, unlinked 0, relinked 0, updated 0;/);

    await fs.writeFile(file, '{ broken');
    const failed = await run(['msp', 'sync', ...d]);
    expect(failed.code).toBe(CLI_EXIT.SERVER_ERROR);
    expect(failed.out).toMatch(/^sync failed at .+\[SYNC_FILE_INVALID\]\n$/);
    const afterFailure = await run(['msp', 'status', ...d]);
    expect(afterFailure.out).toContain('): failed\n');
    expect(afterFailure.out).toMatch(/ {2}last success: 5 companies; added 1/);

    const unlinked = await run(['msp', 'unlink', ...d]);
    expect(unlinked).toMatchObject({ code: 0, out: 'unlinked "Northwind": its customers are unlinked; groups and computers stay\n' });
    const gone = await run(['msp', 'status', ...d]);
    expect(gone.out).toContain('): disconnected\n');
    expect(gone.out).toContain('  next sync:    -');
    const again = await run(['msp', 'sync', ...d]);
    expect(again.code).toBe(CLI_EXIT.REFUSED);
    expect(again.err).toMatch(/\[MSP_ACCOUNT_UNLINKED\]\n$/);
  });

  it('links through the portal API with the password from the named environment variable', async () => {
    const fake = await startFakePortal({ tree: buildPortalTree({ managedMsps: 2, customers: 6 }) });
    h.defer(() => fake.close());
    const { s, d } = await cliServer();
    const api = ['msp', 'link', '--api', fake.url, '--user', FAKE_USER.username, '--password-env', 'PORTAL_PASSWORD', ...d];

    const unset = await run(api, {});
    expect(unset.code).toBe(CLI_EXIT.USAGE);
    expect(unset.err).toBe('error: the environment variable PORTAL_PASSWORD is empty or not set [USAGE]\n');
    expect((await run(api, { PORTAL_PASSWORD: '' })).code).toBe(CLI_EXIT.USAGE);
    expect(fake.calls['Token/Get']).toBe(0);
    expect(await s.server.storage.msp.accounts()).toEqual([]);

    const wrong = await run(api, { PORTAL_PASSWORD: 'not-the-password' });
    expect(wrong.code).toBe(CLI_EXIT.REFUSED);
    expect(wrong.err).toContain('SYNC_PORTAL_UNAUTHORIZED');
    expect(wrong.err).not.toContain('not-the-password');

    const ok = await run([...api, '--json'], { PORTAL_PASSWORD: FAKE_USER.password });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out)).toMatchObject({ account: { source: 'api', apiUser: FAKE_USER.username }, run: { outcome: 'succeeded', added: 8 } });
    expect(ok.out).not.toContain(FAKE_USER.password);
    const status = await run(['msp', 'status', ...d]);
    expect(status.out).toContain('Northwind MSP Manager (');
    expect(status.out).toContain('msp portal, from api): synchronized');
  });
});

describe('rollcall customers', () => {
  it('lists customers in a table, sets one up showing its secrets once, and skips the rest', async () => {
    const { s, d } = await linkedCli();
    await s.enrollAgent({ group: 'Northwind/Contoso/Beta', hostname: 'beta-1' });
    const table = await run(['customers', ...d]);
    expect(table.code).toBe(0);
    const lines = table.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CUSTOMER\s+GROUP\s+STATUS\s+UPSTREAM\s+ONLINE\s+LATE\s+OFFLINE\s+NEVER$/);
    expect(lines.slice(1)).toHaveLength(3);
    expect(lines[1]).toMatch(/^Acme\s+All\/Northwind\/Contoso\/Acme\s+not set up\s+Active\s+0\s+0\s+0\s+0$/);
    expect(lines[2]).toMatch(/^Beta\s+All\/Northwind\/Contoso\/Beta\s+not set up\s+Active\s+0\s+0\s+0\s+1$/);
    expect(lines[3]).toMatch(/^Gamma\s+All\/Northwind\/Contoso\/Gamma\s+not set up\s+Suspended\s+0\s+0\s+0\s+0$/);

    const setup = await run(['customers', 'setup', 'Acme', ...d]);
    expect(setup.code).toBe(0);
    expect(setup.out).toContain('customer "Acme" is set up (status normal); shown once:');
    expect(setup.out).toContain('  admin user: acme-admin\n');
    const password = /^ {2}password: {3}(\S+)$/m.exec(setup.out)?.[1];
    expect(password).toBeDefined();
    expect(occurrences(setup.out, password!)).toBe(1);
    expect(await s.server.storage.users.authenticate('acme-admin', password!)).toMatchObject({ role: 'customer_admin' });
    const command = /^ {2}(rollcall-agent enroll .+)$/m.exec(setup.out)?.[1];
    expect(command).toContain(`--ca-pin ${s.server.pki.caPin}`);
    expect(occurrences(setup.out, 'rollcall-agent enroll')).toBe(1);
    const secret = /--token (\S+)/.exec(command!)![1]!;
    const agent = await s.enrollAgent({ token: secret, hostname: 'acme-1' });
    expect((await s.api<{ groupPath: string }>('GET', `/api/v1/devices/${agent.deviceId}`)).body.groupPath).toBe('All/Northwind/Contoso/Acme');

    const again = await run(['customers', 'setup', 'Northwind/Contoso/Acme', ...d]);
    expect(again.out).toContain('  admin user: acme-admin (already existed; its password is unchanged)');
    expect(again.out).not.toContain('password:');

    const skipped = await run(['customers', 'skip', '--all-new', ...d]);
    expect(skipped).toMatchObject({ code: 0, out: 'setup skipped for 2 customers (status normal)\n' });
    const after = (await run(['customers', ...d])).out.trimEnd().split('\n').slice(1);
    expect(after.map((l) => l.split(/\s{2,}/)[2])).toEqual(['normal', 'normal', 'normal']);
    expect((await run(['customers', 'skip', '--all-new', ...d])).out).toBe('setup skipped for 0 customers (status normal)\n');

    expect((await run(['customers', 'skip', ...d])).code).toBe(CLI_EXIT.USAGE);
    expect((await run(['customers', 'setup', ...d])).code).toBe(CLI_EXIT.USAGE);
    const missing = await run(['customers', 'setup', 'Nobody', ...d]);
    expect(missing.code).toBe(CLI_EXIT.NOT_FOUND);
    expect(missing.err).toBe('error: no customer "Nobody" [CUSTOMER_NOT_FOUND]\n');
  });
});

describe('synced groups from the CLI', () => {
  it('refuses to rename or move a synced group with exit code 6 and one sentence', async () => {
    const { d } = await linkedCli();
    for (const argv of [
      ['groups', 'rename', 'Northwind/Contoso/Acme', 'Hacked'],
      ['groups', 'move', 'Northwind/Contoso/Acme', 'Northwind'],
      ['groups', 'rename', 'Northwind', 'Southwind'],
    ]) {
      const res = await run([...argv, ...d]);
      expect({ argv, code: res.code, out: res.out }).toEqual({ argv, code: CLI_EXIT.REFUSED, out: '' });
      expect(res.err.trimEnd().split('\n')).toHaveLength(1);
      expect(res.err).toMatch(/^error: "All\/Northwind[^"]*" is synced from the MSP portal; change it there \(it is read-only here while the account is linked\) \[GROUP_SYNCED\]\n$/);
    }
    const groups = JSON.parse((await run(['groups', '--json', ...d])).out) as { groups: { path: string }[] };
    expect(groups.groups.map((g) => g.path)).toContain('All/Northwind/Contoso/Acme');
  });
});

describe('rollcall instance', () => {
  it('shows which portal account created the instance', async () => {
    const { s, d, dir } = await cliServer();
    const instanceId = s.server.storage.instanceId;
    expect((await run(['instance', ...d])).out).toBe(`instance ${instanceId}; created by no portal account yet\n`);
    await run(['msp', 'link', '--file', await writeExport(dir, base), ...d]);
    const other = await writeExport(dir, [company('b1', 'biz-1', 1007, 'Tailspin')], 'business.json', { id: 'biz-1', name: 'Woodgrove', type: 1005 });
    expect((await run(['msp', 'link', '--file', other, '--portal', 'business', ...d])).code).toBe(0);
    expect((await run(['instance', ...d])).out).toBe(`instance ${instanceId}; created by msp portal account acct-1 (Northwind)\n`);
    expect(JSON.parse((await run(['instance', '--json', ...d])).out)).toMatchObject({ instanceId, creator: { portal: 'msp', accountExternalId: 'acct-1', accountName: 'Northwind' }, deleted: null });
    const refused = await run(['instance', 'delete', '--confirm', instanceId, '--file', other, '--portal', 'business', ...d]);
    expect(refused.code).toBe(CLI_EXIT.REFUSED);
    expect(refused.err).toContain('[INSTANCE_NOT_CREATOR]');
    expect((await run(['instance', 'delete', '--file', other, ...d])).code).toBe(CLI_EXIT.USAGE);
    expect((await run(['msp', 'sync', ...d])).err).toContain('[MSP_ACCOUNT_AMBIGUOUS]');
  });
});

describe('rollcall devices', () => {
  it('shows why a device landed in Lost & found', async () => {
    const s = await h.startServer();
    await s.server.writeLocalCliCredentials();
    const token = await s.enrollmentToken('Temp/Doomed');
    await s.api('DELETE', `/api/v1/groups/${encodeURIComponent('Temp/Doomed')}`);
    const agent = await s.enrollAgent({ token, hostname: 'stray-1' });
    const out = (await run(['devices', '--data-dir', s.dataDir])).out;
    expect(out).toMatch(new RegExp(`${agent.deviceId}\\s+stray-1\\s+All/Lost & found\\s+never_connected.*in Lost & found: the enrollment token's group no longer exists`));
  });
});
