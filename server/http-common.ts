/**
 * Pieces both listeners share: the error handler that turns errors into
 * `{ error: { code, message } }` bodies, and the identification probe.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { FastifyBaseLogger, FastifyError, FastifyInstance } from 'fastify';
import { IDENTIFY_PATH, type Identity } from '../common/enroll-api.js';
import { RollcallError } from '../common/errors.js';
import { PROTOCOL_VERSION, ROLLCALL_VERSION } from '../common/version.js';
import { statusOf } from './errors.js';

/** A fastify instance serving HTTPS with a pino logger, as both listeners are. */
export type HttpsApp = FastifyInstance<HttpsServer, IncomingMessage, ServerResponse, FastifyBaseLogger>;

/** Installs the JSON error handler and a JSON 404. */
export function installErrorHandling(app: HttpsApp): void {
  app.setErrorHandler((err: FastifyError | RollcallError, req, reply) => {
    if (err instanceof RollcallError) {
      const status = statusOf(err);
      if (status >= 500) req.log.error({ err: err.message, code: err.code }, 'request failed');
      void reply.code(status).send({ error: { code: err.code, message: err.message } });
      return;
    }
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status >= 500) {
      req.log.error({ err: err.message, stack: err.stack }, 'request failed');
      void reply.code(500).send({ error: { code: 'INTERNAL', message: 'internal server error' } });
      return;
    }
    const code = status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST';
    void reply.code(status === 413 ? 413 : 400).send({ error: { code, message: err.message } });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });
}

/** Adds the identification probe: which server instance and listener role answered, and who asked. */
export function addIdentifyRoute(app: HttpsApp, role: Identity['role'], instanceId: string): void {
  app.get(IDENTIFY_PATH, async (req): Promise<Identity> => ({
    service: 'rollcall',
    instanceId,
    role,
    clientAddress: req.socket.remoteAddress ?? '',
    version: ROLLCALL_VERSION,
    protocol: PROTOCOL_VERSION,
  }));
}
