/**
 * The agent port: enrollment (token, no client certificate yet), the CA
 * certificate, the identification probe, and the check-in WebSocket.
 *
 * TLS asks every client for a certificate but does not abort the handshake
 * without one, because enrollment must work before the agent has one. The
 * check-in upgrade therefore checks the certificate itself before upgrading:
 * no trusted certificate, an unknown serial or a revoked device is answered
 * with an HTTP error (and the close code it stands for in
 * `x-rollcall-close-code`), and never gets a socket.
 *
 * Scale: TLS session tickets (key persisted, tls-tickets.ts) let agents
 * resume after a restart; admission control sheds connections before TLS
 * when too many handshakes are in flight (admission.ts); the WebSocket
 * upgrade bypasses fastify (installCheckinUpgrade).
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { CloseCode } from '../common/close-codes.js';
import { restartFloorMs, restartWindowMs } from './restart-spread.js';
import { checkEnrollRequest, ENROLL_PATH, MAX_ENROLL_BODY_BYTES } from '../common/enroll-api.js';
import { RollcallError } from '../common/errors.js';
import { normalizeSerial, type KeyedCert } from '../common/pki.js';
import { CHECKIN_PATH, encode, MAX_FRAME_BYTES } from '../common/protocol.js';
import { AgentSession, type SessionDeps, type SessionDevice } from './agent-session.js';
import { HelloDeadlines } from './hello-deadlines.js';
import { SERVER_ERRORS, statusOf, type ServerErrorCode } from './errors.js';
import type { FailureLimits } from './failure-limiter.js';
import { registerPortcheckReport } from './portcheck-report.js';
import { registerAgentDownload, type AgentBinaries } from './agent-download.js';
import { addIdentifyRoute, installErrorHandling, type HttpsApp } from './http-common.js';
import { installAdmission, type AdmissionStats } from './admission.js';
import { TICKET_LIFETIME_SEC } from './tls-tickets.js';
import type { AgentBackend, Refusal } from './agent-backend.js';
import type { SessionRegistry } from './session-registry.js';

/** What the agent listener needs. */
export interface AgentListenerDeps {
  readonly tls: { readonly server: KeyedCert; readonly caCertPem: string; readonly handshakeTimeoutMs: number; readonly clientCaPems?: readonly string[] };
  /** Storage and CA work: local, or the primary's over IPC in an agent worker. */
  readonly backend: AgentBackend;
  /** The CA certificate served on /v1/ca (the one that enrolls agents now). */
  readonly caCertPem: () => string;
  /** Failed enrollments (and portcheck reports) per source address: this process's own, or the box's through the primary. */
  readonly enrollLimiter: FailureLimits;
  readonly session: SessionDeps;
  /** The registry of this process's sessions: the shutdown notice hooks into it. */
  readonly registry: Pick<SessionRegistry, 'onShutdown'>;
  /** Uniform random numbers in [0, 1) for the shutdown spread; a seam for tests. */
  readonly random?: () => number;
  /** How long a restart of this server is expected to take (its last measured start and stop), for the shutdown notice. */
  readonly expectedRestartMs?: () => number;
  /** The agent executables served to installers. */
  readonly binaries: AgentBinaries;
  readonly now: () => number;
  readonly log: Logger;
  /** Observes check-in refusals (the console's live feed); deviceId when the certificate names a known device. */
  readonly onReject?: (e: RejectEvent) => void;
  /** The TLS session-ticket keys (see tls-tickets.ts); without them, tickets last only as long as the process. */
  readonly ticketKeys?: Buffer;
  /** Admission control before TLS (see admission.ts); none when absent. `stats` hears of the gate's live counters once it is installed. */
  readonly admission?: { readonly maxPendingHandshakes: number; readonly stats?: (stats: Readonly<AdmissionStats>) => void };
}

/** A refused check-in upgrade, for the live feed. */
export interface RejectEvent {
  readonly kind: 'reject';
  readonly deviceId: string | null;
  readonly reason: string;
  readonly address: string;
  readonly at: number;
}


/** At most one "connections shed" log line per this many milliseconds. */
const SHED_LOG_EVERY_MS = 5000;

const REJECT_CLOSE_CODES: Partial<Record<ServerErrorCode, number>> = {
  DEVICE_UNKNOWN: CloseCode.UNKNOWN_DEVICE,
  DEVICE_REVOKED: CloseCode.REVOKED,
};

/** The error code of an enrollment refused for the client's fault (4xx); undefined for server faults. */
function enrollRefusalReason(err: unknown): string | undefined {
  if (err instanceof RollcallError) return statusOf(err) < 500 ? err.code : undefined;
  const status = (err as { statusCode?: unknown }).statusCode;
  if (typeof status !== 'number' || status < 400 || status >= 500) return undefined;
  return status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST'; // as installErrorHandling answers them
}

