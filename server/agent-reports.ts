/**
 * Turns an agent's `report` (its probes of the server's ports and its
 * failed connection attempts) into health observations. Pure.
 *
 * A failed attempt carries the agent's failure class (DNS, REFUSED, …); it
 * is mapped to the nearest port-check class so the health report reasons
 * about one vocabulary.
 */
import type { PortcheckFailure, PortcheckStep } from '../common/portcheck/types.js';
import type { FailedAttempt, Report } from '../common/protocol.js';
import type { Observation } from './storage/evidence-store.js';

/** Agent failure class → the nearest port-check failure and step. */
export const ATTEMPT_CLASS_MAP: Readonly<Record<string, { failure: PortcheckFailure; step: PortcheckStep }>> = {
  DNS: { failure: 'DNS_NXDOMAIN', step: 'dns' },
  REFUSED: { failure: 'TCP_REFUSED', step: 'tcp' },
  TIMEOUT: { failure: 'TCP_TIMEOUT', step: 'tcp' },
  TLS: { failure: 'TLS_HANDSHAKE_FAILED', step: 'tls' },
  REJECTED: { failure: 'WS_REJECTED', step: 'websocket' },
  PROTOCOL: { failure: 'WS_NO_ROUNDTRIP', step: 'websocket' },
  CLOSED: { failure: 'WS_NO_ROUNDTRIP', step: 'websocket' },
};

/** Splits `host:port` / `[v6]:port`; the port defaults to 2222. */
function hostPort(server: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(server) ?? /^([^:]+)(?::(\d+))?$/.exec(server);
  const port = Number(m?.[2] ?? 2222);
  return { host: m?.[1] ?? server, port: Number.isInteger(port) && port > 0 && port < 65536 ? port : 2222 };
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
  const mapped = ATTEMPT_CLASS_MAP[a.class];
  return {
    source: 'failed_attempt',
    deviceId: ctx.deviceId,
    groupId: ctx.groupId,
    targetHost: host,
    port,
    role: 'agent',
    ok: false,
    failureClass: mapped?.failure ?? null,
    step: mapped?.step ?? null,
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
