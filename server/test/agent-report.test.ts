import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor } from '../../test/support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());

describe('protocol 2: reports and diagnose', () => {
  it('advertises the listener ports to protocol 2 agents only', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const v2 = await s.rawClient(agent);
    await v2.open();
    v2.hello(agent.deviceId, { protocol: 2 });
    expect((await v2.waitMessage('welcome')).ports).toEqual([
      { port: s.server.agentPort, role: 'agent', required: true },
      { port: s.server.consolePort, role: 'console', required: false },
    ]);
    const v1 = await s.rawClient(agent);
    await v1.open();
    v1.hello(agent.deviceId, { protocol: 1 });
    const w1 = await v1.waitMessage('welcome');
    expect(w1.protocol).toBe(1);
    expect(w1.ports).toBeUndefined();
  });

  it('stores probe results and failed attempts as evidence for the device’s group, and acks the report', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ group: 'Customers/Acme' });
    const group = await s.server.storage.groups.resolve('Customers/Acme');
    const c = await s.rawClient(agent);
    await c.open();
    c.hello(agent.deviceId, { protocol: 2 });
    await c.waitMessage('welcome');
    const at = Date.now() - 5000;
    c.send({
      type: 'report',
      id: 1,
      probes: [
        { host: 'rollcall.example.net', port: 2222, role: 'agent', ok: true, ms: 12, at },
        { host: 'rollcall.example.net', port: 8443, role: 'console', ok: false, failure: 'TCP_TIMEOUT', step: 'tcp', ms: 5000, at },
      ],
      attempts: [{ server: 'rollcall.example.net:2222', class: 'REFUSED', code: 'ECONNREFUSED', message: 'connect ECONNREFUSED', at: at - 60_000 }],
      droppedAttempts: 3,
    });
    expect(await c.waitMessage('report_ack')).toEqual({ type: 'report_ack', id: 1 });
    const obs = await s.server.storage.evidence.observationsSince(0);
    expect(obs.map((o) => [o.source, o.port, o.ok, o.failureClass, o.step, o.groupId, o.deviceId, o.sourceAddress])).toEqual([
      ['failed_attempt', 2222, false, 'TCP_REFUSED', 'tcp', group.id, agent.deviceId, '127.0.0.1'],
      ['agent_probe', 2222, true, null, null, group.id, agent.deviceId, '127.0.0.1'],
      ['agent_probe', 8443, false, 'TCP_TIMEOUT', 'tcp', group.id, agent.deviceId, '127.0.0.1'],
    ]);
    expect(s.logs.some((l) => l.msg === 'agent dropped failed-attempt records (its list was full)' && l.dropped === 3)).toBe(true);
    const sightings = (await s.server.storage.evidence.sightingsSince(0)).filter((x) => x.role === 'agent');
    expect(sightings).toEqual([expect.objectContaining({ role: 'agent', address: '127.0.0.1', deviceId: agent.deviceId, groupId: group.id })]);
  });

  it('refuses a report before hello and a malformed report, and keeps serving', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const early = await s.rawClient(agent);
    await early.open();
    early.send({ type: 'report', id: 1, probes: [], attempts: [], droppedAttempts: 0 });
    expect((await early.waitClose()).code).toBe(4008);
    const bad = await s.rawClient(agent);
    await bad.open();
    bad.hello(agent.deviceId, { protocol: 2 });
    await bad.waitMessage('welcome');
    bad.send({ type: 'report', id: 1, probes: Array.from({ length: 65 }, () => ({ host: 'h', port: 1, role: 'agent', ok: true, ms: 1, at: 1 })), attempts: [], droppedAttempts: 0 });
    expect((await bad.waitClose()).code).toBe(4001);
    expect(await s.server.storage.evidence.observationsSince(0)).toEqual([]);
  });

  it('answers diagnose without taking the device’s place or flagging a clone', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const live = await s.rawClient(agent);
    await live.open();
    live.hello(agent.deviceId, { protocol: 2 });
    await live.waitMessage('welcome');
    const d = await s.rawClient(agent);
    await d.open();
    d.send({ type: 'diagnose', nonce: 'n-123' });
    expect(await d.waitMessage('diagnose_ack')).toEqual({ type: 'diagnose_ack', nonce: 'n-123', instanceId: s.server.storage.instanceId, deviceId: agent.deviceId, clientAddress: '127.0.0.1' });
    expect((await d.waitClose()).code).toBe(1000);
    live.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 1 });
    await live.waitMessage('ack');
    expect(s.server.registry.get(agent.deviceId)).toBeDefined();
    expect((await s.server.storage.devices.get(agent.deviceId))?.possibleCloneAt).toBeNull();
    const late = await s.rawClient(agent);
    await late.open();
    late.hello(agent.deviceId, { protocol: 2 });
    await late.waitMessage('welcome');
    late.send({ type: 'diagnose', nonce: 'x' });
    expect((await late.waitClose()).code).toBe(4008);
    await waitFor(() => s.logs.some((l) => l.msg === 'agent diagnose round trip'), 'the diagnose log line');
  });
});
