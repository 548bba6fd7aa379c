import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Harness, RawClient } from '../../test/support/harness.js';

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
});
