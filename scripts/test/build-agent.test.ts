import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../../common/version.js';
import { Harness } from '../../test/support/harness.js';
import { buildAgentExecutable } from '../build-agent.js';

const h = new Harness();
afterEach(() => h.cleanup());
const run = promisify(execFile);

/** Runs the executable with an environment whose PATH holds no node. */
async function agent(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(file, args, { env: { PATH: '/nonexistent', HOME: '/tmp' }, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('the agent as one executable', () => {
  it('runs without node on the PATH: names its versions and enrolls with a real server', async () => {
    const dir = await h.tempDir('rollcall-sea-');
    const built = await buildAgentExecutable(path.join(dir, 'rollcall-agent'), path.resolve(import.meta.dirname, '../..'));
    expect(built.bytes).toBeGreaterThan(10 * 2 ** 20);
    expect(built.sha256).toMatch(/^[0-9a-f]{64}$/);
    const version = await agent(built.file, ['--version']);
    expect(version).toMatchObject({ code: 0, stdout: `rollcall-agent 0.1.0 (protocol ${PROTOCOL_VERSION})\n` });
    expect(version.stderr).toBe('');
    const s = await h.startServer();
    const token = await s.enrollmentToken('Customers/Sea');
    const stateDir = path.join(dir, 'state');
    const enroll = await agent(built.file, ['enroll', '--server', s.agentAddress, '--ca-pin', s.server.pki.caPin, '--token', token, '--state-dir', stateDir, '--json']);
    expect(enroll.stderr).toBe('');
    expect(JSON.parse(enroll.stdout)).toMatchObject({ group: { path: 'All/Customers/Sea' } });
    const status = await agent(built.file, ['status', '--state-dir', stateDir, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ enrolled: true, running: false });
    expect((await agent(built.file, ['status', '--state-dir', path.join(dir, 'nothing')])).code).toBe(6);
  }, 60_000);
});
