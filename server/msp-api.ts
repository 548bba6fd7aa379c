/**
 * Console API routes of the MSP integration: linking and syncing accounts,
 * the Managed customers view and customer setup, and the instance (who
 * created it; deleting it). Registered by console-api.ts behind the same
 * bearer-token check. Routes are listed in docs/api.md.
 */
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { RollcallError } from '../common/errors.js';
import { CloseCode } from '../common/close-codes.js';
import type { HttpsApp } from './http-common.js';
import type { Customers } from './msp/customers.js';
import { INSTANCE_CREATOR_KEY, type FetchSpec, type InstanceCreator, type MspSync } from './msp/sync-service.js';
import type { SessionRegistry } from './session-registry.js';
import type { Storage } from './storage/index.js';
import type { Logger } from 'pino';
import { scopeOf } from './console/auth.js';

/** What the MSP routes need. */
export interface MspApiDeps {
  readonly storage: Storage;
  readonly msp: MspSync;
  readonly customers: Customers;
  readonly registry: SessionRegistry;
  readonly instanceId: string;
  readonly now: () => number;
  readonly log: Logger;
}

const Portal = Type.Union([Type.Literal('msp'), Type.Literal('business')]);
const LinkBody = Type.Union([
  Type.Object({ source: Type.Literal('file'), file: Type.String({ minLength: 1, maxLength: 4096 }), portal: Type.Optional(Portal) }, { additionalProperties: false }),
  Type.Object(
    {
      source: Type.Literal('api'),
      baseUrl: Type.String({ minLength: 1, maxLength: 2048, pattern: '^https?://' }),
      user: Type.String({ minLength: 1, maxLength: 256 }),
      password: Type.String({ minLength: 1, maxLength: 1024 }),
      portal: Type.Optional(Portal),
    },
    { additionalProperties: false },
  ),
]);
const AccountBody = Type.Object({ account: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })) }, { additionalProperties: false });
const SetupBody = Type.Object(
  { customer: Type.String({ minLength: 1, maxLength: 1024 }), ttlSec: Type.Optional(Type.Integer({ minimum: 60, maximum: 365 * 86_400 })) },
  { additionalProperties: false },
);
const SkipBody = Type.Union([
  Type.Object({ customer: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false }),
  Type.Object({ allNew: Type.Literal(true) }, { additionalProperties: false }),
]);
const DeleteInstanceBody = Type.Object(
  { credentials: LinkBody, confirm: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

/** Key of the instance's deletion record in `meta`. */
export const INSTANCE_DELETED_KEY = 'instance_deleted';

function specOf(b: Static<typeof LinkBody>): FetchSpec {
  return b.source === 'file' ? { kind: 'file', path: path.resolve(b.file) } : { kind: 'api', baseUrl: b.baseUrl, user: b.user, password: b.password };
}

/** Registers the MSP, customers and instance routes. */
export function registerMspRoutes(app: HttpsApp, deps: MspApiDeps): void {
  const { storage, msp } = deps;
  const pickAccount = async (ref: string | undefined): Promise<string> => {
    const accounts = await storage.msp.accounts();
    if (ref) {
      const a = accounts.find((x) => x.id === ref || x.externalId === ref || x.name === ref);
      if (!a) throw new RollcallError('MSP_ACCOUNT_NOT_FOUND', `no MSP account "${ref}"`);
      return a.id;
    }
    const linked = accounts.filter((a) => a.linked);
    if (linked.length === 1) return linked[0]!.id;
    if (linked.length === 0 && accounts.length === 1) return accounts[0]!.id;
    if (accounts.length === 0) throw new RollcallError('MSP_ACCOUNT_NOT_FOUND', 'no MSP account is linked; link one with "rollcall msp link"');
    throw new RollcallError('MSP_ACCOUNT_AMBIGUOUS', `${linked.length} accounts are linked; name one (${accounts.map((a) => a.name).join(', ')})`);
  };

  app.get('/api/v1/msp/accounts', async () => ({ accounts: await msp.status() }));

  app.post<{ Body: Static<typeof LinkBody> }>('/api/v1/msp/link', { schema: { body: LinkBody } }, async (req, reply) => {
    const { account, run } = await msp.link(specOf(req.body), req.body.portal);
    const { apiSecret: _hidden, ...visible } = account;
    return reply.code(201).send({ account: visible, run });
  });

  app.post<{ Body: Static<typeof AccountBody> }>('/api/v1/msp/sync', { schema: { body: AccountBody } }, async (req) => {
    const run = await msp.sync(await pickAccount(req.body.account), 'manual');
    return { run };
  });

  app.post<{ Body: Static<typeof AccountBody> }>('/api/v1/msp/unlink', { schema: { body: AccountBody } }, async (req) => {
    const { apiSecret: _hidden, ...visible } = await msp.unlink(await pickAccount(req.body.account));
    return { account: visible };
  });

  // Scoped: a customer-scoped caller sees only the customers in its subtree (its own).
  app.get('/api/v1/customers', { config: { access: 'scoped' } }, async (req) => {
    const scope = await scopeOf(req, storage);
    return { customers: (await deps.customers.list()).filter((c) => scope.sees(c.groupId)) };
  });

  app.post<{ Body: Static<typeof SetupBody> }>('/api/v1/customers/setup', { schema: { body: SetupBody } }, async (req) => {
    const result = await deps.customers.setup(req.body.customer, { ttlMs: req.body.ttlSec === undefined ? undefined : req.body.ttlSec * 1000 });
    deps.log.info({ customer: result.customer.groupPath, tokenId: result.token.id, user: result.user.username }, 'customer set up');
    return result;
  });

  app.post<{ Body: Static<typeof SkipBody> }>('/api/v1/customers/skip', { schema: { body: SkipBody } }, async (req) => {
    const customers = await deps.customers.skip('customer' in req.body ? req.body.customer : { allNew: true });
    deps.log.info({ customers: customers.length }, 'customer setup skipped');
    return { customers };
  });

  app.get('/api/v1/instance', async () => ({
    instanceId: deps.instanceId,
    creator: (await storage.meta.get<InstanceCreator>(INSTANCE_CREATOR_KEY)) ?? null,
    deleted: (await storage.meta.get<{ at: number }>(INSTANCE_DELETED_KEY)) ?? null,
  }));

  app.post<{ Body: Static<typeof DeleteInstanceBody> }>('/api/v1/instance/delete', { schema: { body: DeleteInstanceBody } }, async (req) => {
    const creator = await storage.meta.get<InstanceCreator>(INSTANCE_CREATOR_KEY);
    const b = req.body;
    if (b.confirm !== deps.instanceId) throw new RollcallError('INSTANCE_CONFIRM_MISMATCH', `confirm with the instance id (${deps.instanceId})`);
    // The requester proves which account it is by the portal itself: its credentials (or export) name the account.
    const { account: requester, portal } = await msp.identify(specOf(b.credentials), b.credentials.portal);
    if (!creator || creator.portal !== portal || creator.accountExternalId !== requester.id) {
      const who = creator ? `the ${creator.portal === 'msp' ? 'MSP' : 'business'} portal account ${creator.accountExternalId} (${creator.accountName})` : 'no portal account (none was ever linked)';
      throw new RollcallError('INSTANCE_NOT_CREATOR', `only the account that created this instance may delete it: ${who}`);
    }
    const now = deps.now();
    for (const a of await storage.msp.accounts()) if (a.linked) await msp.unlink(a.id);
    const revoked = await storage.db.run('UPDATE devices SET revoked_at = ? WHERE revoked_at IS NULL', [now]);
    for (const s of [...deps.registry.values()]) s.close(CloseCode.REVOKED, 'the server instance was deleted');
    await storage.db.run('UPDATE enrollment_tokens SET revoked_at = ? WHERE revoked_at IS NULL', [now]);
    await storage.meta.set(INSTANCE_DELETED_KEY, { at: now, by: `${portal}:${requester.id}` });
    deps.log.warn({ by: `${portal}:${requester.id}`, devicesRevoked: revoked.changes }, 'instance deleted by its creator');
    return { deleted: true, devicesRevoked: revoked.changes };
  });
}
