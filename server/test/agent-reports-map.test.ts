import { describe, expect, it } from 'vitest';
import { FAILURE_CLASSES } from '../../agent/errors.js';
import { PORTCHECK_FAILURES } from '../../common/portcheck/types.js';
import { ATTEMPT_CLASS_MAP, reportToObservations } from '../agent-reports.js';

describe('failed attempts as health evidence', () => {
  it('maps every failure class an agent can report to a port-check failure class and its step', () => {
    for (const c of FAILURE_CLASSES) {
      const mapped = ATTEMPT_CLASS_MAP[c];
      expect(mapped, c).toBeDefined();
      expect(PORTCHECK_FAILURES[mapped!].step, c).toMatch(/^(dns|tcp|tls|identify|websocket)$/);
    }
  });

  it('stores a proxy that opened no tunnel as a TCP-step failure whose remedy names the proxy', () => {
    const ctx = { deviceId: 'dev_1', groupId: 'grp_1', sourceAddress: '198.51.100.7', now: 2_000 };
    const [obs] = reportToObservations(
      { type: 'report', id: 1, probes: [], attempts: [{ server: 'rollcall.example.net:2222', class: 'PROXY', code: 'PROXY_UNREACHABLE', message: 'cannot reach the proxy', at: 1_000 }], droppedAttempts: 0 },
      ctx,
    );
    expect(obs).toMatchObject({ source: 'failed_attempt', failureClass: 'TCP_UNREACHABLE', step: 'tcp', targetHost: 'rollcall.example.net', port: 2222, ok: false });
    expect(PORTCHECK_FAILURES.TCP_UNREACHABLE.remedy).toMatch(/proxy/);
  });
});
