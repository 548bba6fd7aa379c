/**
 * The agent's readable status, kept in `<state-dir>/status.json` by a
 * running agent and printed by `rollcall-agent status`. The shape is
 * documented in docs/agent.md and stable for `--json`.
 */
import type { FailureClass } from './errors.js';
import type { OutboxStats } from './outbox.js';
import { writePrivateFile } from './state.js';
import { isoTime } from '../common/iso-time.js';

/** Connection states, iterable. */
export const AGENT_STATES = ['starting', 'connecting', 'connected', 'backoff', 'stopped', 'refused'] as const;
export type AgentStateName = (typeof AGENT_STATES)[number];

/** What `status` shows. */
export interface AgentStatus {
  state: AgentStateName;
  deviceId: string;
  group: string;
  /** `host:port` of the server in use or being tried. */
  server: string;
  /** How the server is reached: `direct`, or `proxy host:port`. */
  path: string;
  pid: number;
  since: string;
  updatedAt: string;
  intervalSec: number | null;
  lastCheckinAt: string | null;
  lastAckedSeq: number;
  connectedSince: string | null;
  nextAttemptAt: string | null;
  failedAttempts: number;
  /** Last time a channel reached `welcome` or a check-in was acknowledged. */
  lastSuccessAt: string | null;
  lastError: { class: FailureClass; code: string; message: string; at: string; remedy: string } | null;
  /** The durable outbox of events still to deliver. */
  outbox: OutboxStats | null;
  /** The certificate in use: its expiry, and when renewal starts. */
  certificate: { serial: string; notAfter: string; renewAt: string } | null;
}

/**
 * Keeps the status in memory and writes it out after every change. Writes
 * never overlap, and changes made while one runs are coalesced into the
 * next, which writes the newest state (the outbox changes many times a
 * second under load).
 */
export class StatusFile {
  private writing: Promise<void> = Promise.resolve();
  private queued = false;

  constructor(
    private readonly file: string,
    readonly status: AgentStatus,
    private readonly onWriteError: (err: unknown) => void,
  ) {}

  /** Applies a change and queues a write. */
  update(change: Partial<AgentStatus>): void {
    Object.assign(this.status, change, { updatedAt: isoTime() });
    if (this.queued) return;
    this.queued = true;
    this.writing = this.writing
      .then(() => {
        this.queued = false;
        return writePrivateFile(this.file, JSON.stringify(this.status, null, 2));
      })
      .catch(this.onWriteError);
  }

  /** Resolves when every queued write is done. */
  flushed(): Promise<void> {
    return this.writing;
  }
}

/** Formats a status for people. */
export function formatStatus(s: AgentStatus, running: boolean): string {
  const lines = [
    `state:          ${running ? s.state : `${s.state} (agent not running)`}`,
    `device:         ${s.deviceId}`,
    `group:          ${s.group}`,
    `server:         ${s.server} (${s.path ?? 'direct'})`,
    `interval:       ${s.intervalSec === null ? '-' : `${s.intervalSec}s`}`,
    `last check-in:  ${s.lastCheckinAt ?? 'never'} (seq ${s.lastAckedSeq})`,
    `connected since: ${s.connectedSince ?? '-'}`,
  ];
  lines.push(`last success:   ${s.lastSuccessAt ?? 'never'}`);
  if (s.nextAttemptAt) lines.push(`next attempt:   ${s.nextAttemptAt} (failed attempts: ${s.failedAttempts})`);
  lines.push(s.lastError ? `last error:     [${s.lastError.class}] ${s.lastError.code}: ${s.lastError.message} (at ${s.lastError.at})` : 'last error:     none');
  if (s.lastError?.remedy) lines.push(`remedy:         ${s.lastError.remedy}`);
  if (s.outbox) {
    const o = s.outbox;
    lines.push(`outbox:         ${o.pending} event(s) to deliver, ${o.bytes} bytes (last seq ${o.lastSeq}${o.dropped > 0 ? `, ${o.dropped} dropped when full` : ''})`);
    if (o.lastError) lines.push(`outbox error:   ${o.lastError.code}: ${o.lastError.message} (at ${o.lastError.at})`);
  }
  if (s.certificate) lines.push(`certificate:    serial ${s.certificate.serial}, expires ${s.certificate.notAfter}, renewal from ${s.certificate.renewAt}`);
  return lines.join('\n');
}
