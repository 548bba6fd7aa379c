/**
 * The port-check engine behind `rollcall portcheck`, `rollcall-agent
 * diagnose` and the agents' periodic probes: DNS once per host, then for
 * every port in parallel TCP, TLS against our CA, the identification probe
 * and (on agent ports) the WebSocket step, each bounded by the step
 * timeout. A check of N ports therefore ends within about one DNS timeout
 * plus four step timeouts, however many ports drop packets.
 *
 * Decisions worth knowing:
 * - TCP tries the resolved addresses in order and goes on with the first
 *   that accepts (one deadline for all attempts).
 * - DNS_PRIVATE (a private answer behind a name that is not an IP literal
 *   or localhost) fails the port, because a name the installer hands out
 *   must work from outside; the other steps still run and report. Pass
 *   `allowPrivate` where split DNS is intended (an agent on the LAN).
 * - A port's `failure` is its first failed step; `failure.step` is the
 *   step where it was observed (a plain HTTP service is seen at `tls`).
 */
import { performance } from 'node:perf_hooks';
import { RollcallError } from '../errors.js';
import { parsePin } from '../pki.js';
import type { PortcheckTrust } from './chain-judge.js';
import { dnsStep, systemResolve, type Resolve } from './dns-step.js';
import { identifyStep } from './identify-step.js';
import { MAX_PORTCHECK_PORTS } from './report-api.js';
import { tcpStep } from './tcp-step.js';
import { tlsStep } from './tls-step.js';
import { PORTCHECK_FAILURES, type ListenerRole, type PortcheckReport, type PortResult, type StepResult } from './types.js';
import { websocketStep } from './websocket-step.js';
import { isoTime } from '../iso-time.js';

export type { PortcheckTrust } from './chain-judge.js';
export type { Resolve } from './dns-step.js';

/** One port to check. */
export interface PortSpec {
  readonly port: number;
  /** The listener that should answer there. */
  readonly role: ListenerRole;
  /** Whether the whole check fails when this port fails. */
  readonly required: boolean;
}

/** Options of {@link runPortcheck}. */
export interface PortcheckOptions {
  /** A DNS name or an IP address. */
  readonly host: string;
  /** 1 to 64 ports. */
  readonly ports: readonly PortSpec[];
  /** Our CA certificate, or its pin. */
  readonly trust: PortcheckTrust;
  /** When known, another server instance answering is WRONG_SERVICE. */
  readonly expectInstanceId?: string;
  /** The agent's certificate, for the WebSocket round trip. */
  readonly clientCert?: { readonly certPem: string; readonly keyPem: string };
  /** Run the WebSocket step on agent ports (default true). */
  readonly websocket?: boolean;
  /** Bound of every step, in milliseconds (default 5000). */
  readonly stepTimeoutMs?: number;
  /** A private DNS answer is noted, not failed (default false). */
  readonly allowPrivate?: boolean;
  /** Seam: the resolver (default: the system's, every A/AAAA answer). */
  readonly resolve?: Resolve;
  /** Seam: the clock for certificate validity and `startedAt` (default Date.now). */
  readonly now?: () => number;
}

function checkOptions(opts: PortcheckOptions): void {
  const problems: string[] = [];
  if (!opts.host || opts.host.length > 253) problems.push('the host must be 1-253 characters');
  if (opts.ports.length === 0 || opts.ports.length > MAX_PORTCHECK_PORTS) problems.push(`give 1 to ${MAX_PORTCHECK_PORTS} ports`);
  for (const p of opts.ports) if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) problems.push(`port ${p.port} is not 1-65535`);
  const timeout = opts.stepTimeoutMs ?? 5000;
  if (!(timeout > 0 && timeout <= 600_000)) problems.push('the step timeout must be more than 0 and at most 10 minutes');
  if ('pin' in opts.trust) parsePin(opts.trust.pin);
  if (problems.length > 0) throw new RollcallError('USAGE', `invalid port check: ${problems.join('; ')}`);
}

interface PortContext {
  readonly opts: PortcheckOptions;
  readonly dns: StepResult;
  readonly addresses: readonly string[];
  readonly timeoutMs: number;
  readonly now: () => number;
}

async function checkSteps(spec: PortSpec, ctx: PortContext): Promise<StepResult[]> {
  const { opts, timeoutMs } = ctx;
  const steps: StepResult[] = [ctx.dns];
  if (ctx.addresses.length === 0) return steps;
  const tcp = await tcpStep(ctx.addresses, spec.port, timeoutMs);
  steps.push(tcp.result);
  if (!tcp.socket || !tcp.address) return steps;
  const address = tcp.address;
  const tls = await tlsStep(tcp.socket, { host: opts.host, address, port: spec.port, trust: opts.trust, now: ctx.now, timeoutMs });
  steps.push(tls.result);
  if (!tls.socket || !tls.caPem) return steps;
  const identify = await identifyStep(tls.socket, { host: opts.host, port: spec.port, role: spec.role, expectInstanceId: opts.expectInstanceId, timeoutMs });
  steps.push(identify.result);
  if (!identify.result.ok || spec.role !== 'agent' || opts.websocket === false) return steps;
  steps.push(await websocketStep({ host: opts.host, address, port: spec.port, caPem: tls.caPem, clientCert: opts.clientCert, timeoutMs }));
  return steps;
}

function portResult(spec: PortSpec, host: string, steps: readonly StepResult[]): PortResult {
  const failed = steps.find((s) => !s.ok && s.failure !== undefined);
  const base = { host, port: spec.port, role: spec.role, required: spec.required, ok: steps.every((s) => s.ok), steps };
  if (!failed?.failure) return base;
  return { ...base, failure: { class: failed.failure, step: failed.step, message: failed.detail, remedy: PORTCHECK_FAILURES[failed.failure].remedy } };
}

/**
 * Checks every port of one host and reports each step with its timing.
 * Never rejects for a network problem (those are results); throws
 * RollcallError `USAGE` or `PIN_MALFORMED` for invalid options.
 */
export async function runPortcheck(opts: PortcheckOptions): Promise<PortcheckReport> {
  checkOptions(opts);
  const now = opts.now ?? Date.now;
  const started = performance.now();
  const startedAt = isoTime(now());
  const timeoutMs = opts.stepTimeoutMs ?? 5000;
  const dns = await dnsStep(opts.host, { resolve: opts.resolve ?? systemResolve, timeoutMs, allowPrivate: opts.allowPrivate ?? false });
  const ctx: PortContext = { opts, dns: dns.result, addresses: dns.addresses, timeoutMs, now };
  const ports = await Promise.all(opts.ports.map(async (spec) => portResult(spec, opts.host, await checkSteps(spec, ctx))));
  return {
    host: opts.host,
    startedAt,
    durationMs: Math.round(performance.now() - started),
    addresses: dns.addresses,
    ports,
    ok: ports.every((p) => p.ok || !p.required),
  };
}
