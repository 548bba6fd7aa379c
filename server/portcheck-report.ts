/**
 * `POST /v1/portcheck/report` on the agent port: a `rollcall portcheck
 * --report` result, authenticated with a customer's enrollment token, is
 * stored as one observation per port, counted as evidence for that
 * customer's network (the token's group) from the address it came from.
 *
 * The token is checked in `onRequest`, before the body is read, so an
 * unauthenticated client cannot make the server parse a large body. A
 * report does not use up the token (only revocation and expiry stop it),
 * and refusals count towards the same per-address failure limit as
 * enrollment, since both are ways to guess tokens.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ENROLL_TOKEN_PATTERN } from '../common/enroll-api.js';
import { MAX_PORTCHECK_REPORT_BYTES, PORTCHECK_REPORT_PATH, PortcheckReportBody, type PortcheckReportAnswer } from '../common/portcheck/report-api.js';
import type { PortResult } from '../common/portcheck/types.js';
import { httpError, type ServerErrorCode } from './errors.js';
import type { FailureLimits } from './failure-limiter.js';
import type { HttpsApp } from './http-common.js';
import type { Observation } from './storage/evidence-store.js';
import type { EnrollmentToken } from './storage/tokens-store.js';

/** What the report route needs. */
export interface PortcheckReportDeps {
  readonly storage: {
    readonly enrollTokens: { findBySecret(secret: string): Promise<EnrollmentToken | undefined> };
    readonly evidence: { record(observations: readonly Observation[]): Promise<unknown> };
  };
  /** Failures per source address (shared with enrollment). */
  readonly limiter: FailureLimits;
  readonly now: () => number;
  readonly log: Logger;
}

/** How far a report's own start time may lie from the server's clock before the server's time is used. */
const MAX_REPORT_AGE_MS = 24 * 3_600_000;
const MAX_REPORT_SKEW_MS = 5 * 60_000;

function tokenProblem(t: EnrollmentToken | undefined, now: number): string | undefined {
  if (!t) return 'the enrollment token is not known to this server';
  if (t.revokedAt !== null) return 'the enrollment token was revoked';
  if (t.expiresAt !== null && t.expiresAt <= now) return 'the enrollment token has expired';
  return undefined;
}

/** When the check ran: the report's start time if plausible, else the server's clock. */
function observedAt(startedAt: string, now: number): number {
  const t = Date.parse(startedAt);
  return Number.isFinite(t) && t >= now - MAX_REPORT_AGE_MS && t <= now + MAX_REPORT_SKEW_MS ? Math.min(t, now) : now;
}

function observation(p: PortResult, token: EnrollmentToken, address: string, at: number, now: number): Observation {
  return {
    source: 'portcheck',
    deviceId: null,
    groupId: token.groupId,
    targetHost: p.host,
    port: p.port,
    role: p.role,
    ok: p.ok,
    failureClass: p.failure?.class ?? null,
    step: p.failure?.step ?? null,
    detail: p.failure?.message ?? p.steps.at(-1)?.detail ?? null,
    sourceAddress: address,
    observedAt: at,
    reportedAt: now,
  };
}

/** Registers the report route on the agent listener. */
export function registerPortcheckReport(app: HttpsApp, deps: PortcheckReportDeps): void {
  const tokens = new WeakMap<FastifyRequest, EnrollmentToken>();

  const refuse = (address: string, code: ServerErrorCode, message: string): never => {
    deps.limiter.fail(address, deps.now());
    deps.log.warn({ reason: code, address, detail: message }, 'portcheck report refused');
    throw httpError(code, message);
  };

  const authenticate = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const address = req.socket.remoteAddress ?? 'unknown';
    const now = deps.now();
    const blockedMs = deps.limiter.blockedFor(address, now);
    if (blockedMs > 0) {
      deps.log.warn({ reason: 'RATE_LIMITED', address }, 'portcheck report refused');
      void reply.header('retry-after', String(Math.ceil(blockedMs / 1000)));
      return void reply.code(429).send({ error: { code: 'RATE_LIMITED', message: 'too many refused requests; retry later', retryAfterMs: blockedMs } });
    }
    const secret = /^Bearer ([^\s]+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!secret) return refuse(address, 'PORTCHECK_TOKEN_MISSING', 'send the enrollment token as Authorization: Bearer <token>');
    if (!ENROLL_TOKEN_PATTERN.test(secret)) return refuse(address, 'PORTCHECK_TOKEN_INVALID', 'the enrollment token is malformed');
    const token = await deps.storage.enrollTokens.findBySecret(secret);
    const problem = tokenProblem(token, now);
    if (problem || !token) return refuse(address, 'PORTCHECK_TOKEN_INVALID', problem ?? 'the enrollment token is not usable');
    tokens.set(req, token);
  };

  app.post(
    PORTCHECK_REPORT_PATH,
    { bodyLimit: MAX_PORTCHECK_REPORT_BYTES, schema: { body: PortcheckReportBody }, onRequest: authenticate },
    async (req, reply): Promise<PortcheckReportAnswer> => {
      const token = tokens.get(req)!;
      const report = req.body as PortcheckReportBody;
      const address = req.socket.remoteAddress ?? 'unknown';
      const now = deps.now();
      const at = observedAt(report.startedAt, now);
      await deps.storage.evidence.record(report.ports.map((p) => observation(p, token, address, at, now)));
      const failed = report.ports.filter((p) => !p.ok).length;
      deps.log.info({ tokenId: token.id, groupId: token.groupId, address, host: report.host, ports: report.ports.length, failed }, 'portcheck report stored');
      void reply.code(201);
      return { stored: report.ports.length };
    },
  );
}
