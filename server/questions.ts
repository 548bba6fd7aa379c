/**
 * Identity questions for the admin, after the model: a device whose
 * hardware fingerprint changed, or one certificate on two machines at once
 * (a cloned disk image), is put to the admin with the model's answers.
 * Effects (docs/questions.md):
 *
 * - `accept_change`: the new fingerprint becomes the device's.
 * - `accept_every_change`: that, and later changes of this device are
 *   accepted without asking (history still records each).
 * - `match_existing`: the connections keep using this record; the clone
 *   flag is cleared; a later clone sighting asks again.
 * - `match_existing_always`: that, and clone sightings of this device no
 *   longer ask.
 * - `create_new`: the certificate is revoked (its channel closed with 4003),
 *   so every computer holding it must be enrolled again with a token and
 *   becomes a new record; the old record stays, revoked, with its history.
 * - `create_new_always` (clones only): that, now and for every later clone
 *   sighting of any device, without asking.
 *
 * The session reports a suspected clone just before the connect facts of
 * the same `hello`; both run here one after the other per device, so one
 * question carries both sides' fingerprints and addresses.
 */
import type { Logger } from 'pino';
import { CloseCode } from '../common/close-codes.js';
import { httpError } from './errors.js';
import type { ConnectFacts, Device } from './storage/devices-store.js';
import type { Storage } from './storage/index.js';
import type { Question, QuestionFacts, QuestionKind } from './storage/questions-store.js';

/** The answers each kind of question takes. */
export const RESOLUTIONS = {
  clone: ['match_existing', 'match_existing_always', 'create_new', 'create_new_always'],
  hardware_change: ['accept_change', 'accept_every_change', 'create_new'],
} as const satisfies Record<QuestionKind, readonly string[]>;

/** Meta key of the server-wide "create a new record always" answer to clones. */
const CLONE_POLICY_KEY = 'clone_policy';

/** What the questions service needs. */
export interface QuestionsDeps {
  readonly storage: Pick<Storage, 'db' | 'devices' | 'questions' | 'meta'>;
  /** Closes a device's live channel, if any. */
  readonly closeChannel: (deviceId: string, code: number, reason: string) => void;
  /** Writes a connect's facts (default: straight to the devices table; the server batches them). */
  readonly recordConnect?: (deviceId: string, facts: ConnectFacts) => Promise<void>;
  readonly now: () => number;
  readonly log: Logger;
}

/** Raises, repeats and answers identity questions. */
export class Questions {
  private readonly chains = new Map<string, Promise<void>>();
  private readonly suspectedClones = new Map<string, number>();

  constructor(private readonly deps: QuestionsDeps) {}

  /** The session saw this device's certificate on a second live connection. */
  async cloneSuspected(deviceId: string, at: number): Promise<void> {
    this.suspectedClones.set(deviceId, at);
    await this.deps.storage.devices.flagPossibleClone(deviceId, at);
  }

  /** Records an accepted `hello`, raising a question first when the identity looks wrong. */
  connected(deviceId: string, facts: ConnectFacts, stored?: Pick<Device, 'fingerprint' | 'lastAddress'>): Promise<void> {
    const prev = this.chains.get(deviceId);
    // What the certificate lookup read a moment ago stands in for a fresh read when it cannot lead to a question: the same
    // fingerprint (or none yet) and no earlier connect of the device still being handled. Anything else is read again.
    const usable = stored && (stored.fingerprint === null || stored.fingerprint === facts.fingerprint);
    const known = prev || !usable ? undefined : stored;
    const next = (prev ?? Promise.resolve()).then(() => this.handleConnect(deviceId, facts, known));
    const tail = next.catch(() => undefined);
    this.chains.set(deviceId, tail);
    void tail.then(() => {
      if (this.chains.get(deviceId) === tail) this.chains.delete(deviceId);
    });
    return next;
  }

