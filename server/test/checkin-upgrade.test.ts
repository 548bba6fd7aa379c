import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Harness, RawClient } from '../../test/support/harness.js';
import { RESTART_FLOOR_MS, restartWindowMs } from '../restart-spread.js';

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
    await s.close();
    for (const c of clients) {
      const notice = await c.waitMessage('error');
      expect(notice.code).toBe('SERVER_RESTARTING');
      expect(notice.retryAfterMs).toBeGreaterThanOrEqual(RESTART_FLOOR_MS);
      expect(notice.retryAfterMs).toBeLessThan(RESTART_FLOOR_MS + restartWindowMs(2));
      expect((await c.waitClose()).code).toBe(1001);
    }
    expect(restartWindowMs(1)).toBe(5000);
    expect(restartWindowMs(100_000)).toBe(200_000);
    expect(restartWindowMs(10_000_000)).toBe(240_000);
  });
});
