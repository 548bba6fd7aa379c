import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor, type EnrolledAgent, type RawClient, type TestServer } from '../../test/support/harness.js';
import { rollcallMain } from '../cli.js';
import type { QuestionView } from '../questions-api.js';

const h = new Harness();
afterEach(() => h.cleanup());
type Err = { error: { code: string; message: string } };

const fp = (c: string): string => c.repeat(64);

/** Opens a channel with the agent's certificate and says hello with a fingerprint. */
async function connect(s: TestServer, agent: EnrolledAgent, fingerprint: string): Promise<RawClient> {
  const c = await s.rawClient(agent);
  await c.open();
  c.hello(agent.deviceId, { fingerprint });
  await c.waitMessage('welcome');
  return c;
}

/** Connects, waits until the connect is recorded, and hangs up (no clone: one machine reconnecting). */
async function visit(s: TestServer, agent: EnrolledAgent, fingerprint: string): Promise<void> {
  const before = (await s.server.storage.devices.get(agent.deviceId))!.lastConnectedAt;
  const c = await connect(s, agent, fingerprint);
  await waitFor(async () => (await s.server.storage.devices.get(agent.deviceId))!.lastConnectedAt !== before, 'the connect recorded');
  c.terminate();
  await waitFor(() => s.server.registry.get(agent.deviceId) === undefined, 'the channel gone');
}

async function open(s: TestServer): Promise<QuestionView[]> {
  const res = await s.api<{ questions: QuestionView[] }>('GET', '/api/v1/questions');
  expect(res.status).toBe(200);
  return res.body.questions;
}

async function answer(s: TestServer, id: string, resolution: string) {
  return s.api<QuestionView & Err>('POST', `/api/v1/questions/${id}/answer`, { resolution });
}

describe('hardware changes', () => {
  it('asks once per change, keeps the old fingerprint until accepted, and counts repeats', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ fingerprint: fp('a') });
    await visit(s, agent, fp('a'));
    expect(await open(s)).toEqual([]);
    await visit(s, agent, fp('b'));
    await visit(s, agent, fp('b'));
    const [q, ...more] = await open(s);
    expect(more).toEqual([]);
    expect(q).toMatchObject({ kind: 'hardware_change', deviceId: agent.deviceId, hostname: 'test-host', oldFingerprint: fp('a'), newFingerprint: fp('b'), timesSeen: 2, resolutions: ['accept_change', 'accept_every_change', 'create_new'] });
    expect((await s.server.storage.devices.get(agent.deviceId))!.fingerprint).toBe(fp('a'));
    expect(s.logs.find((l) => l.msg === 'question raised for the admin')).toMatchObject({ kind: 'hardware_change', deviceId: agent.deviceId });

    const res = await answer(s, q!.id, 'accept_change');
    expect(res.body).toMatchObject({ resolution: 'accept_change', answeredBy: 'api-token:initial-admin', resolutions: [] });
    expect((await s.server.storage.devices.get(agent.deviceId))!.fingerprint).toBe(fp('b'));
    await visit(s, agent, fp('b'));
    expect(await open(s)).toEqual([]);
    await visit(s, agent, fp('c'));
    expect((await open(s)).map((x) => x.newFingerprint)).toEqual([fp('c')]);
  });

  it('accept_every_change stops asking for that device but keeps the history', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ fingerprint: fp('a') });
    const other = await s.enrollAgent({ fingerprint: fp('a') });
    await visit(s, agent, fp('b'));
    const [q] = await open(s);
    await answer(s, q!.id, 'accept_every_change');
    await visit(s, agent, fp('c'));
    await visit(s, agent, fp('d'));
    expect(await open(s)).toEqual([]);
    expect((await s.server.storage.devices.get(agent.deviceId))!.fingerprint).toBe(fp('d'));
    const shown = await s.api<{ history: { event: string }[] }>('GET', `/api/v1/questions/${q!.id}`);
    expect(shown.body.history.map((e) => e.event)).toEqual(['raised', 'answered', 'change_accepted_by_policy', 'change_accepted_by_policy']);
    await visit(s, other, fp('e'));
    expect((await open(s)).map((x) => x.deviceId)).toEqual([other.deviceId]);
  });

  it('create_new revokes the certificate: the computer must enroll again', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ fingerprint: fp('a') });
    const c = await connect(s, agent, fp('b'));
    const q = await waitFor(async () => (await open(s))[0], 'a question');
    expect((await answer(s, q.id, 'create_new')).status).toBe(200);
    expect((await c.waitClose()).code).toBe(4003);
    expect((await s.server.storage.devices.get(agent.deviceId))!.revokedAt).not.toBeNull();
    const again = await s.rawClient(agent);
    expect((await again.waitRefusal()).body.error?.code).toBe('DEVICE_REVOKED');
  });
});