  private async handleConnect(deviceId: string, facts: ConnectFacts, known?: Pick<Device, 'fingerprint' | 'lastAddress'>): Promise<void> {
    const { storage, log } = this.deps;
    const clone = this.suspectedClones.has(deviceId);
    this.suspectedClones.delete(deviceId);
    const device = known ?? (await storage.devices.get(deviceId));
    if (!device) return;
    const changed = device.fingerprint !== null && device.fingerprint !== facts.fingerprint;
    let keepOld = false;
    if (clone || changed) {
      const q: QuestionFacts = { oldFingerprint: device.fingerprint, newFingerprint: facts.fingerprint, oldAddress: device.lastAddress, newAddress: facts.address };
      const policy = await storage.questions.policy(deviceId);
      if (clone) {
        keepOld = true;
        if ((await storage.meta.get<string>(CLONE_POLICY_KEY)) === 'create_new_always') {
          await storage.questions.recordSettled('clone', deviceId, q, facts.at, 'create_new_always');
          await this.revoke(deviceId, facts.at, 'a possible clone (standing answer: create a new record always)');
          return;
        }
        if (policy.clone === 'match') {
          await storage.questions.addEvent({ questionId: null, deviceId, at: facts.at, event: 'clone_matched_by_policy', detail: { ...q } });
          await storage.devices.clearPossibleClone(deviceId);
        } else {
          await this.raise('clone', deviceId, q, facts.at);
        }
      } else if (policy.hardwareChange === 'accept') {
        await storage.questions.addEvent({ questionId: null, deviceId, at: facts.at, event: 'change_accepted_by_policy', detail: { ...q } });
      } else {
        keepOld = true;
        // A copy flapping with the original shows as fingerprint changes too: count those on the clone question.
        const openClone = await storage.questions.openFor(deviceId, 'clone');
        if (openClone) await storage.questions.raiseOrRepeat('clone', deviceId, q, facts.at);
        else await this.raise('hardware_change', deviceId, q, facts.at);
      }
    }
    const record = this.deps.recordConnect ?? ((id: string, f: ConnectFacts) => storage.devices.recordConnect(id, f));
    await record(deviceId, { ...facts, fingerprint: keepOld && device.fingerprint !== null ? device.fingerprint : facts.fingerprint });
    if (keepOld) log.debug({ deviceId }, 'connect recorded; fingerprint kept until the question is answered');
  }

  private async raise(kind: QuestionKind, deviceId: string, facts: QuestionFacts, at: number): Promise<void> {
    const { question, raised } = await this.deps.storage.questions.raiseOrRepeat(kind, deviceId, facts, at);
    if (raised) this.deps.log.warn({ questionId: question.id, kind, deviceId, oldAddress: facts.oldAddress, newAddress: facts.newAddress }, 'question raised for the admin');
  }

  private async revoke(deviceId: string, at: number, why: string): Promise<void> {
    const changed = await this.deps.storage.devices.revoke(deviceId, at);
    this.deps.closeChannel(deviceId, CloseCode.REVOKED, 'the device was revoked');
    this.deps.log.warn({ deviceId, alreadyRevoked: !changed, reason: why }, 'device revoked: its computers must enroll again');
  }

  /** Answers an open question and applies the answer's effect. */
  async answer(id: string, resolution: string, answeredBy: string): Promise<Question> {
    const { storage, now, log } = this.deps;
    const q = await storage.questions.get(id);
    if (!q) throw httpError('QUESTION_NOT_FOUND', `no question "${id}"`);
    const allowed: readonly string[] = RESOLUTIONS[q.kind];
    if (!allowed.includes(resolution)) {
      throw httpError('QUESTION_RESOLUTION_INVALID', `"${resolution}" does not answer a ${q.kind} question; answer one of: ${allowed.join(', ')}`);
    }
    if (q.answeredAt !== null) throw httpError('QUESTION_ALREADY_ANSWERED', `question ${id} was answered ${new Date(q.answeredAt).toISOString()} (${q.resolution})`);
    const at = now();
    const won = await storage.db.transaction(async (tx) => {
      if (!(await storage.questions.markAnswered(id, resolution, answeredBy, at, tx))) return false;
      await storage.questions.addEvent({ questionId: id, deviceId: q.deviceId, at, event: 'answered', detail: { resolution, answeredBy } }, tx);
      if ((resolution === 'accept_change' || resolution === 'accept_every_change') && q.newFingerprint) await storage.devices.setFingerprint(q.deviceId, q.newFingerprint, tx);
      if (resolution === 'accept_every_change') await storage.questions.setPolicy(q.deviceId, { hardwareChange: 'accept' }, tx);
      if (resolution === 'match_existing' || resolution === 'match_existing_always') await storage.devices.clearPossibleClone(q.deviceId, tx);
      if (resolution === 'match_existing_always') await storage.questions.setPolicy(q.deviceId, { clone: 'match' }, tx);
      if (resolution === 'create_new_always') await storage.meta.set(CLONE_POLICY_KEY, 'create_new_always', tx);
      return true;
    });
    if (!won) throw httpError('QUESTION_ALREADY_ANSWERED', `question ${id} was answered meanwhile`);
    if (resolution === 'create_new' || resolution === 'create_new_always') await this.revoke(q.deviceId, at, `the admin answered ${resolution}`);
    log.info({ questionId: id, kind: q.kind, deviceId: q.deviceId, resolution, answeredBy }, 'question answered');
    return (await storage.questions.get(id))!;
  }
}
