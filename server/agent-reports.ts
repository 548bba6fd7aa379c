/**
 * Turns an agent's `report` (its probes of the server's ports and its
 * failed connection attempts) into health observations. Pure.
 *
 * A failed attempt carries the agent's failure class (DNS, REFUSED, …); it
 * is mapped to the nearest port-check class so the health report reasons
 * about one vocabulary.
 */
import { RollcallError } from '../common/errors.js';
import { parseHostPort } from '../common/https-json.js';
import { PORTCHECK_FAILURES, type PortcheckFailure } from '../common/portcheck/types.js';
import type { FailedAttempt, Report } from '../common/protocol.js';
import type { Observation } from './storage/evidence-store.js';

/** Agent failure class → the nearest port-check failure (its step comes from PORTCHECK_FAILURES). */
export const ATTEMPT_CLASS_MAP: Readonly<Record<string, PortcheckFailure>> = {
  DNS: 'DNS_NXDOMAIN',
  REFUSED: 'TCP_REFUSED',
  TIMEOUT: 'TCP_TIMEOUT',
  TLS: 'TLS_HANDSHAKE_FAILED',
  // The proxy opened no tunnel to the server: no TCP path from that network (the remedy names proxy settings).
  PROXY: 'TCP_UNREACHABLE',
  REJECTED: 'WS_REJECTED',
  PROTOCOL: 'WS_NO_ROUNDTRIP',
  CLOSED: 'WS_NO_ROUNDTRIP',
};

/** Splits the agent's `host:port` entry (port 2222 when absent); an entry that does not parse is kept whole. */
function hostPort(server: string): { host: string; port: number } {
  try {
    return parseHostPort(server, 2222);
  } catch (err) {
    if (err instanceof RollcallError && err.code === 'ADDRESS_INVALID') return { host: server, port: 2222 };
    throw err;
  }
}

/** What the session knows about the reporting device. */
export interface ReportContext {
  readonly deviceId: string;
  readonly groupId: string;
  readonly sourceAddress: string;
  readonly now: number;
}

function attemptObservation(a: FailedAttempt, ctx: ReportContext): Observation {
  const { host, port } = hostPort(a.server);
  const failure = ATTEMPT_CLASS_MAP[a.class];
  return {
    source: 'failed_attempt',
    deviceId: ctx.deviceId,
    groupId: ctx.groupId,
    targetHost: host,
    port,
    role: 'agent',
    ok: false,
    failureClass: failure ?? null,
    step: failure ? PORTCHECK_FAILURES[failure].step : null,
    detail: `${a.class} ${a.code}: ${a.message}`.slice(0, 400),
    sourceAddress: ctx.sourceAddress,
    observedAt: Math.min(a.at, ctx.now),
    reportedAt: ctx.now,
  };
}

/** The observations a report stands for. */
export function reportToObservations(report: Report, ctx: ReportContext): Observation[] {
  const probes = report.probes.map<Observation>((p) => ({
    source: 'agent_probe',
    deviceId: ctx.deviceId,
    groupId: ctx.groupId,
    targetHost: p.host,
    port: p.port,
    role: p.role,
    ok: p.ok,
    failureClass: p.ok ? null : (p.failure ?? null),
    step: p.ok ? null : (p.step ?? null),
    detail: `${Math.round(p.ms)} ms`,
    sourceAddress: ctx.sourceAddress,
    observedAt: Math.min(p.at, ctx.now),
    reportedAt: ctx.now,
  }));
  return [...probes, ...report.attempts.map((a) => attemptObservation(a, ctx))];
}