/** Checks the client certificate of a check-in upgrade and finds its device. */
async function authenticateAgent(socket: TLSSocket, deps: AgentListenerDeps): Promise<SessionDevice | Refusal> {
  // The plain (not detailed) object: about 40 µs per connect, where getPeerX509Certificate() costs about 140 µs
  // (first call per socket, measured on Node 20 here; the fields read below cost next to nothing either way).
  const cert = socket.getPeerCertificate(false);
  if (!cert || !cert.serialNumber) return { code: 'CLIENT_CERT_MISSING', message: 'a client certificate is required' };
  if (!socket.authorized) {
    const why = String(socket.authorizationError ?? 'untrusted');
    if (why === 'CERT_HAS_EXPIRED') return { code: 'CLIENT_CERT_EXPIRED', message: 'the client certificate has expired' };
    return { code: 'CLIENT_CERT_UNTRUSTED', message: `the client certificate is not trusted (${why})` };
  }
  // A resumed TLS session skips certificate verification: the certificate may have expired since the ticket was issued.
  if (socket.isSessionReused() && !(Date.parse(cert.valid_to) > deps.now())) {
    return { code: 'CLIENT_CERT_EXPIRED', message: 'the client certificate has expired' };
  }
  const cn = cert.subject?.CN;
  // Exactly one CN (Node gives several as an array).
  return deps.backend.lookupDevice(normalizeSerial(cert.serialNumber), typeof cn === 'string' ? cn : undefined);
}

