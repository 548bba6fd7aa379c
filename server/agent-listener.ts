/**
 * The agent port: enrollment (token, no client certificate yet), the CA
 * certificate, the identification probe, and the check-in WebSocket.
 *
 * TLS asks every client for a certificate but does not abort the handshake
 * without one, because enrollment must work before the agent has one. The
 * check-in route therefore checks the certificate itself, in an `onRequest`
 * hook that runs before the upgrade: no trusted certificate, an unknown
 * serial or a revoked device is answered with an HTTP error (and the close
 * code it stands for in `x-rollcall-close-code`), and never gets a socket.
 */
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { CloseCode } from '../common/close-codes.js';
import { checkEnrollRequest, ENROLL_PATH, MAX_ENROLL_BODY_BYTES } from '../common/enroll-api.js';
import { RollcallError } from '../common/errors.js';
import { normalizeSerial, type KeyedCert } from '../common/pki.js';
import { CHECKIN_PATH, MAX_FRAME_BYTES } from '../common/protocol.js';
import { AgentSession, type SessionDeps, type SessionDevice } from './agent-session.js';
import { enroll, type EnrollDeps } from './enroll.js';
import { SERVER_ERRORS, statusOf, type ServerErrorCode } from './errors.js';
import type { FailureLimiter } from './failure-limiter.js';
import { registerPortcheckReport } from './portcheck-report.js';
import { addIdentifyRoute, installErrorHandling, type HttpsApp } from './http-common.js';
import { installAdmission, type AdmissionStats } from './admission.js';
import { loadOrCreateTicketKey, rotateTicketKeyIfOld, TICKET_LIFETIME_SEC, type TicketKey } from './tls-tickets.js';
import type { Storage } from './storage/index.js';

/** What the agent listener needs. */
export interface AgentListenerDeps {
  readonly tls: { readonly server: KeyedCert; readonly caCertPem: string; readonly handshakeTimeoutMs: number };
  readonly storage: Pick<Storage, 'db' | 'groups' | 'devices' | 'enrollTokens' | 'instanceId' | 'evidence'>;
  readonly ca: KeyedCert;
  readonly placementProblem?: EnrollDeps['placementProblem'];
  readonly enrollLimiter: FailureLimiter;
  readonly session: SessionDeps;
  readonly now: () => number;
  readonly log: Logger;
  /** Where the TLS session-ticket key lives (see tls-tickets.ts); without one, tickets last only as long as the process. */
  readonly ticketKeyFile?: string;
  /** Admission control before TLS (see admission.ts); none when absent. */
  readonly admission?: { readonly maxPendingHandshakes: number };
}

/** How often a running server checks whether its ticket key is due for rotation. */
const TICKET_ROTATION_CHECK_MS = 6 * 3_600_000;
/** At most one "connections shed" log line per this many milliseconds. */
const SHED_LOG_EVERY_MS = 5000;

declare module 'fastify' {
  interface FastifyRequest {
    rollcallDevice: SessionDevice | null;
  }
}

const REJECT_CLOSE_CODES: Partial<Record<ServerErrorCode, number>> = {
  DEVICE_UNKNOWN: CloseCode.UNKNOWN_DEVICE,
  DEVICE_REVOKED: CloseCode.REVOKED,
};

function reject(req: FastifyRequest, reply: FastifyReply, log: Logger, code: ServerErrorCode, message: string): FastifyReply {
  log.warn({ reason: code, address: req.socket.remoteAddress, detail: message }, 'agent rejected');
  const closeCode = REJECT_CLOSE_CODES[code];
  if (closeCode !== undefined) void reply.header('x-rollcall-close-code', String(closeCode));
  return reply.code(SERVER_ERRORS[code]).send({ error: { code, message } });
}

