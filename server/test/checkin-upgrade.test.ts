import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Harness, RawClient } from '../../test/support/harness.js';
import { SHUTDOWN_CLOSE_GRACE_MS } from '../agent-listener.js';
import {
  MAX_RESTART_ESTIMATE_MS,
  parseRestartTiming,
  RESTART_FLOOR_MS,
  RESTART_TIMING_KEY,
  restartFloorMs,
  restartWindowMs,
  type RestartTiming,
} from '../restart-spread.js';

const h = new Harness();
afterEach(() => h.cleanup());

describe('check-in upgrade on the agent port', () => {
  it('answers an upgrade to any other path with 404 NOT_FOUND and keeps serving check-in upgrades', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const ws = new WebSocket(`wss://127.0.0.1:${s.server.agentPort}/v1/identify`, { ca: s.server.pki.ca.certPem, key: agent.keyPem, cert: agent.certPem, handshakeTimeout: 5000 });
    const stray = new RawClient(ws);
    h.defer(() => stray.terminate());
    const refusal = await stray.waitRefusal();
    expect(refusal.status).toBe(404);
    expect(refusal.body.error?.code).toBe('NOT_FOUND');
    expect(refusal.closeCodeHeader).toBeUndefined();

    const c = await s.rawClient(agent);
    await c.open();
    c.hello(agent.deviceId);
    expect((await c.waitMessage('welcome')).deviceId).toBe(agent.deviceId);
  });

  it('tells every agent when to come back before closing with 1001 on shutdown, spread over a window sized to the fleet', async () => {
    const s = await h.startServer();
    const agents = await Promise.all([s.enrollAgent(), s.enrollAgent()]);
    const clients = [];
    for (const a of agents) {
      const c = await s.rawClient(a);
      await c.open();
      c.hello(a.deviceId);
      await c.waitMessage('welcome');
      clients.push(c);
    }
    // A first start: no stop measured yet, so the notice allows for this start's own duration.
    const timing = (await s.server.storage.meta.get<RestartTiming>(RESTART_TIMING_KEY))!;
    expect(timing.startupMs).toBeGreaterThan(0);
    expect(timing.shutdownMs).toBe(0);
    await s.close();
    for (const c of clients) {
      const notice = await c.waitMessage('error');
      expect(notice.code).toBe('SERVER_RESTARTING');
      expect(notice.retryAfterMs).toBeGreaterThanOrEqual(RESTART_FLOOR_MS + timing.startupMs);
      expect(notice.retryAfterMs).toBeLessThan(RESTART_FLOOR_MS + timing.startupMs + restartWindowMs(2));
      expect((await c.waitClose()).code).toBe(1001);
    }
    expect(s.logs.find((l) => l.msg === 'telling agents when to reconnect')).toMatchObject({ agents: 2, windowMs: 5000, floorMs: RESTART_FLOOR_MS + timing.startupMs });
    expect(restartWindowMs(1)).toBe(5000);
    expect(restartWindowMs(50_000)).toBe(120_000);
    expect(restartWindowMs(100_000)).toBe(240_000);
    expect(restartWindowMs(10_000_000)).toBe(240_000);
  });

  it('tells agents to come back after a restart as long as the last start and stop took, measured and kept in the database', async () => {
    const first = await h.startServer();
    await first.close();
    const second = await h.startServer({}, { dataDir: first.dataDir });
    const measured = (await second.server.storage.meta.get<RestartTiming>(RESTART_TIMING_KEY))!;
    expect(measured.shutdownMs).toBeGreaterThan(0); // the first server's stop
    expect(measured.startupMs).toBeGreaterThan(0); // this start
    const agent = await second.enrollAgent();
    const c = await second.rawClient(agent);
    await c.open();
    c.hello(agent.deviceId);
    await c.waitMessage('welcome');
    await second.close();
    const notice = await c.waitMessage('error');
    const floor = restartFloorMs(measured.startupMs + measured.shutdownMs);
    expect(notice.retryAfterMs).toBeGreaterThanOrEqual(floor);
    expect(notice.retryAfterMs).toBeLessThan(floor + restartWindowMs(1));
    expect(second.logs.find((l) => l.msg === 'server stopped')?.shutdownMs).toBeGreaterThan(0);
  });

  it('caps the restart it allows for and ignores a malformed record', () => {
    expect(restartFloorMs(0)).toBe(RESTART_FLOOR_MS);
    expect(restartFloorMs(25_000)).toBe(RESTART_FLOOR_MS + 25_000);
    expect(restartFloorMs(10 * MAX_RESTART_ESTIMATE_MS)).toBe(RESTART_FLOOR_MS + MAX_RESTART_ESTIMATE_MS);
    expect(restartFloorMs(-5)).toBe(RESTART_FLOOR_MS);
    expect(parseRestartTiming({ startupMs: 1200, shutdownMs: 300 })).toEqual({ startupMs: 1200, shutdownMs: 300 });
    for (const bad of [null, 'fast', { startupMs: 'x', shutdownMs: 1 }, { startupMs: -1, shutdownMs: 1 }, { startupMs: 1 }, { startupMs: Infinity, shutdownMs: 0 }]) {
      expect(parseRestartTiming(bad)).toBeUndefined();
    }
  });

  it('cuts off, after a short grace, agents that do not answer their close frame on shutdown, so the stop does not wait on them', async () => {
    const s = await h.startServer();
    const agents = await Promise.all([s.enrollAgent(), s.enrollAgent()]);
    const [prompt, stuck] = await Promise.all(agents.map((a) => s.rawClient(a)));
    for (const [c, a] of [[prompt!, agents[0]!], [stuck!, agents[1]!]] as const) {
      await c.open();
      c.hello(a.deviceId);
      await c.waitMessage('welcome');
    }
    stuck!.ws.pause(); // reads nothing more: neither the notice nor the close frame is answered
    await s.close(); // ws alone would wait 30 s for the stuck peer
    expect(s.logs.find((l) => l.msg === 'cutting off agents that did not finish closing')).toMatchObject({ agents: 1, graceMs: SHUTDOWN_CLOSE_GRACE_MS });
    expect((await prompt!.waitClose()).code).toBe(1001);
  });
});
