import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger, Harness, waitFor } from '../../test/support/harness.js';
import { startAgent } from '../supervisor.js';

const h = new Harness();
afterEach(() => h.cleanup());

describe('the agent as an outside-in probe', () => {
  it('records failed attempts during an outage and delivers them, with a probe of every advertised port, once a channel works', async () => {
    const s1 = await h.startServer();
    const agent = await s1.enrollAgent({ group: 'Customers/Acme' });
    const port = s1.server.agentPort;
    await s1.close();
    const { running } = await h.runAgent(agent, { probe: undefined }); // the real port-check engine probes
    await waitFor(() => running.status.status.failedAttempts >= 3, 'three refused attempts');
    const s2 = await h.startServer({ agentPort: port }, { dataDir: s1.dataDir });
    const group = await s2.server.storage.groups.resolve('Customers/Acme');
    const evidence = await waitFor(async () => {
      const obs = await s2.server.storage.evidence.observationsSince(0);
      return obs.some((o) => o.source === 'agent_probe' && o.role === 'console') ? obs : undefined;
    }, 'the failed attempts and a probe round to arrive');
    const attempts = evidence.filter((o) => o.source === 'failed_attempt');
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    expect(attempts.every((o) => o.failureClass === 'TCP_REFUSED' && o.port === port && o.groupId === group.id && o.deviceId === agent.deviceId)).toBe(true);
    const probes = evidence.filter((o) => o.source === 'agent_probe');
    expect(probes.map((o) => [o.port, o.role, o.ok]).sort()).toEqual(
      [
        [s2.server.agentPort, 'agent', true],
        [s2.server.consolePort, 'console', true],
      ].sort(),
    );
    await waitFor(() => running.outbox.stats().pending === 0, 'the outbox to be delivered');
    await running.stop();
    expect(await agent.state.readStatus()).toMatchObject({ outbox: { pending: 0 } });
    const stored = await s2.server.storage.events.list(agent.deviceId);
    expect(stored.filter((e) => e.kind === 'attempt').length).toBe(attempts.length);
    expect(stored.map((e) => e.seq)).toEqual(stored.map((_, i) => i + 1));
  });
});

describe('advertised ports', () => {
  it('are kept in the state directory for diagnose', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const { log } = captureLogger();
    const running = await startAgent({ state: agent.state, fingerprint: agent.fingerprint, backoff: { baseMs: 50, capMs: 200 }, connectTimeoutMs: 2000, ackTimeoutMs: 3000, log });
    h.defer(() => running.stop());
    const ports = await waitFor(async () => {
      const p = await agent.state.loadListenerPorts();
      return p.length > 0 ? p : undefined;
    }, 'the advertised ports on disk');
    expect(ports).toEqual([
      { port: s.server.agentPort, role: 'agent', required: true },
      { port: s.server.consolePort, role: 'console', required: false },
    ]);
  });
});