/** The error code of an enrollment refused for the client's fault (4xx); undefined for server faults. */
function enrollRefusalReason(err: unknown): string | undefined {
  if (err instanceof RollcallError) return statusOf(err) < 500 ? err.code : undefined;
  const status = (err as { statusCode?: unknown }).statusCode;
  if (typeof status !== 'number' || status < 400 || status >= 500) return undefined;
  return status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST'; // as installErrorHandling answers them
}

/** Checks the client certificate of a check-in upgrade and finds its device. */
async function authenticateAgent(req: FastifyRequest, reply: FastifyReply, deps: AgentListenerDeps): Promise<void> {
  const socket = req.raw.socket as TLSSocket;
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.serialNumber) return void reject(req, reply, deps.log, 'CLIENT_CERT_MISSING', 'a client certificate is required');
  if (!socket.authorized) {
    const why = String(socket.authorizationError ?? 'untrusted');
    if (why === 'CERT_HAS_EXPIRED') return void reject(req, reply, deps.log, 'CLIENT_CERT_EXPIRED', 'the client certificate has expired');
    return void reject(req, reply, deps.log, 'CLIENT_CERT_UNTRUSTED', `the client certificate is not trusted (${why})`);
  }
  // A resumed TLS session skips certificate verification: the certificate may have expired since the ticket was issued.
  if (socket.isSessionReused() && !(Date.parse(cert.valid_to) > deps.now())) {
    return void reject(req, reply, deps.log, 'CLIENT_CERT_EXPIRED', 'the client certificate has expired');
  }
  const device = await deps.storage.devices.findBySerial(normalizeSerial(cert.serialNumber));
  if (!device || cert.subject?.CN !== device.id) {
    return void reject(req, reply, deps.log, 'DEVICE_UNKNOWN', 'the certificate belongs to no known device');
  }
  if (device.revokedAt !== null) return void reject(req, reply, deps.log, 'DEVICE_REVOKED', 'the device was revoked');
  const group = await deps.storage.groups.get(device.groupId);
  req.rollcallDevice = { id: device.id, group: { id: device.groupId, path: group?.path ?? '' }, lastSeq: device.lastSeq };
}

/** Admission control in front of TLS, with at most one log line about shed connections every few seconds. */
function installGate(app: HttpsApp, limits: NonNullable<AgentListenerDeps['admission']>, log: Logger): void {
  let lastLogAt = 0;
  let shedAtLastLog = 0;
  installAdmission(app.server, limits, (_socket: Socket, stats: AdmissionStats) => {
    const now = Date.now();
    if (now - lastLogAt < SHED_LOG_EVERY_MS) return;
    log.warn({ shed: stats.shed - shedAtLastLog, pendingHandshakes: stats.pending, maxPendingHandshakes: limits.maxPendingHandshakes }, 'agent connections shed before TLS (server busy)');
    lastLogAt = now;
    shedAtLastLog = stats.shed;
  });
}

