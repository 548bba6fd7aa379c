import { describe, expect, it } from 'vitest';
import { benchPortcheck } from '../bench-portcheck.js';

describe('portcheck benchmark', () => {
  it('checks real listeners, all passing, and times out the silent port with its class', async () => {
    const r = await benchPortcheck({ servers: 2, runs: 1, stepTimeoutMs: 300 });
    expect(r.ports).toBe(4);
    expect(r.allAnswerOk).toBe(true);
    expect(r.allAnswerMs).toBeGreaterThan(0);
    expect(r.silentFailure).toBe('TLS_HANDSHAKE_FAILED');
    expect(r.oneSilentMs).toBeGreaterThanOrEqual(300);
  });
});