describe('clones: two machines presenting one certificate', () => {
  async function cloned(s: TestServer, agent: EnrolledAgent): Promise<{ first: RawClient; second: RawClient; q: QuestionView }> {
    const first = await connect(s, agent, fp('a'));
    const second = await connect(s, agent, fp('f'));
    expect((await first.waitClose()).code).toBe(4004);
    const q = await waitFor(async () => (await open(s)).find((x) => x.kind === 'clone'), 'a clone question');
    return { first, second, q };
  }

  it('raises one clone question with both sides, however often they take turns', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ fingerprint: fp('a') });
    const { second, q } = await cloned(s, agent);
    expect(q).toMatchObject({ deviceId: agent.deviceId, oldFingerprint: fp('a'), newFingerprint: fp('f'), oldAddress: '127.0.0.1', newAddress: '127.0.0.1', timesSeen: 1 });
    expect(q.resolutions).toEqual(['match_existing', 'match_existing_always', 'create_new', 'create_new_always']);
    const third = await connect(s, agent, fp('a'));
    expect((await second.waitClose()).code).toBe(4004);
    await waitFor(async () => (await open(s))[0]?.timesSeen === 2, 'the repeat counted');
    expect((await open(s)).length).toBe(1);
    expect((await s.server.storage.devices.get(agent.deviceId))!).toMatchObject({ fingerprint: fp('a') });
    third.terminate();
    const device = await s.api<{ possibleCloneAt: string | null }>('GET', `/api/v1/devices/${agent.deviceId}`);
    expect(device.body.possibleCloneAt).not.toBeNull();
  });

  it('match_existing_always clears the flag and stops asking about this device', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ fingerprint: fp('a') });
    const { second, q } = await cloned(s, agent);
    await answer(s, q.id, 'match_existing_always');
    expect((await s.server.storage.devices.get(agent.deviceId))!.possibleCloneAt).toBeNull();
    await connect(s, agent, fp('a'));
    expect((await second.waitClose()).code).toBe(4004);
    await waitFor(async () => (await s.server.storage.questions.history(agent.deviceId)).some((e) => e.event === 'clone_matched_by_policy'), 'the sighting in the history');
    expect(await open(s)).toEqual([]);
  });

  it('match_existing answers this time only: the next sighting asks again', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ fingerprint: fp('a') });
    const { second, q } = await cloned(s, agent);
    await answer(s, q.id, 'match_existing');
    await connect(s, agent, fp('a'));
    await second.waitClose();
    const next = await waitFor(async () => (await open(s))[0], 'a new question');
    expect(next.id).not.toBe(q.id);
  });

  it('create_new_always revokes now and settles later clones of any device without asking', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ fingerprint: fp('a') });
    const other = await s.enrollAgent({ fingerprint: fp('a') });
    const { second, q } = await cloned(s, agent);
    await answer(s, q.id, 'create_new_always');
    expect((await second.waitClose()).code).toBe(4003);
    const first = await connect(s, other, fp('a'));
    const copy = await connect(s, other, fp('c'));
    expect((await first.waitClose()).code).toBe(4004);
    expect((await copy.waitClose()).code).toBe(4003);
    expect((await s.server.storage.devices.get(other.deviceId))!.revokedAt).not.toBeNull();
    expect(await open(s)).toEqual([]);
    const all = (await s.api<{ questions: QuestionView[] }>('GET', '/api/v1/questions?state=all')).body.questions;
    expect(all.find((x) => x.deviceId === other.deviceId)).toMatchObject({ kind: 'clone', resolution: 'create_new_always', answeredBy: 'policy' });
  });
});

