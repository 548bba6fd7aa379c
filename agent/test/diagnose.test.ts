import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { PortcheckReport } from '../../common/portcheck/types.js';
import { Harness } from '../../test/support/harness.js';
import { AGENT_EXIT, agentMain } from '../cli.js';
import type { Diagnosis } from '../diagnose.js';
import type { AgentState, Identity } from '../state.js';
import { closedPort } from './net-fixtures.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await agentMain(argv, {}, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** Rewrites the agent's server list in its identity file. */
async function setServers(state: AgentState, servers: string[]): Promise<void> {
  const identity = JSON.parse(await fs.readFile(state.file('identity'), 'utf8')) as Identity;
  await fs.writeFile(state.file('identity'), JSON.stringify({ ...identity, servers }));
}

const websocketStep = (r: PortcheckReport) => r.ports[0]!.steps.find((s) => s.step === 'websocket');

describe('rollcall-agent diagnose', () => {
  it("exits 0 after the full round trip on the agent's server, with its own certificate", async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const r = await cli(['diagnose', '--state-dir', agent.state.dir, '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(AGENT_EXIT.OK);
    const d = JSON.parse(r.out) as Diagnosis;
    expect(d).toMatchObject({ deviceId: agent.deviceId, ok: true });
    expect(d.servers).toHaveLength(1);
    expect(d.servers[0]!.ports.map((p) => [p.port, p.role, p.required])).toEqual([[s.server.agentPort, 'agent', true]]);
    expect(d.servers[0]!.ports[0]!.steps.map((st) => st.step)).toEqual(['dns', 'tcp', 'tls', 'identify', 'websocket']);
    expect(websocketStep(d.servers[0]!)!.detail).toMatch(new RegExp(`^diagnose round trip in \\d+ ms: instance ${s.server.storage.instanceId}, device ${agent.deviceId}`));
  });

  it('also checks the console port the server advertised once the agent has run', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    await agent.state.saveListenerPorts([
      { port: s.server.agentPort, role: 'agent', required: true },
      { port: s.server.consolePort, role: 'console', required: false },
    ]);
    const r = await cli(['diagnose', '--state-dir', agent.state.dir, '--json']);
    expect(r.code).toBe(AGENT_EXIT.OK);
    const d = JSON.parse(r.out) as Diagnosis;
    expect(d.servers[0]!.ports.map((p) => [p.port, p.role, p.required, p.ok])).toEqual([
      [s.server.agentPort, 'agent', true, true],
      [s.server.consolePort, 'console', false, true],
    ]);
  });

  it('exits 7 when one server of the list is down, and says which with the class and remedy', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const closed = await closedPort();
    await setServers(agent.state, [s.agentAddress, `127.0.0.1:${closed}`]);
    const r = await cli(['diagnose', '--state-dir', agent.state.dir, '--timeout', '2s']);
    expect(r.code).toBe(AGENT_EXIT.DIAGNOSE_FAILED);
    expect(r.out).toContain(`rollcall-agent diagnose: device ${agent.deviceId}, some server failed`);
    expect(r.out).toContain(`port ${s.server.agentPort} (agent, required): ok`);
    expect(r.out).toContain(`port ${closed} (agent, required): FAILED: TCP_REFUSED`);
    expect(r.out).toMatch(/remedy: Connection refused/);
  });

  it("exits 7 with the server's reason when the device was revoked", async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    expect((await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`, {})).status).toBe(200);
    const r = await cli(['diagnose', '--state-dir', agent.state.dir, '--json']);
    expect(r.code).toBe(AGENT_EXIT.DIAGNOSE_FAILED);
    const d = JSON.parse(r.out) as Diagnosis;
    expect(websocketStep(d.servers[0]!)).toMatchObject({ ok: false, failure: 'WS_REJECTED', detail: expect.stringContaining('DEVICE_REVOKED') });
  });

  it('exits 6 when the state directory holds no enrollment, and 2 for a bad timeout', async () => {
    const dir = await h.tempDir();
    const r = await cli(['diagnose', '--state-dir', dir]);
    expect(r.code).toBe(AGENT_EXIT.STATE);
    expect(r.err).toContain('NOT_ENROLLED');
    expect((await cli(['diagnose', '--state-dir', dir, '--timeout', 'never'])).code).toBe(AGENT_EXIT.USAGE);
  });
});
