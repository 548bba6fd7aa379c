/**
 * `POST /api/v1/installers`: an install script for a customer or an
 * enrollment token (docs/install.md, docs/api.md).
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Type, type Static } from '@sinclair/typebox';
import { INSTALLER_OS, type Installers } from './installer/installers.js';

const MakeInstaller = Type.Object(
  {
    target: Type.String({ minLength: 1, maxLength: 1024 }),
    os: Type.Union(INSTALLER_OS.map((o) => Type.Literal(o))),
    servers: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 300 }), { maxItems: 16 })),
    proxy: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    ttlSec: Type.Optional(Type.Integer({ minimum: 60, maximum: 10 * 365 * 86_400 })),
  },
  { additionalProperties: false },
);

/** Adds the installer route. */
export function registerInstallerRoutes(app: FastifyInstance, deps: { installers: Installers; log: Logger }): void {
  app.post<{ Body: Static<typeof MakeInstaller> }>('/api/v1/installers', { schema: { body: MakeInstaller } }, async (req, reply) => {
    const b = req.body;
    const made = await deps.installers.make({ target: b.target, os: b.os, servers: b.servers, proxy: b.proxy, ttlMs: b.ttlSec === undefined ? undefined : b.ttlSec * 1000 });
    deps.log.info({ os: made.os, group: made.groupPath, tokenId: made.tokenId, tokenCreated: made.tokenCreated, servers: made.servers, proxy: made.proxy }, 'installer made');
    return reply.code(201).send(made);
  });
}