describe('answering: bad input', () => {
  it('refuses unknown ids, wrong resolutions and second answers, and keeps serving', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ fingerprint: fp('a') });
    await visit(s, agent, fp('b'));
    const [q] = await open(s);
    expect((await answer(s, 'q_nope', 'accept_change')).body.error).toMatchObject({ code: 'QUESTION_NOT_FOUND' });
    const wrong = await answer(s, q!.id, 'match_existing');
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toMatchObject({ code: 'QUESTION_RESOLUTION_INVALID', message: '"match_existing" does not answer a hardware_change question; answer one of: accept_change, accept_every_change, create_new' });
    expect((await s.api<Err>('POST', `/api/v1/questions/${q!.id}/answer`, { resolution: '' })).body.error.code).toBe('BAD_REQUEST');
    expect((await s.api<Err>('POST', `/api/v1/questions/${q!.id}/answer`, { resolution: 'accept_change', extra: 1 })).body.error.code).toBe('BAD_REQUEST');
    expect((await s.api<Err>('GET', '/api/v1/questions?state=maybe')).body.error.code).toBe('BAD_REQUEST');
    expect((await open(s)).length).toBe(1);
    expect((await answer(s, q!.id, 'accept_change')).status).toBe(200);
    const twice = await answer(s, q!.id, 'accept_every_change');
    expect(twice).toMatchObject({ status: 409, body: { error: { code: 'QUESTION_ALREADY_ANSWERED' } } });
    expect((await s.server.storage.questions.policy(agent.deviceId)).hardwareChange).toBe('ask');
    await visit(s, agent, fp('b'));
  });

  it('is for admins only: a customer-scoped API token is refused with FORBIDDEN', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ group: 'Customers/Scoped', fingerprint: fp('a') });
    await visit(s, agent, fp('b'));
    const [q] = await open(s);
    const scoped = await s.api<{ token: string }>('POST', '/api/v1/api-tokens', { name: 'scoped', group: 'Customers/Scoped' });
    expect(scoped.status).toBe(201);
    expect((await s.api<Err>('GET', '/api/v1/questions', undefined, scoped.body.token)).body.error.code).toBe('FORBIDDEN');
    expect((await s.api<Err>('POST', `/api/v1/questions/${q!.id}/answer`, { resolution: 'accept_change' }, scoped.body.token)).body.error.code).toBe('FORBIDDEN');
    expect((await s.api<Err>('POST', '/api/v1/installers', { target: 'x', os: 'linux' }, scoped.body.token)).body.error.code).toBe('FORBIDDEN');
    expect((await open(s))[0]).toMatchObject({ id: q!.id, answeredAt: null });
  });

  it('rollcall questions lists, shows and answers; bad ids and resolutions exit with their codes', async () => {
    const s = await h.startServer();
    await s.server.writeLocalCliCredentials();
    const agent = await s.enrollAgent({ fingerprint: fp('a') });
    await visit(s, agent, fp('b'));
    let text = '';
    const io = { out: (t: string) => (text += `${t}\n`), err: (t: string) => (text += `${t}\n`) };
    const cli = async (...argv: string[]): Promise<number> => {
      text = '';
      return rollcallMain([...argv, '--data-dir', s.dataDir], {}, io);
    };
    expect(await cli('questions')).toBe(0);
    expect(text).toContain('hardware_change');
    expect(await cli('questions', '--json')).toBe(0);
    const [q] = (JSON.parse(text) as { questions: QuestionView[] }).questions;
    expect(await cli('questions', 'show', q!.id)).toBe(0);
    expect(text).toContain('history of');
    expect(await cli('questions', 'answer', q!.id, 'bogus')).toBe(6);
    expect(text).toContain('QUESTION_RESOLUTION_INVALID');
    expect(await cli('questions', 'answer', 'q_missing', 'accept_change')).toBe(5);
    expect(await cli('questions', 'answer', q!.id)).toBe(2);
    expect(await cli('questions', 'answer', q!.id, 'accept_change')).toBe(0);
    expect(text).toContain(`question ${q!.id} (hardware_change of ${agent.deviceId}) answered: accept_change`);
    expect(await cli('questions')).toBe(0);
    expect(text).toContain('no open questions');
  });
});
