import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import { CLI_EXIT, rollcallMain } from '../cli.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await rollcallMain(argv, env, { out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`) });
  return { code, out, err };
}

describe('rollcall admin CLI', () => {
  it('creates groups and tokens and lists devices through --data-dir alone', async () => {
    const s = await h.startServer();
    await s.server.writeLocalCliCredentials();
    const d = ['--data-dir', s.dataDir];
    expect((await run(['groups', 'create', 'Customers/Acme', ...d])).out).toMatch(/group "All\/Customers\/Acme" \(grp_[0-9a-f]+\)/);
    const token = await run(['token', 'create', '--group', 'Customers/Acme', '--ttl', '2h', '--uses', '3', '--json', ...d]);
    expect(token.code).toBe(0);
    const t = JSON.parse(token.out) as { token: string; maxUses: number; agentCommand: string; expiresAt: string };
    expect(t).toMatchObject({ maxUses: 3 });
    expect(t.agentCommand).toContain(`--ca-pin ${s.server.pki.caPin}`);
    const human = await run(['token', 'create', '--group', 'Customers/Acme', ...d]);
    expect(human.out).toMatch(/shown once:\n {2}rce_/);
    expect(human.out).toContain('rollcall-agent enroll --server');
    const agent = await s.enrollAgent({ token: t.token, hostname: 'acme-pc-1' });
    const list = await run(['devices', ...d]);
    expect(list.out.split('\n')[0]).toMatch(/^ID\s+HOSTNAME\s+GROUP\s+STATUS\s+LAST CHECK-IN\s+VERSION\s+ADDRESS\s+NOTE$/);
    expect(list.out).toMatch(new RegExp(`${agent.deviceId}\\s+acme-pc-1\\s+All/Customers/Acme\\s+never_connected`));
    const json = JSON.parse((await run(['devices', '--json', ...d])).out) as { devices: { id: string }[] };
    expect(json.devices.map((x) => x.id)).toEqual([agent.deviceId]);
    const groups = await run(['groups', ...d]);
    expect(groups.out).toContain('Lost & found  (0 devices; grp_lost_found; built-in)');
    expect(groups.out).toContain('    Acme  (1 device;');
    const revoked = await run(['devices', 'revoke', agent.deviceId, ...d]);
    expect(revoked.out).toContain('revoked');
    expect(JSON.parse((await run(['devices', 'show', agent.deviceId, '--json', ...d])).out)).toMatchObject({ status: 'revoked' });
  });

  it('reaches a remote server with --server, an API token from the environment and the CA pin', async () => {
    const s = await h.startServer();
    const remote = ['--server', `https://127.0.0.1:${s.server.consolePort}`, '--ca-pin', s.server.pki.caPin];
    const ok = await run(['groups', '--json', ...remote], { ROLLCALL_API_TOKEN: s.adminToken });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out).groups).toHaveLength(2);
    const wrongToken = await run(['groups', ...remote], { ROLLCALL_API_TOKEN: 'rca_nope' });
    expect(wrongToken).toMatchObject({ code: CLI_EXIT.UNAUTHORIZED });
    expect(wrongToken.err).toMatch(/^error: a valid API token is required/);
    const wrongPin = await run(['groups', '--server', `https://127.0.0.1:${s.server.consolePort}`, '--ca-pin', `sha256:${'0'.repeat(64)}`], { ROLLCALL_API_TOKEN: s.adminToken });
    expect(wrongPin.code).toBe(CLI_EXIT.NO_SERVER);
    expect(wrongPin.err).toContain('CA_PIN_MISMATCH');
    const noPin = await run(['groups', '--server', `https://127.0.0.1:${s.server.consolePort}`], { ROLLCALL_API_TOKEN: s.adminToken });
    expect(noPin.code).toBe(CLI_EXIT.USAGE);
  });

  it('gives one sentence and a documented exit code for each kind of failure, stack only with --debug', async () => {
    const s = await h.startServer();
    await s.server.writeLocalCliCredentials();
    const d = ['--data-dir', s.dataDir];
    const notFound = await run(['devices', 'show', 'dev_missing', ...d]);
    expect(notFound).toMatchObject({ code: CLI_EXIT.NOT_FOUND });
    expect(notFound.err.trim().split('\n')).toHaveLength(1);
    expect((await run(['groups', 'delete', 'Lost & found', ...d])).code).toBe(CLI_EXIT.REFUSED);
    expect((await run(['token', 'create', ...d])).code).toBe(CLI_EXIT.USAGE);
    expect((await run(['token', 'create', '--group', 'All', '--ttl', 'soon', ...d])).code).toBe(CLI_EXIT.USAGE);
    expect((await run(['devices', '--bogus', ...d])).code).toBe(CLI_EXIT.USAGE);
    expect((await run(['launch'])).code).toBe(CLI_EXIT.USAGE);
    const empty = await h.tempDir();
    const noServer = await run(['devices', '--data-dir', empty]);
    expect(noServer.code).toBe(CLI_EXIT.NO_SERVER);
    expect(noServer.err).toContain('is the server running with this --data-dir');
    const debug = await run(['devices', '--data-dir', empty, '--debug']);
    expect(debug.err).toMatch(/\n\s+at /);
    expect((await run(['--help'])).out).toContain('Exit codes');
    expect((await run(['token', 'create', '--help'])).code).toBe(0);
  });

  it('refuses to start a server on a port in use with exit 8, and writes cli.json with mode 0600', async () => {
    const s = await h.startServer();
    const file = await s.server.writeLocalCliCredentials();
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    const dataDir = path.join(await h.tempDir(), 'data');
    const busy = await run(['server', '--data-dir', dataDir, '--listen-host', '127.0.0.1', '--agent-port', String(s.server.agentPort), '--console-port', '0']);
    expect(busy.code).toBe(CLI_EXIT.CANNOT_START);
    expect(busy.err).toMatch(/EADDRINUSE|address already in use/);
    const busyWorkers = await run(['server', '--data-dir', dataDir, '--listen-host', '127.0.0.1', '--agent-port', String(s.server.agentPort), '--console-port', '0', '--agent-workers', '1']);
    expect(busyWorkers.code).toBe(CLI_EXIT.CANNOT_START);
    expect(busyWorkers.err).toMatch(/EADDRINUSE|address already in use/);
    const bad = await run(['server', '--agent-port', '99999', '--console-port', 'x', '--agent-workers', '65']);
    expect(bad.code).toBe(CLI_EXIT.USAGE);
    expect(bad.err).toContain('agent port');
    expect(bad.err).toContain('console port');
    expect(bad.err).toContain('agent workers must be a whole number from 0 to 64');
  });
});
