import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor } from '../../test/support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());

describe('admission', () => {
  it('closes agents beyond maxAgents with OVERLOADED and a jittered retry hint, and lets them in once there is room', async () => {
    const s = await h.startServer({ maxAgents: 1, overloadRetryAfterMs: 1000 });
    const first = await s.enrollAgent();
    const second = await s.enrollAgent();
    const a = await s.rawClient(first);
    await a.open();
    a.hello(first.deviceId);
    await a.waitMessage('welcome');
    const b = await s.rawClient(second);
    await b.open();
    b.hello(second.deviceId);
    const err = await b.waitMessage('error');
    expect(err.code).toBe('OVERLOADED');
    expect(err.retryAfterMs).toBeGreaterThanOrEqual(1000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(2000);
    expect((await b.waitClose()).code).toBe(4005);
    const again = await s.rawClient(first);
    await again.open();
    again.hello(first.deviceId);
    await again.waitMessage('welcome');
    a.ws.close(1000);
    await a.waitClose();
    await waitFor(() => s.server.registry.size === 1, 'the replaced session to be gone');
    again.ws.close(1000);
    await again.waitClose();
    await waitFor(() => s.server.registry.size === 0, 'room');
    const c = await s.rawClient(second);
    await c.open();
    c.hello(second.deviceId);
    expect((await c.waitMessage('welcome')).deviceId).toBe(second.deviceId);
  });
});
