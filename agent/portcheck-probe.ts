/**
 * The agent's default probe: the port-check engine (DNS, TCP, TLS against
 * the agent's CA, identification) on each advertised port, without the
 * WebSocket step (the agent's own channel already proves that one).
 */
import { runPortcheck } from '../common/portcheck/engine.js';
import type { ProbeResult } from '../common/protocol.js';
import type { ProbeFn } from './prober.js';

/** Builds a probe that trusts the agent's CA. */
export function portcheckProbe(opts: { caPem: string | (() => string); expectInstanceId?: string; stepTimeoutMs?: number }): ProbeFn {
  return async (host, ports) => {
    const report = await runPortcheck({
      host,
      ports: ports.map((p) => ({ port: p.port, role: p.role, required: p.required })),
      trust: { caPem: typeof opts.caPem === 'function' ? opts.caPem() : opts.caPem }, // a getter follows a CA rotation
      expectInstanceId: opts.expectInstanceId,
      websocket: false,
      // An agent on the server's own LAN legitimately resolves the name to a private address (split DNS).
      allowPrivate: true,
      stepTimeoutMs: opts.stepTimeoutMs ?? 5000,
    });
    const at = Date.now();
    return report.ports.map<ProbeResult>((p) => ({
      host,
      port: p.port,
      role: p.role,
      ok: p.ok,
      ...(p.failure ? { failure: p.failure.class, step: p.failure.step } : {}),
      ms: p.steps.reduce((sum, s) => sum + s.ms, 0),
      at,
    }));
  };
}
