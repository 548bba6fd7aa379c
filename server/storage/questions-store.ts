/**
 * Questions for the admin about a device's identity (a possible clone, a
 * changed hardware fingerprint), their history, and the per-device answers
 * that stick ("every time", "every change"). At most one open question per
 * device and kind (a partial unique index); questions and history rows are
 * never deleted.
 */
import crypto from 'node:crypto';
import type { Sql } from './db.js';

/** Kinds of question, iterable. */
export const QUESTION_KINDS = ['clone', 'hardware_change'] as const;
export type QuestionKind = (typeof QUESTION_KINDS)[number];

/** A question as stored. */
export interface Question {
  readonly id: string;
  readonly kind: QuestionKind;
  readonly deviceId: string;
  readonly oldFingerprint: string | null;
  readonly newFingerprint: string | null;
  readonly oldAddress: string | null;
  readonly newAddress: string | null;
  readonly raisedAt: number;
  readonly lastSeenAt: number;
  readonly timesSeen: number;
  readonly answeredAt: number | null;
  readonly resolution: string | null;
  readonly answeredBy: string | null;
}

/** One history entry. */
export interface QuestionEvent {
  readonly questionId: string | null;
  readonly deviceId: string;
  readonly at: number;
  readonly event: string;
  readonly detail: Record<string, unknown>;
}

/** Standing answers for one device. */
export interface DevicePolicy {
  readonly hardwareChange: 'ask' | 'accept';
  readonly clone: 'ask' | 'match';
}

/** What a sighting of a question's subject carries. */
export interface QuestionFacts {
  readonly oldFingerprint: string | null;
  readonly newFingerprint: string | null;
  readonly oldAddress: string | null;
  readonly newAddress: string | null;
}

interface QuestionRow {
  id: string;
  kind: QuestionKind;
  device_id: string;
  old_fingerprint: string | null;
  new_fingerprint: string | null;
  old_address: string | null;
  new_address: string | null;
  raised_at: number;
  last_seen_at: number;
  times_seen: number;
  answered_at: number | null;
  resolution: string | null;
  answered_by: string | null;
}

const toQuestion = (r: QuestionRow): Question => ({
  id: r.id,
  kind: r.kind,
  deviceId: r.device_id,
  oldFingerprint: r.old_fingerprint,
  newFingerprint: r.new_fingerprint,
  oldAddress: r.old_address,
  newAddress: r.new_address,
  raisedAt: r.raised_at,
  lastSeenAt: r.last_seen_at,
  timesSeen: r.times_seen,
  answeredAt: r.answered_at,
  resolution: r.resolution,
  answeredBy: r.answered_by,
});

/** Storage of questions, their history and device policies. */
export class QuestionsStore {
  constructor(private readonly sql: Sql) {}

  /** One question by id. */
  async get(id: string, sql: Sql = this.sql): Promise<Question | undefined> {
    const row = await sql.get<QuestionRow>('SELECT * FROM questions WHERE id = ?', [id]);
    return row && toQuestion(row);
  }

  /** Questions, open ones first, newest first; `open` filters by state. */
  async list(filter: { open?: boolean } = {}): Promise<Question[]> {
    const where = filter.open === undefined ? '' : filter.open ? 'WHERE answered_at IS NULL' : 'WHERE answered_at IS NOT NULL';
    const rows = await this.sql.all<QuestionRow>(`SELECT * FROM questions ${where} ORDER BY answered_at IS NOT NULL, raised_at DESC, id`);
    return rows.map(toQuestion);
  }

