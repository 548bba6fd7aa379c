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

  it('never pings an agent that checks in on time, and pings one that misses its check-ins after its interval and a pass', async () => {
    // Passes every 500 ms, check-ins due every second: a channel is pinged after 3 quiet passes (1-1.5 s without a frame).
    const s = await h.startServer({ pingIntervalMs: 500, checkinIntervalSec: 1 });
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
    // The punctual agent checks in at its interval (1 s), so two passes at most ever find it quiet.
    let seq = 0;
    const timer = setInterval(() => busy.send({ type: 'checkin', seq: ++seq, sentAt: Date.now(), uptimeSec: seq }), 1000);
    h.defer(() => clearInterval(timer));
    await waitFor(() => quietPings >= 3, 'three pings to the quiet agent', 10_000);
    clearInterval(timer);
    expect(busyPings).toBe(0);
    expect(seq).toBeGreaterThanOrEqual(2); // it did check in meanwhile
    expect(s.server.registry.get(busyAgent.deviceId)).toBeDefined();
    expect(s.server.registry.get(quietAgent.deviceId)).toBeDefined(); // it answered every ping
  });
});
