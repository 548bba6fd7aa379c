/**
 * Console users: everyone changes their own password; admins list users,
 * make new ones (admins, or customer admins with a home group) and disable
 * or enable them. A disabled user's sessions end at once. Passwords are at
 * least 12 characters; a generated one is returned once.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import { httpError } from '../errors.js';
import type { HttpsApp } from '../http-common.js';
import type { Storage } from '../storage/index.js';
import { randomPassword, type User } from '../storage/users-store.js';
import { SESSION_COOKIE, type AuthSettings } from './auth.js';

const Password = Type.String({ minLength: 12, maxLength: 1024 });
const ChangePassword = Type.Object({ current: Type.String({ minLength: 1, maxLength: 1024 }), password: Password }, { additionalProperties: false });
const CreateUser = Type.Object(
  {
    username: Type.String({ minLength: 2, maxLength: 64 }),
    role: Type.Union([Type.Literal('admin'), Type.Literal('customer_admin')]),
    group: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    password: Type.Optional(Password),
  },
  { additionalProperties: false },
);
const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/** What the user routes need. */
export interface UserRoutesDeps {
  readonly storage: Storage;
  readonly settings: AuthSettings;
  readonly now: () => number;
  readonly log: import('pino').Logger;
}

function view(u: User, paths: ReadonlyMap<string, string>) {
  return {
    id: u.id,
    username: u.username,
    role: u.role,
    homeGroupId: u.homeGroupId,
    homeGroupPath: u.homeGroupId ? (paths.get(u.homeGroupId) ?? null) : null,
    createdAt: new Date(u.createdAt).toISOString(),
    disabledAt: u.disabledAt === null ? null : new Date(u.disabledAt).toISOString(),
  };
}

/** Registers the user routes. */
export function registerUserRoutes(app: HttpsApp, deps: UserRoutesDeps): void {
  const { storage, log } = deps;
  const paths = async () => new Map((await storage.groups.list()).map((g) => [g.id, g.path]));
  const newSession = async (reply: FastifyReply, userId: string, address: string | null) => {
    const { id, session } = await storage.sessions.create(userId, address, deps.now(), deps.settings.session);
    void reply.header('set-cookie', `${SESSION_COOKIE}=${id}; Path=/; Max-Age=${Math.floor(deps.settings.session.absoluteMs / 1000)}; Secure; HttpOnly; SameSite=Strict`);
    return session.csrfToken;
  };

  app.post<{ Body: Static<typeof ChangePassword> }>('/api/v1/session/password', { schema: { body: ChangePassword }, config: { access: 'scoped' } }, async (req, reply) => {
    const p = req.principal!;
    if (p.kind !== 'session') throw httpError('FORBIDDEN', 'an API token has no password; log in to change yours');
    if (!(await storage.users.checkPassword(p.id, req.body.current))) {
      log.warn({ user: p.name, reason: 'bad_password' }, 'password change refused');
      throw httpError('LOGIN_FAILED', 'the current password is wrong');
    }
    await storage.users.setPassword(p.id, req.body.password);
    // Every session of the user ends (a stolen one too); this browser gets a fresh one.
    await storage.sessions.deleteForUser(p.id);
    const csrfToken = await newSession(reply, p.id, req.socket.remoteAddress ?? null);
    log.info({ user: p.name }, 'password changed');
    return { csrfToken };
  });

  app.get('/api/v1/users', async () => {
    const p = await paths();
    return { users: (await storage.users.list()).map((u) => view(u, p)) };
  });

  app.post<{ Body: Static<typeof CreateUser> }>('/api/v1/users', { schema: { body: CreateUser } }, async (req, reply) => {
    const b = req.body;
    let homeGroupId: string | null = null;
    if (b.role === 'customer_admin') {
      if (!b.group) throw httpError('BAD_REQUEST', 'a customer admin needs a home group ("group")');
      homeGroupId = (await storage.groups.resolve(b.group)).id;
    } else if (b.group !== undefined) {
      throw httpError('BAD_REQUEST', 'an admin has no home group; leave "group" out');
    }
    const password = b.password ?? randomPassword();
    const user = await storage.users.create({ username: b.username, password, role: b.role, homeGroupId, now: deps.now() });
    log.info({ user: user.username, role: user.role, by: req.principal!.name }, 'user created');
    return reply.code(201).send({ ...view(user, await paths()), ...(b.password ? {} : { password }) });
  });

  const setDisabled = (disable: boolean) => async (req: { params: Static<typeof IdParam>; principal: { id: string; name: string } | null }) => {
    const u = await storage.users.get(req.params.id);
    if (!u) throw httpError('USER_NOT_FOUND', `no user "${req.params.id}"`);
    if (disable && u.id === req.principal!.id) throw httpError('BAD_REQUEST', 'you cannot disable yourself');
    await storage.users.setDisabled(u.id, disable ? deps.now() : null);
    const ended = disable ? await storage.sessions.deleteForUser(u.id) : 0;
    log.info({ user: u.username, by: req.principal!.name, sessionsEnded: ended }, disable ? 'user disabled' : 'user enabled');
    return view((await storage.users.get(u.id))!, await paths());
  };
  app.post<{ Params: Static<typeof IdParam> }>('/api/v1/users/:id/disable', { schema: { params: IdParam } }, setDisabled(true));
  app.post<{ Params: Static<typeof IdParam> }>('/api/v1/users/:id/enable', { schema: { params: IdParam } }, setDisabled(false));
}