/** Builds (but does not start) the agent listener. */
export async function buildAgentListener(deps: AgentListenerDeps): Promise<HttpsApp> {
  let ticketKey: TicketKey | undefined;
  if (deps.ticketKeyFile) {
    const loaded = await loadOrCreateTicketKey(deps.ticketKeyFile, deps.now());
    ticketKey = loaded.key;
    if (loaded.outcome === 'replaced') deps.log.warn({ file: deps.ticketKeyFile, problem: loaded.problem }, 'TLS ticket key unreadable; made a new one (agents make full handshakes once)');
    else if (loaded.outcome === 'created') deps.log.info({ file: deps.ticketKeyFile }, 'TLS ticket key created');
  }
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    bodyLimit: MAX_ENROLL_BODY_BYTES,
    https: {
      key: deps.tls.server.keyPem,
      cert: deps.tls.server.certPem + deps.tls.caCertPem,
      ca: [deps.tls.caCertPem],
      requestCert: true,
      rejectUnauthorized: false, // the check-in route checks the certificate itself; enrollment has none yet
      minVersion: 'TLSv1.2',
      handshakeTimeout: deps.tls.handshakeTimeoutMs,
      // Resumption across restarts and processes: a fixed session context (Node's default hashes argv) and a persisted key.
      sessionIdContext: 'rollcall-agent',
      sessionTimeout: TICKET_LIFETIME_SEC,
      ...(ticketKey ? { ticketKeys: ticketKey.keys } : {}),
    },
  });
  if (ticketKey && deps.ticketKeyFile) {
    const file = deps.ticketKeyFile;
    let current = ticketKey;
    const timer = setInterval(() => {
      rotateTicketKeyIfOld(file, current, deps.now()).then(
        (next) => {
          if (!next) return;
          current = next;
          app.server.setTicketKeys(next.keys);
          deps.log.info({ file }, 'TLS ticket key rotated');
        },
        (err: unknown) => deps.log.error({ err: err instanceof Error ? err.message : String(err), file }, 'cannot rotate the TLS ticket key; keeping the old one'),
      );
    }, TICKET_ROTATION_CHECK_MS);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  }
  // Prepended: the https server's own listener destroys the socket, after which its address is gone.
  app.server.prependListener('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    deps.log.info({ reason: err.code ?? err.message, address: socket.remoteAddress }, 'TLS handshake failed');
  });
  installErrorHandling(app);
  app.decorateRequest('rollcallDevice', null);
  addIdentifyRoute(app, 'agent', deps.storage.instanceId);

  app.get('/v1/ca', async (_req, reply) => reply.type('application/x-pem-file').send(deps.tls.caCertPem));

  const enrollDeps: EnrollDeps = { storage: deps.storage, ca: deps.ca, now: deps.now, placementProblem: deps.placementProblem };
  const onEnrollError = async (req: FastifyRequest, _reply: FastifyReply, err: unknown): Promise<void> => {
    const reason = enrollRefusalReason(err);
    if (reason === undefined) return;
    const address = req.socket.remoteAddress ?? 'unknown';
    deps.enrollLimiter.fail(address, deps.now());
    deps.log.warn({ reason, address }, 'enrollment refused');
  };
  // onError also sees bodies the parser refuses (too large, not JSON), so every refusal is counted and logged.
  app.post(ENROLL_PATH, { onError: onEnrollError }, async (req, reply) => {
    const address = req.socket.remoteAddress ?? 'unknown';
    const blockedMs = deps.enrollLimiter.blockedFor(address, deps.now());
    if (blockedMs > 0) {
      deps.log.warn({ reason: 'RATE_LIMITED', address }, 'enrollment refused');
      void reply.header('retry-after', String(Math.ceil(blockedMs / 1000)));
      return reply.code(429).send({ error: { code: 'RATE_LIMITED', message: 'too many failed enrollments; retry later', retryAfterMs: blockedMs } });
    }
    const result = await enroll(checkEnrollRequest(req.body), enrollDeps);
    deps.log.info({ deviceId: result.deviceId, group: result.group.path, placementReason: result.placementReason, address }, 'agent enrolled');
    return result;
  });

  registerPortcheckReport(app, { storage: deps.storage, limiter: deps.enrollLimiter, now: deps.now, log: deps.log });

  await app.register(fastifyWebsocket, {
    options: { maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false },
    // Socket errors (oversized frames, resets) are the client's doing and the session logs them at warn;
    // anything else reaching here is our bug.
    errorHandler: (error, socket, request) => {
      if (typeof (error as { code?: unknown }).code !== 'string') request.log.error({ err: error.message, stack: error.stack }, 'check-in handler failed');
      socket.terminate();
    },
  });
  app.get(CHECKIN_PATH, { websocket: true, onRequest: async (req, reply) => authenticateAgent(req, reply, deps) }, (socket, req) => {
    const device = req.rollcallDevice!;
    const address = req.socket.remoteAddress ?? 'unknown';
    const log = deps.log.child({ deviceId: device.id, connId: req.id });
    new AgentSession(socket, device, address, deps.session, log);
  });
  if (deps.admission) installGate(app, deps.admission, deps.log);
  return app;
}
