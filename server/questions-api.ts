/**
 * Questions for the admin (docs/questions.md): `GET /api/v1/questions`,
 * `GET /api/v1/questions/:id` (with the device's history) and
 * `POST /api/v1/questions/:id/answer`.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { httpError } from './errors.js';
import { RESOLUTIONS, type Questions } from './questions.js';
import type { Storage } from './storage/index.js';
import type { Question } from './storage/questions-store.js';

const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const ListQuery = Type.Object({ state: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('answered'), Type.Literal('all')])) }, { additionalProperties: false });
const Answer = Type.Object({ resolution: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

/** The API shape of a question, with the device's names and the answers it takes. */
export type QuestionView = ReturnType<typeof view>;

function view(q: Question, device: { hostname: string; groupPath: string | null } | undefined) {
  return {
    id: q.id,
    kind: q.kind,
    deviceId: q.deviceId,
    hostname: device?.hostname ?? null,
    groupPath: device?.groupPath ?? null,
    oldFingerprint: q.oldFingerprint,
    newFingerprint: q.newFingerprint,
    oldAddress: q.oldAddress,
    newAddress: q.newAddress,
    raisedAt: iso(q.raisedAt)!,
    lastSeenAt: iso(q.lastSeenAt)!,
    timesSeen: q.timesSeen,
    answeredAt: iso(q.answeredAt),
    resolution: q.resolution,
    answeredBy: q.answeredBy,
    resolutions: q.answeredAt === null ? [...RESOLUTIONS[q.kind]] : [],
  };
}

/** Adds the question routes. */
export function registerQuestionRoutes(app: FastifyInstance, deps: { questions: Questions; storage: Storage; now: () => number }): void {
  const { storage } = deps;
  const views = async (list: Question[]) => {
    const paths = new Map((await storage.groups.list()).map((g) => [g.id, g.path]));
    const devices = new Map<string, { hostname: string; groupPath: string | null } | undefined>();
    for (const id of new Set(list.map((q) => q.deviceId))) {
      const d = await storage.devices.get(id);
      devices.set(id, d && { hostname: d.hostname, groupPath: paths.get(d.groupId) ?? null });
    }
    return list.map((q) => view(q, devices.get(q.deviceId)));
  };
  const mustGet = async (id: string): Promise<Question> => {
    const q = await storage.questions.get(id);
    if (!q) throw httpError('QUESTION_NOT_FOUND', `no question "${id}"`);
    return q;
  };

  app.get<{ Querystring: Static<typeof ListQuery> }>('/api/v1/questions', { schema: { querystring: ListQuery } }, async (req) => {
    const state = req.query.state ?? 'open';
    return { questions: await views(await storage.questions.list(state === 'all' ? {} : { open: state === 'open' })) };
  });

  app.get<{ Params: Static<typeof IdParam> }>('/api/v1/questions/:id', { schema: { params: IdParam } }, async (req) => {
    const q = await mustGet(req.params.id);
    const history = (await storage.questions.history(q.deviceId)).map((e) => ({ ...e, at: iso(e.at) }));
    return { ...(await views([q]))[0]!, history };
  });

  app.post<{ Params: Static<typeof IdParam>; Body: Static<typeof Answer> }>('/api/v1/questions/:id/answer', { schema: { params: IdParam, body: Answer } }, async (req) => {
    // Admins only (the route's default access): req.principal is set by the access check.
    const who = req.principal ? `${req.principal.kind === 'session' ? 'user' : 'api-token'}:${req.principal.name}` : 'unknown';
    const answered = await deps.questions.answer(req.params.id, req.body.resolution, who);
    return (await views([answered]))[0]!;
  });
}
