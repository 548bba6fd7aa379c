import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor } from '../../test/support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());

describe('heartbeat', () => {
  it('pings live agents and terminates one that stops answering, leaving the others connected', async () => {
    const s = await h.startServer({ pingIntervalMs: 100 });
    const quiet = await s.enrollAgent();
    const healthy = await s.enrollAgent();
    const q = await s.rawClient(quiet);
    const ok = await s.rawClient(healthy);
    await q.open();
    await ok.open();
    q.hello(quiet.deviceId);
    ok.hello(healthy.deviceId);
    await q.waitMessage('welcome');
    await ok.waitMessage('welcome');
    let pings = 0;
    ok.ws.on('ping', () => (pings += 1));
    // Stop reading: no pong will be sent, as with a peer behind a dead NAT mapping.
    q.ws.pause();
    await waitFor(() => !s.server.registry.get(quiet.deviceId), 'the silent agent to be dropped', 5000);
    expect(s.logs.some((l) => l.msg === 'agent unresponsive; terminating' && l.deviceId === quiet.deviceId)).toBe(true);
    expect(pings).toBeGreaterThanOrEqual(2);
    expect(s.server.registry.get(healthy.deviceId)).toBeDefined();
    ok.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 1 });
    expect(await ok.waitMessage('ack')).toEqual({ type: 'ack', seq: 1 });
  });

  it('sends no pings to an agent whose frames show it is there, and keeps pinging a quiet one', async () => {
    const s = await h.startServer({ pingIntervalMs: 1000 });
    const [busyAgent, quietAgent] = [await s.enrollAgent(), await s.enrollAgent()];
    const busy = await s.rawClient(busyAgent);
    const quiet = await s.rawClient(quietAgent);
    for (const [c, a] of [[busy, busyAgent], [quiet, quietAgent]] as const) {
      await c.open();
      c.hello(a.deviceId);
      await c.waitMessage('welcome');
    }
    let busyPings = 0;
    let quietPings = 0;
    busy.ws.on('ping', () => (busyPings += 1));
    quiet.ws.on('ping', () => (quietPings += 1));
    // A check-in every 200 ms: several frames in every 1 s heartbeat pass (within the 5 frames/s budget).
    let seq = 0;
    const timer = setInterval(() => busy.send({ type: 'checkin', seq: ++seq, sentAt: Date.now(), uptimeSec: seq }), 200);
    h.defer(() => clearInterval(timer));
    await waitFor(() => quietPings >= 3, 'three pings to the quiet agent', 10_000);
    clearInterval(timer);
    expect(busyPings).toBe(0);
    expect(s.server.registry.get(busyAgent.deviceId)).toBeDefined();
    expect(s.server.registry.get(quietAgent.deviceId)).toBeDefined(); // it answered every ping
  });
});