  /**
   * Raises a question, or, when one of that device and kind is open, counts
   * the sighting on it with the latest facts. Returns the question and
   * whether it is new.
   */
  async raiseOrRepeat(kind: QuestionKind, deviceId: string, facts: QuestionFacts, at: number, sql: Sql = this.sql): Promise<{ question: Question; raised: boolean }> {
    const open = await sql.get<QuestionRow>('SELECT * FROM questions WHERE device_id = ? AND kind = ? AND answered_at IS NULL', [deviceId, kind]);
    if (open) {
      await sql.run('UPDATE questions SET times_seen = times_seen + 1, last_seen_at = ?, new_fingerprint = ?, new_address = ? WHERE id = ?', [at, facts.newFingerprint, facts.newAddress, open.id]);
      return { question: (await this.get(open.id, sql))!, raised: false };
    }
    const id = `q_${crypto.randomBytes(6).toString('hex')}`;
    await sql.run(
      `INSERT INTO questions (id, kind, device_id, old_fingerprint, new_fingerprint, old_address, new_address, raised_at, last_seen_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [id, kind, deviceId, facts.oldFingerprint, facts.newFingerprint, facts.oldAddress, facts.newAddress, at, at],
    );
    await this.addEvent({ questionId: id, deviceId, at, event: 'raised', detail: { kind, ...facts } }, sql);
    return { question: (await this.get(id, sql))!, raised: true };
  }

  /** Records a question that a standing answer settled at once (kept for the history). */
  async recordSettled(kind: QuestionKind, deviceId: string, facts: QuestionFacts, at: number, resolution: string, sql: Sql = this.sql): Promise<Question> {
    const id = `q_${crypto.randomBytes(6).toString('hex')}`;
    await sql.run(
      `INSERT INTO questions (id, kind, device_id, old_fingerprint, new_fingerprint, old_address, new_address, raised_at, last_seen_at, answered_at, resolution, answered_by)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'policy')`,
      [id, kind, deviceId, facts.oldFingerprint, facts.newFingerprint, facts.oldAddress, facts.newAddress, at, at, at, resolution],
    );
    await this.addEvent({ questionId: id, deviceId, at, event: 'settled_by_policy', detail: { kind, resolution, ...facts } }, sql);
    return (await this.get(id, sql))!;
  }

  /** Marks an open question answered; returns false when it was answered meanwhile. */
  async markAnswered(id: string, resolution: string, answeredBy: string, at: number, sql: Sql = this.sql): Promise<boolean> {
    const r = await sql.run('UPDATE questions SET answered_at = ?, resolution = ?, answered_by = ? WHERE id = ? AND answered_at IS NULL', [at, resolution, answeredBy, id]);
    return r.changes === 1;
  }

  /** The open question of a device and kind, if any. */
  async openFor(deviceId: string, kind: QuestionKind, sql: Sql = this.sql): Promise<Question | undefined> {
    const row = await sql.get<QuestionRow>('SELECT * FROM questions WHERE device_id = ? AND kind = ? AND answered_at IS NULL', [deviceId, kind]);
    return row && toQuestion(row);
  }

  /** Appends a history entry. */
  async addEvent(e: QuestionEvent, sql: Sql = this.sql): Promise<void> {
    await sql.run('INSERT INTO question_history (question_id, device_id, at, event, detail) VALUES (?, ?, ?, ?, ?)', [e.questionId, e.deviceId, e.at, e.event, JSON.stringify(e.detail)]);
  }

  /** A device's history, oldest first. */
  async history(deviceId: string): Promise<QuestionEvent[]> {
    const rows = await this.sql.all<{ question_id: string | null; device_id: string; at: number; event: string; detail: string }>(
      'SELECT question_id, device_id, at, event, detail FROM question_history WHERE device_id = ? ORDER BY at, id',
      [deviceId],
    );
    return rows.map((r) => ({ questionId: r.question_id, deviceId: r.device_id, at: r.at, event: r.event, detail: JSON.parse(r.detail) as Record<string, unknown> }));
  }

  /** A device's standing answers (both `ask` when none were given). */
  async policy(deviceId: string, sql: Sql = this.sql): Promise<DevicePolicy> {
    const row = await sql.get<{ hardware_change: 'ask' | 'accept'; clone: 'ask' | 'match' }>('SELECT hardware_change, clone FROM device_policies WHERE device_id = ?', [deviceId]);
    return { hardwareChange: row?.hardware_change ?? 'ask', clone: row?.clone ?? 'ask' };
  }

  /** Sets one standing answer of a device. */
  async setPolicy(deviceId: string, change: Partial<DevicePolicy>, sql: Sql = this.sql): Promise<void> {
    const cur = await this.policy(deviceId, sql);
    const next = { ...cur, ...change };
    await sql.run(
      `INSERT INTO device_policies (device_id, hardware_change, clone) VALUES (?, ?, ?)
       ON CONFLICT (device_id) DO UPDATE SET hardware_change = excluded.hardware_change, clone = excluded.clone`,
      [deviceId, next.hardwareChange, next.clone],
    );
  }
}