/** Answers an upgrade request with an HTTP error and closes the socket (as `ws` refuses a handshake). */
function refuseUpgrade(socket: Duplex, status: number, body: unknown, closeCode?: number): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const text = JSON.stringify(body);
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(text)}`,
    'Connection: close',
    ...(closeCode === undefined ? [] : [`x-rollcall-close-code: ${closeCode}`]),
  ];
  socket.once('finish', () => socket.destroy());
  socket.end(`${head.join('\r\n')}\r\n\r\n${text}`);
}

/** How long a stopping server waits for agents to answer their close frame before cutting them off. */
export const SHUTDOWN_CLOSE_GRACE_MS = 3000;

/**
 * The check-in WebSocket, upgraded here rather than through fastify: an
 * agent's channel lives for days, and fastify's request and reply objects
 * (kept alive by the upgraded socket when the upgrade went through its
 * router) would cost every connected agent memory and every connect CPU.
 * The answers are the same as a fastify route's: 404 for other paths, the
 * certificate checked before the upgrade, refusals as JSON errors with the
 * close code they stand for in `x-rollcall-close-code`. The hello deadlines
 * of all channels share one timer (hello-deadlines.ts).
 */
function installCheckinUpgrade(app: HttpsApp, deps: AgentListenerDeps): void {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false });
  let nextConnId = 1;
  const hellos = new HelloDeadlines(deps.session.settings.helloTimeoutMs);
  // Open channels, for the shutdown notice (the sessions own their sockets; this only sends one frame).
  const open = new Set<WebSocket>();
  const random = deps.random ?? Math.random;
  deps.registry.onShutdown((sessions) => {
    const windowMs = restartWindowMs(sessions);
    const floorMs = restartFloorMs(deps.expectedRestartMs?.() ?? 0);
    deps.log.info({ agents: open.size, windowMs, floorMs }, 'telling agents when to reconnect');
    for (const ws of open) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      const retryAfterMs = floorMs + Math.floor(random() * windowMs);
      ws.send(encode({ type: 'error', code: 'SERVER_RESTARTING', message: 'the server is shutting down; reconnect after retryAfterMs', retryAfterMs }));
    }
    // The registry closes every channel next. A peer that has not answered its close frame within the grace is cut off,
    // so a stop does not wait on the slowest of 100,000 peers (ws would wait 30 s): each knows when to come back already.
    setTimeout(() => {
      if (open.size > 0) deps.log.info({ agents: open.size, graceMs: SHUTDOWN_CLOSE_GRACE_MS }, 'cutting off agents that did not finish closing');
      for (const ws of open) ws.terminate();
    }, SHUTDOWN_CLOSE_GRACE_MS).unref();
  });
  const onSocketError = function (this: Duplex): void {
    this.destroy();
  };
  const onChannelClose = function (this: WebSocket): void {
    open.delete(this);
  };
  // Outside the upgrade handler on purpose: nothing a channel keeps for its life may close over the handler's scope,
  // which holds the upgrade request and its head (every channel kept them while its close listener was made in there).
  const startSession = (ws: WebSocket, socket: Duplex, device: SessionDevice, address: string): void => {
    socket.removeListener('error', onSocketError);
    open.add(ws);
    ws.on('close', onChannelClose); // emitted once; `on` spares the wrapper `once` allocates per channel
    hellos.add(new AgentSession(ws, device, address, deps.session, deps.log, nextConnId++));
  };
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', onSocketError);
    const path = (req.url ?? '').split('?')[0] ?? '';
    const address = req.socket.remoteAddress ?? 'unknown';
    if (path !== CHECKIN_PATH || req.method !== 'GET') {
      refuseUpgrade(socket, 404, { error: { code: 'NOT_FOUND', message: `no route ${req.method} ${path}` } });
      return;
    }
    authenticateAgent(req.socket as TLSSocket, deps).then(
      (result) => {
        if ('code' in result) {
          deps.onReject?.({ kind: 'reject', deviceId: result.deviceId ?? null, reason: result.code, address, at: deps.now() });
          deps.log.warn({ reason: result.code, address, detail: result.message }, 'agent rejected');
          refuseUpgrade(socket, SERVER_ERRORS[result.code], { error: { code: result.code, message: result.message } }, REJECT_CLOSE_CODES[result.code]);
          return;
        }
        if (!socket.writable) return void socket.destroy(); // gone while we looked the device up
        wss.handleUpgrade(req, socket, head, (ws) => startSession(ws, socket, result, address));
      },
      (err: unknown) => {
        deps.log.error({ err: err instanceof Error ? err.message : String(err), address }, 'check-in upgrade failed');
        refuseUpgrade(socket, 500, { error: { code: 'INTERNAL', message: 'internal server error' } });
      },
    );
  });
}

/** Admission control in front of TLS, with at most one log line about shed connections every few seconds. */
function installGate(app: HttpsApp, limits: NonNullable<AgentListenerDeps['admission']>, log: Logger): void {
  let lastLogAt = 0;
  let shedAtLastLog = 0;
  const gate = installAdmission(app.server, limits, (_socket: Socket, stats: AdmissionStats) => {
    const now = Date.now();
    if (now - lastLogAt < SHED_LOG_EVERY_MS) return;
    log.warn({ shed: stats.shed - shedAtLastLog, pendingHandshakes: stats.pending, maxPendingHandshakes: limits.maxPendingHandshakes }, 'agent connections shed before TLS (server busy)');
    lastLogAt = now;
    shedAtLastLog = stats.shed;
  });
  limits.stats?.(gate.stats);
}

/** Builds (but does not start) the agent listener. */
export async function buildAgentListener(deps: AgentListenerDeps): Promise<HttpsApp> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    bodyLimit: MAX_ENROLL_BODY_BYTES,
    https: {
      key: deps.tls.server.keyPem,
      cert: deps.tls.server.certPem + deps.tls.caCertPem,
      ca: [...(deps.tls.clientCaPems ?? [deps.tls.caCertPem])],
      requestCert: true,
      rejectUnauthorized: false, // the check-in route checks the certificate itself; enrollment has none yet
      minVersion: 'TLSv1.2',
      handshakeTimeout: deps.tls.handshakeTimeoutMs,
      // Resumption across restarts and processes: a fixed session context (Node's default hashes argv) and a persisted key.
      sessionIdContext: 'rollcall-agent',
      sessionTimeout: TICKET_LIFETIME_SEC,
      ...(deps.ticketKeys ? { ticketKeys: deps.ticketKeys } : {}),
    },
  });
  // Prepended: the https server's own listener destroys the socket, after which its address is gone.
  app.server.prependListener('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    deps.log.info({ reason: err.code ?? err.message, address: socket.remoteAddress }, 'TLS handshake failed');
  });
  installErrorHandling(app);
  addIdentifyRoute(app, 'agent', deps.backend.instanceId);

  app.get('/v1/ca', async (_req, reply) => reply.type('application/x-pem-file').send(deps.caCertPem()));

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
    const result = await deps.backend.enroll(checkEnrollRequest(req.body));
    deps.log.info({ deviceId: result.deviceId, group: result.group.path, placementReason: result.placementReason, address }, 'agent enrolled');
    return result;
  });

  registerAgentDownload(app, deps.binaries, deps.log);
  registerPortcheckReport(app, { storage: deps.backend.portcheck, limiter: deps.enrollLimiter, now: deps.now, log: deps.log });

  installCheckinUpgrade(app, deps);
  if (deps.admission) installGate(app, deps.admission, deps.log);
  return app;
}
