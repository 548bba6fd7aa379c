import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildAgentExecutable, type AgentBuild } from '../../scripts/build-agent.js';
import { LINUX_PATHS, systemdUnit } from '../../server/installer/linux-installer.js';
import type { Installer } from '../../server/installer/installers.js';
import { Harness, type TestServer } from '../support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());
const run = promisify(execFile);

let built: AgentBuild;
let buildDir: string;
beforeAll(async () => {
  buildDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-installer-sea-'));
  built = await buildAgentExecutable(path.join(buildDir, 'rollcall-agent'), path.resolve(import.meta.dirname, '../..'));
}, 120_000);
afterAll(() => fs.rm(buildDir, { recursive: true, force: true }));

/** Runs the script with sh and no node on the PATH; returns its exit code and output. */
async function sh(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run('/bin/sh', [script, ...args], { env: { PATH: '/usr/bin:/bin', HOME: '/tmp', TMPDIR: os.tmpdir() }, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

/** Makes a Linux installer through the API for a fresh token of a group, and writes it to a file. */
async function installerFor(s: TestServer, extra: Record<string, unknown> = {}): Promise<{ file: string; made: Installer; tokenSecret: string }> {
  const tokenSecret = await s.enrollmentToken('Customers/Installed');
  const res = await s.api<Installer>('POST', '/api/v1/installers', { target: tokenSecret, os: 'linux', servers: [s.agentAddress], ...extra });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const file = path.join(await h.tempDir('rollcall-script-'), res.body.filename);
  await fs.writeFile(file, res.body.script, { mode: 0o600 });
  return { file, made: res.body, tokenSecret };
}

describe('the Linux installer, end to end into a temporary root', () => {
  it('downloads and checks the executable, installs to /opt, /etc and /var/lib, enrolls, writes the unit; --uninstall removes it all', async () => {
    const s = await h.startServer({ agentBinary: built.file });
    const { file, made } = await installerFor(s);
    expect(made).toMatchObject({ os: 'linux', groupPath: 'All/Customers/Installed', tokenCreated: false, sha256: built.sha256, servers: [s.agentAddress] });
    const root = await h.tempDir('rollcall-root-');

    const installed = await sh(file, ['--root', root, '--no-service']);
    expect(installed.stderr).toBe('');
    expect(installed.code).toBe(0);
    expect(installed.stdout).toContain('installed; service not registered');

    const bin = path.join(root, LINUX_PATHS.binary);
    expect(crypto.createHash('sha256').update(await fs.readFile(bin)).digest('hex')).toBe(built.sha256);
    expect((await fs.stat(bin)).mode & 0o777).toBe(0o755);
    expect(await fs.readFile(path.join(root, LINUX_PATHS.config), 'utf8')).toBe('{}\n');
    expect((await fs.stat(path.join(root, LINUX_PATHS.confDir))).mode & 0o777).toBe(0o700);
    expect((await fs.stat(path.join(root, LINUX_PATHS.stateDir))).mode & 0o777).toBe(0o700);
    const identity = JSON.parse(await fs.readFile(path.join(root, LINUX_PATHS.stateDir, 'identity.json'), 'utf8')) as { deviceId: string; servers: string[]; group: { path: string } };
    expect(identity).toMatchObject({ servers: [s.agentAddress], group: { path: 'All/Customers/Installed' } });
    expect(await s.server.storage.devices.get(identity.deviceId)).toMatchObject({ id: identity.deviceId, revokedAt: null });
    const unit = await fs.readFile(path.join(root, LINUX_PATHS.unit), 'utf8');
    expect(unit).toBe(systemdUnit());
    expect(unit).toContain('ExecStart=/opt/rollcall-agent/rollcall-agent run --state-dir /var/lib/rollcall-agent --config /etc/rollcall-agent/agent.json\n');
    expect(unit).toContain('Restart=on-failure\n');
    expect(unit).toContain('Environment=MALLOC_ARENA_MAX=1\n');
    expect(unit).toContain('RestartPreventExitStatus=10\n');
    expect(unit).toContain('WantedBy=multi-user.target\n');
    expect(s.logs.some((l) => l.msg === 'agent executable downloaded')).toBe(true);

    const again = await sh(file, ['--root', root, '--no-service']);
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('already installed');

    const removed = await sh(file, ['--uninstall', '--root', root]);
    expect(removed.code).toBe(0);
    for (const p of [LINUX_PATHS.binDir, LINUX_PATHS.confDir, LINUX_PATHS.stateDir, LINUX_PATHS.unit]) expect(await exists(path.join(root, p)), p).toBe(false);
  }, 90_000);

  it('refuses a tampered executable and installs nothing', async () => {
    const dir = await h.tempDir();
    const served = path.join(dir, 'rollcall-agent');
    await fs.copyFile(built.file, served);
    const s = await h.startServer({ agentBinary: served });
    const { file, made } = await installerFor(s);
    expect(made.sha256).toBe(built.sha256);
    await fs.appendFile(served, 'tampered');
    const root = await h.tempDir('rollcall-root-');
    const r = await sh(file, ['--root', root, '--no-service']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(`not the expected ${built.sha256}; refusing to install it (nothing was installed)`);
    expect(await fs.readdir(root)).toEqual([]);
    expect(await s.server.storage.devices.list()).toEqual([]);
  }, 60_000);

  it('tries the servers in order and says so when none answers; nothing is installed', async () => {
    const s = await h.startServer({ agentBinary: built.file });
    const closed = await s.enrollmentToken('Customers/Installed');
    const res = await s.api<Installer>('POST', '/api/v1/installers', { target: closed, os: 'linux', servers: ['127.0.0.1:1', s.agentAddress] });
    const file = path.join(await h.tempDir(), 'i.sh');
    await fs.writeFile(file, res.body.script);
    const root = await h.tempDir('rollcall-root-');
    const ok = await sh(file, ['--root', root, '--no-service']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('could not download from 127.0.0.1:1');
    const identity = JSON.parse(await fs.readFile(path.join(root, LINUX_PATHS.stateDir, 'identity.json'), 'utf8')) as { servers: string[] };
    expect(identity.servers).toEqual([s.agentAddress, '127.0.0.1:1']);
    await s.close();
    const root2 = await h.tempDir('rollcall-root-');
    const r = await sh(file, ['--root', root2, '--no-service']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('no server could be reached');
    expect(await fs.readdir(root2)).toEqual([]);
  }, 60_000);

  it('undoes the install when enrollment is refused (a revoked token)', async () => {
    const s = await h.startServer({ agentBinary: built.file });
    const { file, made } = await installerFor(s);
    await s.api('POST', `/api/v1/enrollment-tokens/${made.tokenId}/revoke`, {});
    const root = await h.tempDir('rollcall-root-');
    const r = await sh(file, ['--root', root, '--no-service']);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('ENROLL_TOKEN_REVOKED');
    for (const p of [LINUX_PATHS.binDir, LINUX_PATHS.confDir, LINUX_PATHS.stateDir, LINUX_PATHS.unit]) expect(await exists(path.join(root, p)), p).toBe(false);
  }, 60_000);

  it('embeds hostile proxy credentials verbatim: the script prints them back and the agent config holds them', async () => {
    const s = await h.startServer({ agentBinary: built.file });
    const proxy = "http://o'brien:p$a\"s`s%5Cw'rd%40x@127.0.0.1:3128";
    const { file, tokenSecret } = await installerFor(s, { proxy });
    const printed = await sh(file, ['--print-config']);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(`servers=${s.agentAddress}\nca_pin=${s.server.pki.caPin}\ntoken=${tokenSecret}\nproxy=${proxy}\nsha256=${built.sha256}\npath=/agent/linux-x64\n`);
    const bogus = await sh(file, ['--bogus']);
    expect(bogus).toMatchObject({ code: 2, stderr: 'rollcall-install: unknown option: --bogus (see --help)\n' });
    expect((await sh(file, ['--root'])).stderr).toContain('--root needs a directory');
    const script = await fs.readFile(file, 'utf8');
    const config = /^AGENT_CONFIG='([^]*?)'$/m.exec(script.replace(/'\\''/g, "'"))?.[1];
    expect(JSON.parse(config!)).toEqual({ proxy });
    expect(script).toContain('--proxy "$PROXY"');
  }, 60_000);
});
